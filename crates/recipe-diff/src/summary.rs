//! The human side of a diff: which changes matter, a one-line summary, and a similarity score.
//!
//! Cosmetic changes (a respelled ingredient name, a renumbered id, an amount written in another
//! unit, a step re-capitalised or re-punctuated) are listed in the diff so that `apply` can
//! rebuild the make, but they are not significant: the summary omits them and they do not lower
//! the similarity.

use crate::types::{
    IngredientChange, IngredientChangeKind, QuantityChange, RecipeDiff, StepChange, StepChangeKind,
    WordOp,
};
use recipe_model::Recipe;

/// Names or amounts listed per kind of change before the rest is only counted.
const MAX_LISTED: usize = 3;
/// Step numbers listed before the steps are only counted.
const MAX_STEP_NUMBERS: usize = 5;

/// Whether an ingredient change is more than cosmetic.
pub fn ingredient_is_significant(change: &IngredientChange) -> bool {
    change.kind != IngredientChangeKind::Modified
        || change.substituted
        || matches!(
            change.quantity,
            QuantityChange::Changed { .. } | QuantityChange::UnitChanged { .. }
        )
}

/// Whether a step change is more than cosmetic: anything but a `Modified` whose normalised
/// words are all equal.
pub fn step_is_significant(change: &StepChange) -> bool {
    change.kind != StepChangeKind::Modified || change.words.iter().any(|w| w.op != WordOp::Equal)
}

