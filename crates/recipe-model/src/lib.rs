//! Recipe documents as the original system wrote them, and the rules they must follow.
//!
//! A recipe and a *make* of it share one JSON shape (camelCase):
//! `recipeName`, `recipeId`, `rating`, `ingredients[ingredientId, quantity, measurement,
//! ingredientName]`, `steps[stepId, stepText]`. Ids may be JSON numbers or strings; they are
//! kept as strings. Everything that enters the system goes through [`parse_json`] or
//! [`Recipe::validate`], which report every problem with the path of the offending field so
//! that a caller (or a dead-letter reason) can say exactly what to fix.

use serde::{Deserialize, Deserializer, Serialize};
use std::collections::HashSet;
use std::fmt;

/// Hard limits on what one document may contain. They bound memory and diff cost per request.
pub mod limits {
    /// Largest accepted JSON document, in bytes.
    pub const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;
    pub const MAX_ID_CHARS: usize = 128;
    pub const MAX_NAME_CHARS: usize = 256;
    pub const MAX_MEASUREMENT_CHARS: usize = 32;
    pub const MAX_STEP_TEXT_CHARS: usize = 4096;
    pub const MAX_INGREDIENTS: usize = 1000;
    pub const MAX_STEPS: usize = 1000;
    /// Largest quantity of one ingredient; anything larger is a typo or an attack.
    pub const MAX_QUANTITY: f64 = 1_000_000.0;
    pub const MAX_RATING: f64 = 5.0;
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Recipe {
    #[serde(deserialize_with = "id_from_string_or_number")]
    pub recipe_id: String,
    pub recipe_name: String,
    /// Stars from 0 to 5; absent when the cook gave none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rating: Option<f64>,
    pub ingredients: Vec<Ingredient>,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Ingredient {
    #[serde(deserialize_with = "id_from_string_or_number")]
    pub ingredient_id: String,
    pub quantity: f64,
    /// Unit as the cook wrote it (`cup`, `Tbsp`, `g`, …); empty for a count ("2 eggs").
    #[serde(default)]
    pub measurement: String,
    pub ingredient_name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Step {
    #[serde(deserialize_with = "id_from_string_or_number")]
    pub step_id: String,
    pub step_text: String,
}

/// One problem with one field, addressed by a JSON-path-like string such as
/// `ingredients[3].quantity`. Maps one-to-one onto `google.rpc.BadRequest.FieldViolation`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: String,
    pub description: String,
}

impl FieldViolation {
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }
}

impl fmt::Display for FieldViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.description)
    }
}

/// Why a document was refused. Always permanent: sending the same bytes again cannot succeed.
#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    #[error("document is {size} bytes, over the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("not a recipe document: {0}")]
    Malformed(String),
    #[error("invalid recipe: {}", join_violations(.0))]
    Invalid(Vec<FieldViolation>),
}

impl DocumentError {
    /// The field violations, for errors that have them.
    pub fn violations(&self) -> Vec<FieldViolation> {
        match self {
            DocumentError::TooLarge { .. } => vec![FieldViolation::new("", self.to_string())],
            DocumentError::Malformed(msg) => vec![FieldViolation::new("", msg.clone())],
            DocumentError::Invalid(v) => v.clone(),
        }
    }
}

