//! The inverse of `diff`: rebuilds a make from its recipe and the diff between them.
//!
//! It is what makes the diff trustworthy: the property tests check that applying the diff of
//! any make to its recipe gives the make back.

use crate::types::{IngredientChangeKind, RecipeDiff, StepChangeKind};
use recipe_model::{Ingredient, Recipe, Step};
use std::collections::HashMap;

/// Rebuilds the make that `diff` was computed from, given the recipe it was computed against.
///
/// What comes back:
/// - `recipe_id`: the recipe's (a diff does not record the make's id);
/// - `recipe_name` and `rating`: the make's when the diff lists a change, else the recipe's;
/// - ingredients: the make's as a set keyed by ingredientId, with the make's exact values for
///   every listed ingredient and, for unlisted ones, the recipe's ingredient with its quantity
///   multiplied by the scaling factor (equal to the make's within the 1e-9 relative tolerance
///   of the comparison). Order: the recipe's order, each modified ingredient in the place of
///   the one it replaced, removed ones dropped, then added ones in the make's order;
/// - steps: the make's texts in the make's order. Listed inserted, moved and modified steps
///   (the make's snapshot, with its id) sit at their `made_index`; the other positions are
///   filled in recipe order by the recipe steps that were neither deleted, moved nor modified,
///   with the recipe's ids (a make that only renumbered steps gets the recipe's ids back).
///
/// Never panics: entries of a hand-made, inconsistent diff that lack the snapshot they need
/// are skipped, and out-of-range indices only affect the order.
pub fn apply(original: &Recipe, diff: &RecipeDiff) -> Recipe {
    Recipe {
        recipe_id: original.recipe_id.clone(),
        recipe_name: diff
            .name
            .as_ref()
            .map_or_else(|| original.recipe_name.clone(), |n| n.to.clone()),
        rating: diff.rating.as_ref().map_or(original.rating, |r| r.to),
        ingredients: apply_ingredients(original, diff),
        steps: apply_steps(original, diff),
    }
}

fn apply_ingredients(original: &Recipe, diff: &RecipeDiff) -> Vec<Ingredient> {
    let factor = diff.scaling.as_ref().map_or(1.0, |s| s.factor);
    // Recipe ingredientId -> the make's ingredient replacing it, or None when removed.
    let mut replaced: HashMap<&str, Option<&Ingredient>> = HashMap::new();
    let mut added = Vec::new();
    for change in &diff.ingredients {
        match (change.kind, &change.original, &change.made) {
            (IngredientChangeKind::Added, _, Some(made)) => added.push(made.clone()),
            (IngredientChangeKind::Removed, Some(orig), _) => {
                replaced.insert(&orig.ingredient_id, None);
            }
            (IngredientChangeKind::Modified, Some(orig), Some(made)) => {
                replaced.insert(&orig.ingredient_id, Some(made));
            }
            _ => {}
        }
    }
    let mut out: Vec<Ingredient> = original
        .ingredients
        .iter()
        .filter_map(|orig| match replaced.get(orig.ingredient_id.as_str()) {
            Some(made) => made.cloned(),
            None => Some(Ingredient {
                quantity: orig.quantity * factor,
                ..orig.clone()
            }),
        })
        .collect();
    out.extend(added);
    out
}

fn apply_steps(original: &Recipe, diff: &RecipeDiff) -> Vec<Step> {
    let mut consumed = vec![false; original.steps.len()];
    let mut placed: Vec<(u32, &Step)> = Vec::new();
    for change in &diff.steps {
        let takes_recipe_step = change.kind != StepChangeKind::Inserted;
        if takes_recipe_step
            && let Some(slot) = change
                .original_index
                .and_then(|i| consumed.get_mut(usize::try_from(i).ok()?))
        {
            *slot = true;
        }
        if change.kind != StepChangeKind::Deleted
            && let (Some(at), Some(made)) = (change.made_index, &change.made)
        {
            placed.push((at, made));
        }
    }
    placed.sort_by_key(|&(at, _)| at);

    let mut kept = original
        .steps
        .iter()
        .zip(&consumed)
        .filter(|(_, consumed)| !**consumed)
        .map(|(step, _)| step);
    let mut placed = placed.into_iter().peekable();
    let mut out: Vec<Step> = Vec::with_capacity(original.steps.len());
    loop {
        let position = u32::try_from(out.len()).unwrap_or(u32::MAX);
        let step = match placed.next_if(|&(at, _)| at <= position) {
            Some((_, made)) => made,
            // No listed step here: the next unchanged recipe step, or, once those run out,
            // the remaining listed ones in order.
            None => match kept.next().or_else(|| placed.next().map(|(_, made)| made)) {
                Some(step) => step,
                None => break,
            },
        };
        out.push(step.clone());
    }
    out
}