/// Similarity of the make to the recipe, in 0..=1: the mean score of the document's parts.
///
/// The parts are every ingredient and every step of either document (paired ones counted
/// once) plus three document-level parts: name, rating and scaling.
/// - ingredient: 1 if paired with no significant change, else 0 (added, removed, substituted,
///   other amount or unit);
/// - step: 1 if paired in place with the same words; a modified step its word similarity
///   (2·equal words / total words); a moved step half its word similarity; inserted or
///   deleted 0;
/// - name: 1 if unchanged, else 0; rating: 1 if unchanged, 1 − |Δ|/5 if both are rated, 0.5
///   if only one is; scaling: 1 if none, else 0.
///
/// So the score is 1.0 exactly when nothing significant changed.
pub fn similarity(diff: &RecipeDiff, original: &Recipe) -> f64 {
    let (ing_score, ing_parts) = ingredient_score(&diff.ingredients, original.ingredients.len());
    let (step_score, step_parts) = step_score(&diff.steps, original.steps.len());
    let name = if diff.name.is_some() { 0.0 } else { 1.0 };
    let rating = diff.rating.as_ref().map_or(1.0, |r| match (r.from, r.to) {
        (Some(a), Some(b)) => (1.0 - (a - b).abs() / 5.0).clamp(0.0, 1.0),
        _ => 0.5,
    });
    let scaling = if diff.scaling.is_some() { 0.0 } else { 1.0 };
    let score = (ing_score + step_score + name + rating + scaling) / (ing_parts + step_parts + 3.0);
    if score.is_finite() {
        score.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

/// (sum of part scores, number of parts) over the union of ingredients.
fn ingredient_score(changes: &[IngredientChange], recipe_len: usize) -> (f64, f64) {
    let count = |kind| changes.iter().filter(|c| c.kind == kind).count();
    let (added, removed) = (
        count(IngredientChangeKind::Added),
        count(IngredientChangeKind::Removed),
    );
    let pairs = recipe_len.saturating_sub(removed);
    let changed_pairs = changes
        .iter()
        .filter(|c| c.kind == IngredientChangeKind::Modified && ingredient_is_significant(c))
        .count();
    (
        pairs.saturating_sub(changed_pairs) as f64,
        (pairs + added + removed) as f64,
    )
}

/// (sum of part scores, number of parts) over the union of steps.
fn step_score(changes: &[StepChange], recipe_len: usize) -> (f64, f64) {
    let count = |kind| changes.iter().filter(|c| c.kind == kind).count();
    let (inserted, deleted) = (
        count(StepChangeKind::Inserted),
        count(StepChangeKind::Deleted),
    );
    let pairs = recipe_len.saturating_sub(deleted);
    let mut listed_pairs = 0;
    let mut listed_score = 0.0;
    for c in changes {
        let weight = match c.kind {
            StepChangeKind::Modified => 1.0,
            StepChangeKind::Moved => 0.5,
            StepChangeKind::Inserted | StepChangeKind::Deleted => continue,
        };
        listed_pairs += 1;
        listed_score += weight * c.similarity.clamp(0.0, 1.0);
    }
    let unlisted_pairs = pairs.saturating_sub(listed_pairs) as f64;
    (
        unlisted_pairs + listed_score,
        (pairs + inserted + deleted) as f64,
    )
}

/// One line naming the significant changes, e.g. "scaled ×2; butter substituted by margarine;
/// step 3 modified", or "no changes" / "only cosmetic changes".
pub fn summarise(diff: &RecipeDiff) -> String {
    let mut parts = Vec::new();
    if let Some(name) = &diff.name {
        parts.push(format!("renamed to {:?}", name.to));
    }
    if let Some(r) = &diff.rating {
        parts.push(format!("rating {} → {}", rating(r.from), rating(r.to)));
    }
    if let Some(s) = &diff.scaling {
        parts.push(format!("scaled ×{}", number(s.factor)));
    }
    let factor = diff.scaling.as_ref().map_or(1.0, |s| s.factor);
    parts.extend(ingredient_parts(
        &diff.ingredients,
        diff.scaling.is_some(),
        factor,
    ));
    parts.extend(step_parts(&diff.steps));
    if !parts.is_empty() {
        parts.join("; ")
    } else if diff.ingredients.is_empty() && diff.steps.is_empty() {
        "no changes".to_string()
    } else {
        "only cosmetic changes".to_string()
    }
}

fn ingredient_parts(changes: &[IngredientChange], scaled: bool, factor: f64) -> Vec<String> {
    let of_kind = |kind: IngredientChangeKind| changes.iter().filter(move |c| c.kind == kind);
    let mut parts = Vec::new();
    let added: Vec<&str> = of_kind(IngredientChangeKind::Added)
        .filter_map(|c| c.made.as_ref().map(|m| m.ingredient_name.as_str()))
        .collect();
    let removed: Vec<&str> = of_kind(IngredientChangeKind::Removed)
        .filter_map(|c| c.original.as_ref().map(|o| o.ingredient_name.as_str()))
        .collect();
    parts.extend(named_count(&added, "added"));
    parts.extend(named_count(&removed, "removed"));
    let modified: Vec<&IngredientChange> = of_kind(IngredientChangeKind::Modified).collect();
    let substitutions: Vec<String> = modified
        .iter()
        .filter(|c| c.substituted)
        .filter_map(|c| Some((c.original.as_ref()?, c.made.as_ref()?)))
        .map(|(o, m)| format!("{} substituted by {}", o.ingredient_name, m.ingredient_name))
        .collect();
    parts.extend(capped(substitutions, "substitution"));
    let amounts: Vec<String> = modified
        .iter()
        .filter_map(|c| amount_change(c, scaled, factor))
        .collect();
    parts.extend(capped(amounts, "amount change"));
    parts
}

/// "sugar 100 g → 150 g (×1.5 of scaled)" or "salt 1 pinch → 0.25 tsp", for amount changes.
fn amount_change(change: &IngredientChange, scaled: bool, factor: f64) -> Option<String> {
    let (o, m) = (change.original.as_ref()?, change.made.as_ref()?);
    // A substitute's amount is named after what was used ("margarine 120 g → 150 g").
    let name = if change.substituted {
        &m.ingredient_name
    } else {
        &o.ingredient_name
    };
    match &change.quantity {
        QuantityChange::Changed {
            expected,
            actual,
            unit,
            ratio,
        } => {
            let (from, to) = distinct_numbers(*expected, *actual);
            let ratio = if *expected > 0.0 {
                let of = if scaled { " of scaled" } else { "" };
                format!(" (×{}{of})", number(*ratio))
            } else {
                String::new()
            };
            Some(format!(
                "{name} {} → {}{ratio}",
                amount(&from, unit),
                amount(&to, unit)
            ))
        }
        QuantityChange::UnitChanged { from_unit, to_unit } => Some(format!(
            "{name} {} → {}",
            amount(&number(o.quantity * factor), from_unit),
            amount(&number(m.quantity), to_unit)
        )),
        _ => None,
    }
}

fn step_parts(changes: &[StepChange]) -> Vec<String> {
    let numbers = |kind| -> Vec<u32> {
        changes
            .iter()
            .filter(|c| c.kind == kind && step_is_significant(c))
            .filter_map(|c| c.original_index.map(|i| i.saturating_add(1)))
            .collect()
    };
    let count = |kind| changes.iter().filter(|c| c.kind == kind).count();
    let mut parts = Vec::new();
    parts.extend(numbered_steps(
        &numbers(StepChangeKind::Modified),
        "modified",
    ));
    parts.extend(numbered_steps(&numbers(StepChangeKind::Deleted), "deleted"));
    parts.extend(counted_steps(count(StepChangeKind::Inserted), "inserted"));
    parts.extend(counted_steps(count(StepChangeKind::Moved), "moved"));
    parts
}

/// "step 3 modified", "steps 3, 5 modified" or, for many, "12 steps modified".
fn numbered_steps(numbers: &[u32], what: &str) -> Option<String> {
    let list = |ns: &[u32]| {
        ns.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    match numbers {
        [] => None,
        [n] => Some(format!("step {n} {what}")),
        ns if ns.len() <= MAX_STEP_NUMBERS => Some(format!("steps {} {what}", list(ns))),
        ns => Some(format!("{} steps {what}", ns.len())),
    }
}

fn counted_steps(n: usize, what: &str) -> Option<String> {
    match n {
        0 => None,
        1 => Some(format!("1 step {what}")),
        n => Some(format!("{n} steps {what}")),
    }
}

/// "1 ingredient added (vanilla)", "4 ingredients removed (a, b, c, …)".
fn named_count(names: &[&str], what: &str) -> Option<String> {
    if names.is_empty() {
        return None;
    }
    let plural = if names.len() == 1 { "" } else { "s" };
    let mut listed = names
        .iter()
        .take(MAX_LISTED)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > MAX_LISTED {
        listed.push_str(", …");
    }
    Some(format!(
        "{} ingredient{plural} {what} ({listed})",
        names.len()
    ))
}

/// The first few items, then "N more <what>s".
fn capped(items: Vec<String>, what: &str) -> Vec<String> {
    let extra = items.len().saturating_sub(MAX_LISTED);
    let mut out: Vec<String> = items.into_iter().take(MAX_LISTED).collect();
    match extra {
        0 => {}
        1 => out.push(format!("1 more {what}")),
        n => out.push(format!("{n} more {what}s")),
    }
    out
}

fn amount(number: &str, unit: &str) -> String {
    if unit.trim().is_empty() {
        number.to_string()
    } else {
        format!("{number} {unit}")
    }
}

fn rating(r: Option<f64>) -> String {
    r.map_or_else(|| "none".to_string(), number)
}

/// A number with at most 3 decimals and no trailing zeros: 2, 1.5, 0.333.
fn number(x: f64) -> String {
    with_decimals(x, 3)
}

fn with_decimals(x: f64, decimals: usize) -> String {
    let s = format!("{x:.decimals$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        &s
    };
    if s == "-0" { "0" } else { s }.to_string()
}

/// Two amounts formatted with enough decimals to tell them apart (1 → 1.00005, not 1 → 1).
fn distinct_numbers(a: f64, b: f64) -> (String, String) {
    for decimals in [3, 6, 9] {
        let pair = (with_decimals(a, decimals), with_decimals(b, decimals));
        if pair.0 != pair.1 {
            return pair;
        }
    }
    (a.to_string(), b.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{RatingChange, Scaling, TextChange, WordEdit};
    use recipe_model::{Ingredient, Step};

    fn ing(id: &str, quantity: f64, measurement: &str, name: &str) -> Ingredient {
        Ingredient {
            ingredient_id: id.into(),
            quantity,
            measurement: measurement.into(),
            ingredient_name: name.into(),
        }
    }

    fn modified(
        o: Ingredient,
        m: Ingredient,
        substituted: bool,
        q: QuantityChange,
    ) -> IngredientChange {
        IngredientChange {
            kind: IngredientChangeKind::Modified,
            original: Some(o),
            made: Some(m),
            matched_by: Some(crate::types::MatchedBy::Id),
            substituted,
            quantity: q,
        }
    }

    fn recipe(ingredients: usize, steps: usize) -> Recipe {
        Recipe {
            recipe_id: "r".into(),
            recipe_name: "R".into(),
            rating: None,
            ingredients: (0..ingredients)
                .map(|i| ing(&i.to_string(), 1.0, "g", "x"))
                .collect(),
            steps: (0..steps)
                .map(|i| Step {
                    step_id: i.to_string(),
                    step_text: "s".into(),
                })
                .collect(),
        }
    }

    fn step(kind: StepChangeKind, index: u32, words: Vec<WordEdit>, similarity: f64) -> StepChange {
        StepChange {
            kind,
            original_index: Some(index),
            made_index: Some(index),
            original: None,
            made: None,
            text_changed: true,
            words,
            similarity,
        }
    }

    #[test]
    fn empty_diff_is_no_changes_with_similarity_one() {
        let d = RecipeDiff::default();
        assert_eq!(summarise(&d), "no changes");
        assert_eq!(similarity(&d, &recipe(3, 3)), 1.0);
    }

    #[test]
    fn cosmetic_changes_are_listed_but_not_significant() {
        let respelled = modified(
            ing("1", 2.0, "", "eggs"),
            ing("1", 2.0, "", "Egg"),
            false,
            QuantityChange::Unchanged,
        );
        let recased = step(
            StepChangeKind::Modified,
            0,
            vec![WordEdit {
                op: WordOp::Equal,
                text: "mix".into(),
            }],
            1.0,
        );
        let d = RecipeDiff {
            ingredients: vec![respelled],
            steps: vec![recased],
            ..RecipeDiff::default()
        };
        assert_eq!(summarise(&d), "only cosmetic changes");
        assert_eq!(similarity(&d, &recipe(2, 2)), 1.0);
    }

    #[test]
    fn full_summary_line() {
        let d = RecipeDiff {
            name: Some(TextChange {
                from: "Cake".into(),
                to: "Big cake".into(),
            }),
            rating: Some(RatingChange {
                from: Some(4.0),
                to: Some(5.0),
            }),
            scaling: Some(Scaling {
                factor: 2.0,
                ingredients_scaled: 3,
                ingredients_compared: 4,
            }),
            ingredients: vec![
                IngredientChange {
                    kind: IngredientChangeKind::Added,
                    original: None,
                    made: Some(ing("9", 1.0, "tsp", "vanilla")),
                    matched_by: None,
                    substituted: false,
                    quantity: QuantityChange::NotApplicable,
                },
                modified(
                    ing("2", 50.0, "g", "butter"),
                    ing("2", 100.0, "g", "margarine"),
                    true,
                    QuantityChange::Unchanged,
                ),
                modified(
                    ing("3", 50.0, "g", "sugar"),
                    ing("3", 150.0, "g", "sugar"),
                    false,
                    QuantityChange::Changed {
                        expected: 100.0,
                        actual: 150.0,
                        unit: "g".into(),
                        ratio: 1.5,
                    },
                ),
            ],
            steps: vec![
                step(
                    StepChangeKind::Modified,
                    2,
                    vec![WordEdit {
                        op: WordOp::Insert,
                        text: "x".into(),
                    }],
                    0.8,
                ),
                step(StepChangeKind::Moved, 4, vec![], 1.0),
            ],
            ..RecipeDiff::default()
        };
        assert_eq!(
            summarise(&d),
            "renamed to \"Big cake\"; rating 4 → 5; scaled ×2; 1 ingredient added (vanilla); \
             butter substituted by margarine; sugar 100 g → 150 g (×1.5 of scaled); \
             step 3 modified; 1 step moved"
        );
        let s = similarity(&d, &recipe(4, 6));
        assert!(s > 0.0 && s < 1.0, "{s}");
    }

    #[test]
    fn similarity_formula() {
        // 4 ingredients, 1 substituted; 4 steps, one modified at 0.5 and one moved intact.
        let d = RecipeDiff {
            ingredients: vec![modified(
                ing("2", 50.0, "g", "butter"),
                ing("2", 50.0, "g", "margarine"),
                true,
                QuantityChange::Unchanged,
            )],
            steps: vec![
                step(StepChangeKind::Modified, 0, vec![], 0.5),
                step(StepChangeKind::Moved, 1, vec![], 1.0),
            ],
            ..RecipeDiff::default()
        };
        let expected = (3.0 + (2.0 + 0.5 + 0.5) + 3.0) / (4.0 + 4.0 + 3.0);
        assert!((similarity(&d, &recipe(4, 4)) - expected).abs() < 1e-12);
    }

    #[test]
    fn unit_changes_and_many_items_are_capped() {
        let unit = modified(
            ing("5", 1.0, "pinch", "salt"),
            ing("5", 0.25, "tsp", "salt"),
            false,
            QuantityChange::UnitChanged {
                from_unit: "pinch".into(),
                to_unit: "tsp".into(),
            },
        );
        let d = RecipeDiff {
            ingredients: vec![unit.clone(), unit.clone(), unit.clone(), unit],
            ..RecipeDiff::default()
        };
        assert_eq!(
            summarise(&d),
            "salt 1 pinch → 0.25 tsp; salt 1 pinch → 0.25 tsp; salt 1 pinch → 0.25 tsp; \
             1 more amount change"
        );
    }

    #[test]
    fn a_substitutes_amount_is_named_after_the_substitute() {
        let d = RecipeDiff {
            ingredients: vec![modified(
                ing("6", 60.0, "g", "butter"),
                ing("6", 75.0, "g", "margarine"),
                true,
                QuantityChange::Changed {
                    expected: 60.0,
                    actual: 75.0,
                    unit: "g".into(),
                    ratio: 1.25,
                },
            )],
            ..RecipeDiff::default()
        };
        assert_eq!(
            summarise(&d),
            "butter substituted by margarine; margarine 60 g → 75 g (×1.25)"
        );
    }

    #[test]
    fn numbers_are_short_but_distinct() {
        assert_eq!(number(2.0), "2");
        assert_eq!(number(1.0 / 3.0), "0.333");
        assert_eq!(number(-0.0001), "0");
        assert_eq!(
            distinct_numbers(1.0, 1.00005),
            ("1".into(), "1.00005".into())
        );
    }
}
