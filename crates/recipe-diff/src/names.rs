//! Ingredient-name normalisation: the key used to pair ingredients across a recipe and a make
//! when their ids differ, and to tell a substitution from a respelling.

/// Lower-cases, folds runs of whitespace and punctuation into one space, and reduces simple
/// English plurals on the last word ("Eggs" -> "egg", "tomatoes" -> "tomato",
/// "berries" -> "berry"), so that cosmetic differences do not count as a different ingredient.
pub fn normalise_name(name: &str) -> String {
    let words: Vec<String> = name
        .split(|c: char| c.is_whitespace() || (c.is_ascii_punctuation() && c != '\'' && c != '%'))
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    let Some((last, rest)) = words.split_last() else {
        return String::new();
    };
    let mut out = rest.join(" ");
    if !out.is_empty() {
        out.push(' ');
    }
    out.push_str(&singular(last));
    out
}

fn singular(word: &str) -> String {
    let n = word.chars().count();
    if n <= 3 {
        return word.to_string();
    }
    // "berries" -> "berry". Singulars in -ie ("cookie", "brownie") map to -y as well, so
    // that both forms of the word share one key; "pies" keeps its short stem ("pie").
    if let Some(stem) = word.strip_suffix("ies").filter(|s| s.chars().count() >= 2) {
        return format!("{stem}y");
    }
    if let Some(stem) = word.strip_suffix("ie") {
        return format!("{stem}y");
    }
    for suffix in ["oes", "ches", "shes", "xes", "sses", "zes"] {
        if word.ends_with(suffix) {
            return word[..word.len() - 2].to_string();
        }
    }
    if word.ends_with('s') && !word.ends_with("ss") && !word.ends_with("us") {
        return word[..word.len() - 1].to_string();
    }
    word.to_string()
}

#[cfg(test)]
mod tests {
    use super::normalise_name;

    #[test]
    fn folds_case_space_and_simple_plurals() {
        assert_eq!(normalise_name("  Brown   Eggs "), "brown egg");
        assert_eq!(normalise_name("Tomatoes"), "tomato");
        assert_eq!(normalise_name("blueberries"), "blueberry");
        assert_eq!(normalise_name("peaches"), "peach");
        assert_eq!(normalise_name("Glass"), "glass");
        assert_eq!(normalise_name("couscous"), "couscous");
        assert_eq!(normalise_name("self-raising flour"), "self raising flour");
        assert_eq!(normalise_name("gas"), "gas");
    }

    #[test]
    fn both_forms_of_ie_words_share_a_key() {
        assert_eq!(normalise_name("Cookies"), normalise_name("cookie"));
        assert_eq!(normalise_name("brownies"), normalise_name("Brownie"));
        assert_eq!(normalise_name("pies"), "pie");
        assert_eq!(normalise_name("pie"), "pie");
    }
}