fn join_violations(v: &[FieldViolation]) -> String {
    v.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Parses and validates one recipe (or make) document from raw bytes.
pub fn parse_json(bytes: &[u8]) -> Result<Recipe, DocumentError> {
    if bytes.len() > limits::MAX_DOCUMENT_BYTES {
        return Err(DocumentError::TooLarge {
            size: bytes.len(),
            limit: limits::MAX_DOCUMENT_BYTES,
        });
    }
    let recipe: Recipe =
        serde_json::from_slice(bytes).map_err(|e| DocumentError::Malformed(e.to_string()))?;
    recipe.validate().map_err(DocumentError::Invalid)?;
    Ok(recipe)
}

impl Recipe {
    /// Checks every rule and returns all violations at once, so one round trip fixes them all.
    pub fn validate(&self) -> Result<(), Vec<FieldViolation>> {
        let mut out = Vec::new();
        check_id(&mut out, "recipeId", &self.recipe_id);
        check_text(
            &mut out,
            "recipeName",
            &self.recipe_name,
            limits::MAX_NAME_CHARS,
        );
        if let Some(r) = self.rating
            && !(r.is_finite() && (0.0..=limits::MAX_RATING).contains(&r))
        {
            out.push(FieldViolation::new(
                "rating",
                format!("must be between 0 and {}", limits::MAX_RATING),
            ));
        }
        if self.ingredients.len() > limits::MAX_INGREDIENTS {
            out.push(FieldViolation::new(
                "ingredients",
                format!("at most {} ingredients", limits::MAX_INGREDIENTS),
            ));
        }
        if self.steps.len() > limits::MAX_STEPS {
            out.push(FieldViolation::new(
                "steps",
                format!("at most {} steps", limits::MAX_STEPS),
            ));
        }
        let mut seen = HashSet::new();
        for (i, ing) in self.ingredients.iter().enumerate() {
            let at = |f: &str| format!("ingredients[{i}].{f}");
            check_id(&mut out, &at("ingredientId"), &ing.ingredient_id);
            if !seen.insert(ing.ingredient_id.as_str()) {
                out.push(FieldViolation::new(
                    at("ingredientId"),
                    format!("duplicate ingredientId {:?}", ing.ingredient_id),
                ));
            }
            check_text(
                &mut out,
                &at("ingredientName"),
                &ing.ingredient_name,
                limits::MAX_NAME_CHARS,
            );
            if !(ing.quantity.is_finite()
                && ing.quantity >= 0.0
                && ing.quantity <= limits::MAX_QUANTITY)
            {
                out.push(FieldViolation::new(
                    at("quantity"),
                    format!(
                        "must be a number from 0 to {}, got {}",
                        limits::MAX_QUANTITY,
                        ing.quantity
                    ),
                ));
            }
            if ing.measurement.chars().count() > limits::MAX_MEASUREMENT_CHARS {
                out.push(FieldViolation::new(
                    at("measurement"),
                    format!("at most {} characters", limits::MAX_MEASUREMENT_CHARS),
                ));
            }
        }
        let mut seen = HashSet::new();
        for (i, step) in self.steps.iter().enumerate() {
            let at = |f: &str| format!("steps[{i}].{f}");
            check_id(&mut out, &at("stepId"), &step.step_id);
            if !seen.insert(step.step_id.as_str()) {
                out.push(FieldViolation::new(
                    at("stepId"),
                    format!("duplicate stepId {:?}", step.step_id),
                ));
            }
            check_text(
                &mut out,
                &at("stepText"),
                &step.step_text,
                limits::MAX_STEP_TEXT_CHARS,
            );
        }
        if out.is_empty() { Ok(()) } else { Err(out) }
    }

    /// Canonical bytes of the document, used to fingerprint writes for idempotency checks.
    pub fn canonical_json(&self) -> Vec<u8> {
        // Field order is fixed by the struct, so this is stable for equal values.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

fn check_id(out: &mut Vec<FieldViolation>, field: &str, id: &str) {
    if id.trim().is_empty() {
        out.push(FieldViolation::new(field, "must not be empty"));
    } else if id.chars().count() > limits::MAX_ID_CHARS {
        out.push(FieldViolation::new(
            field,
            format!("at most {} characters", limits::MAX_ID_CHARS),
        ));
    } else if id.chars().any(char::is_control) {
        out.push(FieldViolation::new(
            field,
            "must not contain control characters",
        ));
    }
}

fn check_text(out: &mut Vec<FieldViolation>, field: &str, text: &str, max: usize) {
    if text.trim().is_empty() {
        out.push(FieldViolation::new(field, "must not be empty"));
    } else if text.chars().count() > max {
        out.push(FieldViolation::new(
            field,
            format!("at most {max} characters"),
        ));
    }
}

/// Accepts `"12"` or `12` (the original files use both) and keeps the id as a string.
fn id_from_string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        S(String),
        U(u64),
        I(i64),
    }
    Ok(match Id::deserialize(d)? {
        Id::S(s) => s,
        Id::U(n) => n.to_string(),
        Id::I(n) => n.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PANCAKES: &str = r#"{
        "recipeName": "Pancakes", "recipeId": 7, "rating": 4,
        "ingredients": [
            {"ingredientId": 1, "quantity": 1.5, "measurement": "cup", "ingredientName": "flour"},
            {"ingredientId": "2", "quantity": 2, "measurement": "", "ingredientName": "eggs"}
        ],
        "steps": [{"stepId": 1, "stepText": "Mix."}, {"stepId": 2, "stepText": "Fry."}]
    }"#;

    #[test]
    fn parses_the_original_format_with_numeric_or_string_ids() {
        let r = parse_json(PANCAKES.as_bytes()).expect("valid");
        assert_eq!(r.recipe_id, "7");
        assert_eq!(r.ingredients[1].ingredient_id, "2");
        assert_eq!(r.steps[1].step_id, "2");
        assert_eq!(r.rating, Some(4.0));
    }

    #[test]
    fn reports_every_violation_with_its_field() {
        let doc = r#"{"recipeName": "", "recipeId": "r", "rating": 9,
            "ingredients": [
              {"ingredientId": 1, "quantity": -1, "measurement": "g", "ingredientName": "x"},
              {"ingredientId": 1, "quantity": 1, "measurement": "g", "ingredientName": " "}],
            "steps": []}"#;
        let DocumentError::Invalid(v) = parse_json(doc.as_bytes()).unwrap_err() else {
            panic!("expected field violations");
        };
        let fields: Vec<_> = v.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "recipeName",
                "rating",
                "ingredients[0].quantity",
                "ingredients[1].ingredientId",
                "ingredients[1].ingredientName"
            ]
        );
    }

    #[test]
    fn wrong_types_and_unknown_fields_are_malformed() {
        let wrong_type = PANCAKES.replace("1.5", "\"lots\"");
        assert!(matches!(
            parse_json(wrong_type.as_bytes()),
            Err(DocumentError::Malformed(_))
        ));
        let unknown = PANCAKES.replace("\"rating\"", "\"ratin\"");
        assert!(matches!(
            parse_json(unknown.as_bytes()),
            Err(DocumentError::Malformed(_))
        ));
    }

    #[test]
    fn oversized_documents_are_refused_before_parsing() {
        let big = vec![b' '; limits::MAX_DOCUMENT_BYTES + 1];
        assert!(matches!(
            parse_json(&big),
            Err(DocumentError::TooLarge { .. })
        ));
    }
}
