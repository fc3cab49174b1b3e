//! Per-recipe statistics: a running aggregate of every recorded make's [`RecipeDiff`].
//!
//! Stores update it in the same transaction that records a make, so it counts each make exactly
//! once. It is plain data (serde) so a store can keep it as one document. Keys, substitutes and
//! labels are bounded so that the document stays well under DynamoDB's 400 KB item limit
//! whatever the makes contain (a test checks the worst case).

use crate::types::RecipeDiff;
use recipe_model::Recipe;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Distinct ingredients, and distinct steps, tracked per recipe; changes beyond that are counted
/// in `untracked_changes` only.
pub const MAX_TRACKED_KEYS: usize = 250;
/// Distinct substitutes remembered per ingredient.
pub const MAX_SUBSTITUTES: usize = 5;
/// Longest name or step text kept as a label, in characters (longer ones are cut with "…").
pub const MAX_LABEL_CHARS: usize = 80;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RecipeStats {
    pub makes: u64,
    pub scaled_makes: u64,
    /// Sum of scaling factors over scaled makes (mean = sum / scaled_makes).
    pub scale_factor_sum: f64,
    pub rated_makes: u64,
    pub rating_sum: f64,
    /// Keyed by the recipe's ingredientId for ingredients of the recipe, and by
    /// `added:<normalised name>` for ingredients that makes added.
    pub ingredients: BTreeMap<String, IngredientStats>,
    /// Keyed by the recipe's stepId.
    pub steps: BTreeMap<String, StepStats>,
    pub steps_inserted: u64,
    /// Changes not attributed to a key because MAX_TRACKED_KEYS was reached.
    pub untracked_changes: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IngredientStats {
    /// Display name (the recipe's, or the first make's for added ingredients).
    pub name: String,
    pub added: u64,
    pub removed: u64,
    pub substituted: u64,
    pub quantity_changed: u64,
    pub unit_changed: u64,
    /// Sum over quantity changes from a non-zero amount of actual / expected.
    pub quantity_ratio_sum: f64,
    /// How many ratios `quantity_ratio_sum` holds (a change from zero has no ratio).
    #[serde(default)]
    pub quantity_ratio_samples: u64,
    /// Substitute name -> times used, at most MAX_SUBSTITUTES entries.
    pub substitutes: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StepStats {
    /// The recipe's text of the step when it was first changed (cut to MAX_LABEL_CHARS).
    pub text: String,
    pub modified: u64,
    pub moved: u64,
    pub deleted: u64,
}

impl RecipeStats {
    /// Folds one make, and its diff against the recipe, into the aggregate.
    pub fn apply(&mut self, made: &Recipe, diff: &RecipeDiff) {
        use crate::types::{IngredientChangeKind, QuantityChange, StepChangeKind, WordOp};

        self.makes += 1;
        if let Some(s) = &diff.scaling {
            self.scaled_makes += 1;
            self.scale_factor_sum += s.factor;
        }
        // From the make itself: the diff mentions the rating only when it changed.
        if let Some(rating) = made.rating {
            self.rated_makes += 1;
            self.rating_sum += rating;
        }
        // Cosmetic changes (respelling, renumbering, another unit for the same amount) are in
        // the diff only so that it can be applied; they are not changes a cook made.
        for change in diff
            .ingredients
            .iter()
            .filter(|c| crate::ingredient_is_significant(c))
        {
            let (key, name) = match (change.kind, &change.original, &change.made) {
                (IngredientChangeKind::Added, _, Some(made)) => (
                    format!("added:{}", crate::normalise_name(&made.ingredient_name)),
                    label(&made.ingredient_name),
                ),
                (_, Some(orig), _) => (orig.ingredient_id.clone(), label(&orig.ingredient_name)),
                _ => continue,
            };
            let Some(entry) = self.ingredient_entry(key, name) else {
                continue;
            };
            match change.kind {
                IngredientChangeKind::Added => entry.added += 1,
                IngredientChangeKind::Removed => entry.removed += 1,
                IngredientChangeKind::Modified => {
                    if change.substituted {
                        entry.substituted += 1;
                        if let Some(made) = &change.made {
                            let sub = label(&made.ingredient_name);
                            if entry.substitutes.contains_key(&sub)
                                || entry.substitutes.len() < MAX_SUBSTITUTES
                            {
                                *entry.substitutes.entry(sub).or_default() += 1;
                            }
                        }
                    }
                    match change.quantity {
                        QuantityChange::Changed {
                            expected, ratio, ..
                        } => {
                            entry.quantity_changed += 1;
                            if expected > 0.0 {
                                entry.quantity_ratio_sum += ratio;
                                entry.quantity_ratio_samples += 1;
                            }
                        }
                        QuantityChange::UnitChanged { .. } => entry.unit_changed += 1,
                        _ => {}
                    }
                }
            }
        }
        for change in diff.steps.iter().filter(|c| crate::step_is_significant(c)) {
            if change.kind == StepChangeKind::Inserted {
                self.steps_inserted += 1;
                continue;
            }
            let Some(orig) = &change.original else {
                continue;
            };
            if !self.steps.contains_key(&orig.step_id) && self.steps.len() >= MAX_TRACKED_KEYS {
                self.untracked_changes += 1;
                continue;
            }
            let entry = self
                .steps
                .entry(orig.step_id.clone())
                .or_insert_with(|| StepStats {
                    text: label(&orig.step_text),
                    ..StepStats::default()
                });
            match change.kind {
                StepChangeKind::Deleted => entry.deleted += 1,
                StepChangeKind::Modified => entry.modified += 1,
                StepChangeKind::Moved => {
                    entry.moved += 1;
                    if change.words.iter().any(|w| w.op != WordOp::Equal) {
                        entry.modified += 1;
                    }
                }
                StepChangeKind::Inserted => {}
            }
        }
    }

    /// Adds another aggregate (e.g. one shard of a store's statistics) into this one. Counts
    /// add up exactly; the key bounds apply to each part, not to the merged result, which only
    /// exists in memory for a reply.
    pub fn merge(&mut self, other: &RecipeStats) {
        self.makes += other.makes;
        self.scaled_makes += other.scaled_makes;
        self.scale_factor_sum += other.scale_factor_sum;
        self.rated_makes += other.rated_makes;
        self.rating_sum += other.rating_sum;
        self.steps_inserted += other.steps_inserted;
        self.untracked_changes += other.untracked_changes;
        for (key, theirs) in &other.ingredients {
            let ours = self
                .ingredients
                .entry(key.clone())
                .or_insert_with(|| IngredientStats {
                    name: theirs.name.clone(),
                    ..IngredientStats::default()
                });
            ours.added += theirs.added;
            ours.removed += theirs.removed;
            ours.substituted += theirs.substituted;
            ours.quantity_changed += theirs.quantity_changed;
            ours.unit_changed += theirs.unit_changed;
            ours.quantity_ratio_sum += theirs.quantity_ratio_sum;
            ours.quantity_ratio_samples += theirs.quantity_ratio_samples;
            for (name, count) in &theirs.substitutes {
                *ours.substitutes.entry(name.clone()).or_default() += count;
            }
        }
        for (key, theirs) in &other.steps {
            let ours = self.steps.entry(key.clone()).or_insert_with(|| StepStats {
                text: theirs.text.clone(),
                ..StepStats::default()
            });
            ours.modified += theirs.modified;
            ours.moved += theirs.moved;
            ours.deleted += theirs.deleted;
        }
    }

    fn ingredient_entry(&mut self, key: String, name: String) -> Option<&mut IngredientStats> {
        if !self.ingredients.contains_key(&key) && self.ingredients.len() >= MAX_TRACKED_KEYS {
            self.untracked_changes += 1;
            return None;
        }
        Some(
            self.ingredients
                .entry(key)
                .or_insert_with(|| IngredientStats {
                    name,
                    ..IngredientStats::default()
                }),
        )
    }
}

impl IngredientStats {
    /// How often this ingredient was changed in any way; the ranking key for "most changed".
    pub fn total_changes(&self) -> u64 {
        self.added + self.removed + self.substituted + self.quantity_changed + self.unit_changed
    }

    /// Mean of actual / expected over quantity changes from a non-zero amount, if any.
    pub fn mean_quantity_ratio(&self) -> Option<f64> {
        (self.quantity_ratio_samples > 0)
            .then(|| self.quantity_ratio_sum / self.quantity_ratio_samples as f64)
    }
}

/// A display label: the text, cut to MAX_LABEL_CHARS characters.
fn label(text: &str) -> String {
    if text.chars().count() <= MAX_LABEL_CHARS {
        text.to_string()
    } else {
        let mut cut: String = text.chars().take(MAX_LABEL_CHARS - 1).collect();
        cut.push('…');
        cut
    }
}

impl StepStats {
    pub fn total_changes(&self) -> u64 {
        self.modified + self.moved + self.deleted
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff;
    use recipe_model::{Ingredient, Recipe, Step};

    fn recipe() -> Recipe {
        let ing = |id: &str, quantity: f64, name: &str| Ingredient {
            ingredient_id: id.into(),
            quantity,
            measurement: "g".into(),
            ingredient_name: name.into(),
        };
        let step = |id: &str, text: &str| Step {
            step_id: id.into(),
            step_text: text.into(),
        };
        Recipe {
            recipe_id: "r".into(),
            recipe_name: "Cake".into(),
            rating: Some(4.0),
            ingredients: vec![ing("1", 100.0, "flour"), ing("2", 50.0, "butter")],
            steps: vec![
                step("1", "Cream the butter."),
                step("2", "Fold in the flour."),
                step("3", "Bake for 20 minutes."),
            ],
        }
    }

    #[test]
    fn counts_substitutions_quantity_changes_and_step_edits() {
        let original = recipe();
        let mut made = original.clone();
        made.ingredients[0].quantity = 150.0;
        made.ingredients[1].ingredient_name = "margarine".into();
        made.steps[2].step_text = "Bake for 25 minutes.".into();
        made.steps.swap(0, 1);
        made.rating = Some(5.0);
        let mut stats = RecipeStats::default();
        stats.apply(&made, &diff(&original, &made));
        stats.apply(&made, &diff(&original, &made));
        assert_eq!(
            (stats.makes, stats.rated_makes, stats.rating_sum),
            (2, 2, 10.0)
        );
        let flour = &stats.ingredients["1"];
        assert_eq!(flour.quantity_changed, 2);
        assert_eq!(flour.mean_quantity_ratio(), Some(1.5));
        let butter = &stats.ingredients["2"];
        assert_eq!(butter.substituted, 2);
        assert_eq!(butter.substitutes["margarine"], 2);
        assert_eq!(stats.steps["3"].modified, 2);
        assert_eq!(stats.steps.values().map(|s| s.moved).sum::<u64>(), 2);
    }

    #[test]
    fn cosmetic_changes_are_not_counted() {
        let original = recipe();
        let mut made = original.clone();
        made.ingredients[0].ingredient_name = "Flour".into();
        made.ingredients[1].ingredient_id = "b".into();
        made.ingredients[1].measurement = "grams".into();
        made.steps[0].step_text = "cream the butter".into();
        let d = diff(&original, &made);
        assert_eq!(d.ingredients.len(), 2);
        assert_eq!(d.steps.len(), 1);
        let mut stats = RecipeStats::default();
        stats.apply(&made, &d);
        assert_eq!(stats.makes, 1);
        assert!(stats.ingredients.is_empty(), "{:?}", stats.ingredients);
        assert!(stats.steps.is_empty(), "{:?}", stats.steps);
    }

    #[test]
    fn ratings_are_averaged_over_every_rated_make_changed_or_not() {
        let original = recipe();
        let same = original.clone();
        let mut unrated = original.clone();
        unrated.rating = None;
        let mut stats = RecipeStats::default();
        stats.apply(&same, &diff(&original, &same));
        stats.apply(&unrated, &diff(&original, &unrated));
        assert_eq!(
            (stats.makes, stats.rated_makes, stats.rating_sum),
            (2, 1, 4.0)
        );
    }

    #[test]
    fn a_change_from_zero_has_no_ratio_to_average() {
        let mut original = recipe();
        original.ingredients[0].quantity = 0.0;
        let mut made = original.clone();
        made.ingredients[0].quantity = 10.0;
        let mut stats = RecipeStats::default();
        stats.apply(&made, &diff(&original, &made));
        let flour = &stats.ingredients["1"];
        assert_eq!(flour.quantity_changed, 1);
        assert_eq!(flour.mean_quantity_ratio(), None);
    }

    /// Every key, substitute and label at its limit must still fit one DynamoDB item (400 KB,
    /// with room left for the key attributes).
    #[test]
    fn the_worst_case_document_fits_a_dynamodb_item() {
        use recipe_model::limits::{MAX_ID_CHARS, MAX_NAME_CHARS, MAX_STEP_TEXT_CHARS};
        let long = |c: char, n: usize| std::iter::repeat_n(c, n).collect::<String>();
        let mut stats = RecipeStats::default();
        for round in 0..(MAX_SUBSTITUTES + 2) {
            let n = MAX_TRACKED_KEYS + 10;
            let original = Recipe {
                recipe_id: "r".into(),
                recipe_name: "x".into(),
                rating: None,
                ingredients: (0..n)
                    .map(|i| Ingredient {
                        ingredient_id: format!("{i:0>width$}", width = MAX_ID_CHARS),
                        quantity: 1.0,
                        measurement: "g".into(),
                        ingredient_name: format!("{i}{}", long('n', MAX_NAME_CHARS - 5)),
                    })
                    .collect(),
                steps: (0..n)
                    .map(|i| Step {
                        step_id: format!("{i:0>width$}", width = MAX_ID_CHARS),
                        step_text: format!("{i} {}", long('s', MAX_STEP_TEXT_CHARS - 6)),
                    })
                    .collect(),
            };
            let mut made = original.clone();
            for ing in &mut made.ingredients {
                ing.ingredient_name = format!("{round}{}", long('m', MAX_NAME_CHARS - 3));
                ing.quantity = 2.0 + round as f64;
            }
            for step in &mut made.steps {
                step.step_text = format!("{round} changed {}", step.step_text);
            }
            stats.apply(&made, &diff(&original, &made));
        }
        let size = serde_json::to_vec(&stats)
            .map(|v| v.len())
            .unwrap_or(usize::MAX);
        assert!(stats.untracked_changes > 0, "the key limit was reached");
        assert!(
            size < 350 * 1024,
            "worst-case stats document is {size} bytes"
        );
    }

    #[test]
    fn merged_parts_equal_one_aggregate_of_every_make() {
        let original = recipe();
        let mut a = original.clone();
        a.ingredients[1].ingredient_name = "margarine".into();
        a.steps.swap(0, 1);
        let mut b = original.clone();
        b.ingredients[0].quantity = 200.0;
        b.rating = Some(2.0);
        let mut c = original.clone();
        c.ingredients[1].ingredient_name = "lard".into();
        c.steps[2].step_text = "Bake for 30 minutes.".into();
        let makes = [a, b, c];

        let mut whole = RecipeStats::default();
        for m in &makes {
            whole.apply(m, &diff(&original, m));
        }
        let mut first = RecipeStats::default();
        first.apply(&makes[0], &diff(&original, &makes[0]));
        first.apply(&makes[1], &diff(&original, &makes[1]));
        let mut second = RecipeStats::default();
        second.apply(&makes[2], &diff(&original, &makes[2]));
        let mut merged = RecipeStats::default();
        merged.merge(&first);
        merged.merge(&second);
        assert_eq!(merged, whole);
        assert_eq!(merged.ingredients["2"].substituted, 2);
    }
}
