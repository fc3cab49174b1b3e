//! How a make differs from its recipe.
//!
//! [`diff`] pairs ingredients (by id, else by normalised name), compares quantities in common
//! units, detects a whole-recipe scaling factor, aligns steps (inserted, deleted, modified with a
//! word-level edit, moved), and summarises the result. [`apply`] is its inverse: it rebuilds the
//! make from the recipe and the diff, which is what the property tests check. [`RecipeStats`]
//! aggregates diffs per recipe.

mod apply;
mod ingredients;
mod names;
mod scaling;
pub mod stats;
mod steps;
mod summary;
pub mod types;
pub mod units;

pub use apply::apply;
pub use names::normalise_name;
pub use stats::{IngredientStats, RecipeStats, StepStats};
pub use summary::{ingredient_is_significant, step_is_significant};
pub use types::*;

use recipe_model::Recipe;

/// Compares a make with its recipe. Both are expected to be validated documents; anything
/// else still gives a diff, never a panic.
pub fn diff(original: &Recipe, made: &Recipe) -> RecipeDiff {
    let ingredients = ingredients::compare(&original.ingredients, &made.ingredients);
    let mut diff = RecipeDiff {
        name: (original.recipe_name != made.recipe_name).then(|| TextChange {
            from: original.recipe_name.clone(),
            to: made.recipe_name.clone(),
        }),
        rating: (original.rating != made.rating).then_some(RatingChange {
            from: original.rating,
            to: made.rating,
        }),
        scaling: ingredients.scaling,
        ingredients: ingredients.changes,
        steps: steps::align(&original.steps, &made.steps),
        summary: String::new(),
        similarity: 1.0,
    };
    diff.similarity = summary::similarity(&diff, original);
    diff.summary = summary::summarise(&diff);
    diff
}

#[cfg(test)]
mod tests {
    use super::*;

    const RECIPE: &str = r#"{
        "recipeName": "Pancakes", "recipeId": 7, "rating": 4,
        "ingredients": [
            {"ingredientId": 1, "quantity": 2, "measurement": "cup", "ingredientName": "flour"},
            {"ingredientId": 2, "quantity": 2, "measurement": "", "ingredientName": "eggs"},
            {"ingredientId": 3, "quantity": 100, "measurement": "g", "ingredientName": "sugar"},
            {"ingredientId": 4, "quantity": 50, "measurement": "g", "ingredientName": "butter"},
            {"ingredientId": 5, "quantity": 1, "measurement": "pinch", "ingredientName": "salt"},
            {"ingredientId": 6, "quantity": 1.5, "measurement": "cup", "ingredientName": "milk"}
        ],
        "steps": [
            {"stepId": 1, "stepText": "Preheat the oven to 180C."},
            {"stepId": 2, "stepText": "Whisk the eggs and sugar until pale."},
            {"stepId": 3, "stepText": "Melt the butter and stir it in."},
            {"stepId": 4, "stepText": "Fold in the flour, milk and salt."},
            {"stepId": 5, "stepText": "Bake at 180C for 20 minutes"}
        ]
    }"#;

    /// Doubled, with more sugar, margarine for butter, vanilla added, a hotter oven and the
    /// butter melted before the eggs are whisked.
    const MAKE: &str = r#"{
        "recipeName": "Pancakes (double)", "recipeId": 7, "rating": 5,
        "ingredients": [
            {"ingredientId": 1, "quantity": 4, "measurement": "cup", "ingredientName": "flour"},
            {"ingredientId": 2, "quantity": 4, "measurement": "", "ingredientName": "eggs"},
            {"ingredientId": 3, "quantity": 300, "measurement": "g", "ingredientName": "sugar"},
            {"ingredientId": 4, "quantity": 100, "measurement": "g", "ingredientName": "margarine"},
            {"ingredientId": 5, "quantity": 2, "measurement": "pinch", "ingredientName": "salt"},
            {"ingredientId": 6, "quantity": 3, "measurement": "cup", "ingredientName": "milk"},
            {"ingredientId": 7, "quantity": 1, "measurement": "tsp", "ingredientName": "vanilla"}
        ],
        "steps": [
            {"stepId": 1, "stepText": "Preheat the oven to 180C."},
            {"stepId": 3, "stepText": "Melt the butter and stir it in."},
            {"stepId": 2, "stepText": "Whisk the eggs and sugar until pale."},
            {"stepId": 4, "stepText": "Fold in the flour, milk and salt."},
            {"stepId": 5, "stepText": "Bake at 200C for 20 minutes"}
        ]
    }"#;

    fn parse(doc: &str) -> Recipe {
        recipe_model::parse_json(doc.as_bytes()).expect("valid document")
    }

    #[test]
    fn a_realistic_make_is_summarised_and_rebuilt() {
        let (recipe, made) = (parse(RECIPE), parse(MAKE));
        let d = diff(&recipe, &made);
        assert_eq!(
            d.summary,
            "renamed to \"Pancakes (double)\"; rating 4 → 5; scaled ×2; \
             1 ingredient added (vanilla); butter substituted by margarine; \
             sugar 200 g → 300 g (×1.5 of scaled); step 5 modified; 1 step moved"
        );
        let scaling = d.scaling.clone().expect("scaled");
        assert_eq!(
            (
                scaling.factor,
                scaling.ingredients_scaled,
                scaling.ingredients_compared
            ),
            (2.0, 5, 6)
        );
        assert_eq!(d.ingredients.len(), 3, "sugar, margarine and vanilla only");
        assert!(d.similarity > 0.5 && d.similarity < 1.0, "{}", d.similarity);
        assert_eq!(apply(&recipe, &d), made);
    }

    #[test]
    fn renumbered_and_respelled_make_has_only_cosmetic_changes() {
        let recipe = parse(RECIPE);
        let mut made = recipe.clone();
        made.ingredients[1].ingredient_name = "Egg".into();
        made.ingredients[2].ingredient_id = "sugar-1".into();
        made.ingredients[0].measurement = "cups".into();
        for step in &mut made.steps {
            step.step_id = format!("step-{}", step.step_id);
        }
        let d = diff(&recipe, &made);
        assert_eq!(d.summary, "only cosmetic changes");
        assert_eq!(d.similarity, 1.0);
        assert_eq!(d.ingredients.len(), 3);
        assert!(d.steps.is_empty());
        let rebuilt = apply(&recipe, &d);
        assert_eq!(rebuilt.ingredients, made.ingredients);
        assert_eq!(
            rebuilt.steps, recipe.steps,
            "unlisted steps keep the recipe's ids"
        );
    }

    #[test]
    fn rating_removed_is_a_change() {
        let recipe = parse(RECIPE);
        let made = Recipe {
            rating: None,
            ..recipe.clone()
        };
        let d = diff(&recipe, &made);
        assert_eq!(
            d.rating,
            Some(RatingChange {
                from: Some(4.0),
                to: None
            })
        );
        assert_eq!(d.summary, "rating 4 → none");
        assert!(d.similarity < 1.0);
        assert_eq!(apply(&recipe, &d).rating, None);
    }

    #[test]
    fn apply_tolerates_an_inconsistent_diff() {
        let recipe = parse(RECIPE);
        let mut d = diff(&recipe, &parse(MAKE));
        for s in &mut d.steps {
            s.made_index = Some(999);
            s.original_index = Some(999);
        }
        d.ingredients.iter_mut().for_each(|c| c.made = None);
        let rebuilt = apply(&recipe, &d);
        assert_eq!(rebuilt.steps.len(), recipe.steps.len() + 2);
    }
}
