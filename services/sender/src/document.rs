//! Reading a recipe or make file into the model, with a refusal reason an operator can act on:
//! every problem with the path of its field. `recipe_model` decides what is valid; this module
//! only adds the field path to JSON errors (serde's own messages give a line and column only).

use recipe_model::{DocumentError, Recipe};

/// The document in `bytes`, or why it cannot be submitted (all problems, `; `-separated, each
/// `field.path: problem`).
pub fn parse(bytes: &[u8]) -> Result<Recipe, String> {
    match recipe_model::parse_json(bytes) {
        Ok(recipe) => {
            // parse_json validates already; asking again keeps this correct should it stop.
            recipe.validate().map_err(|v| join(&v))?;
            Ok(recipe)
        }
        Err(DocumentError::Malformed(message)) => Err(malformed_with_path(bytes, message)),
        Err(DocumentError::Invalid(violations)) => Err(join(&violations)),
        Err(e @ DocumentError::TooLarge { .. }) => Err(e.to_string()),
    }
}

fn join(violations: &[recipe_model::FieldViolation]) -> String {
    violations
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Parses again, tracking the path, to say which field the JSON error is in
/// (`ingredients[0].quantity: invalid type: string "2", expected f64 at line 4 column 31`).
/// Falls back to the model's message when the path says nothing (the document itself is not
/// JSON, or the problem is at its root).
fn malformed_with_path(bytes: &[u8], message: String) -> String {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize::<_, Recipe>(&mut de) {
        Err(e) => {
            let path = e.path().to_string();
            if path.is_empty() || path == "." {
                format!("not a recipe document: {}", e.inner())
            } else {
                format!("{path}: {}", e.inner())
            }
        }
        // Cannot happen (the same bytes failed a moment ago), but never panic on input.
        Ok(_) => format!("not a recipe document: {message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"recipeName": "Soup", "recipeId": "r1",
        "ingredients": [{"ingredientId": 1, "quantity": 2, "measurement": "cup", "ingredientName": "water"}],
        "steps": [{"stepId": 1, "stepText": "Boil."}]}"#;

    #[test]
    fn valid_documents_parse() {
        assert_eq!(parse(GOOD.as_bytes()).unwrap().recipe_id, "r1");
    }

    #[test]
    fn wrong_types_name_their_field() {
        let doc = GOOD.replace(r#""quantity": 2"#, r#""quantity": "2""#);
        let reason = parse(doc.as_bytes()).unwrap_err();
        assert!(
            reason.starts_with("ingredients[0].quantity: invalid type: string"),
            "{reason}"
        );
    }

    #[test]
    fn every_violation_is_listed_with_its_path() {
        let doc = GOOD
            .replace(r#""quantity": 2"#, r#""quantity": -2"#)
            .replace(r#""Boil.""#, r#""""#);
        let reason = parse(doc.as_bytes()).unwrap_err();
        assert!(
            reason.contains("ingredients[0].quantity: must be a number from 0"),
            "{reason}"
        );
        assert!(
            reason.contains("; steps[0].stepText: must not be empty"),
            "{reason}"
        );
    }

    #[test]
    fn missing_fields_and_non_json_say_so() {
        let reason = parse(br#"{"recipeName": "x"}"#).unwrap_err();
        assert!(reason.contains("missing field `recipeId`"), "{reason}");
        let reason = parse(b"not json {").unwrap_err();
        assert!(
            reason.starts_with("not a recipe document: expected"),
            "{reason}"
        );
    }
}
