//! Conversions between the wire types (`recipe.v1`) and the domain types of the model, diff and
//! store crates. Kept in one module so the API handlers read as plain request -> domain -> reply.

use prost_types::Timestamp;
use recipe_diff as d;
use recipe_proto::recipe::v1 as pb;
use recipe_store::{RecipeSummary, StoredMake, StoredRecipe};

pub use recipe_proto::convert::{ingredient_to_pb, recipe_from_pb, recipe_to_pb, step_to_pb};

pub fn timestamp(ms: i64) -> Timestamp {
    Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

pub fn recipe_version_to_pb(s: &StoredRecipe) -> pb::RecipeVersion {
    pb::RecipeVersion {
        recipe: Some(recipe_to_pb(&s.recipe)),
        version: s.version,
        create_time: Some(timestamp(s.created_at_ms)),
    }
}

pub fn summary_to_pb(s: &RecipeSummary) -> pb::RecipeSummary {
    pb::RecipeSummary {
        recipe_id: s.recipe_id.clone(),
        recipe_name: s.recipe_name.clone(),
        latest_version: s.latest_version,
        update_time: Some(timestamp(s.updated_at_ms)),
    }
}

pub fn make_to_pb(s: &StoredMake) -> pb::Make {
    pb::Make {
        make_id: s.make_id.clone(),
        recipe_id: s.recipe_id.clone(),
        recipe_version: s.recipe_version,
        make: Some(recipe_to_pb(&s.make)),
        diff: Some(diff_to_pb(&s.diff)),
        record_time: Some(timestamp(s.recorded_at_ms)),
        source: s.source.clone(),
        idempotency_key: s.idempotency_key.clone(),
    }
}

pub fn diff_to_pb(diff: &d::RecipeDiff) -> pb::RecipeDiff {
    pb::RecipeDiff {
        name: diff.name.as_ref().map(|c| pb::TextChange {
            from: c.from.clone(),
            to: c.to.clone(),
        }),
        rating: diff.rating.as_ref().map(|c| pb::RatingChange {
            from: c.from,
            to: c.to,
        }),
        scaling: diff.scaling.as_ref().map(|s| pb::Scaling {
            factor: s.factor,
            ingredients_scaled: s.ingredients_scaled,
            ingredients_compared: s.ingredients_compared,
        }),
        ingredients: diff
            .ingredients
            .iter()
            .map(ingredient_change_to_pb)
            .collect(),
        steps: diff.steps.iter().map(step_change_to_pb).collect(),
        summary: diff.summary.clone(),
        similarity: diff.similarity,
    }
}

fn ingredient_change_to_pb(c: &d::IngredientChange) -> pb::IngredientChange {
    let kind = match c.kind {
        d::IngredientChangeKind::Added => pb::IngredientChangeKind::Added,
        d::IngredientChangeKind::Removed => pb::IngredientChangeKind::Removed,
        d::IngredientChangeKind::Modified => pb::IngredientChangeKind::Modified,
    };
    let matched_by = match c.matched_by {
        None => pb::MatchedBy::Unspecified,
        Some(d::MatchedBy::Id) => pb::MatchedBy::Id,
        Some(d::MatchedBy::Name) => pb::MatchedBy::Name,
    };
    pb::IngredientChange {
        kind: kind.into(),
        original: c.original.as_ref().map(ingredient_to_pb),
        made: c.made.as_ref().map(ingredient_to_pb),
        matched_by: matched_by.into(),
        substituted: c.substituted,
        quantity: Some(quantity_change_to_pb(&c.quantity)),
    }
}

fn quantity_change_to_pb(q: &d::QuantityChange) -> pb::QuantityChange {
    use pb::QuantityChangeKind as K;
    let of_kind = |kind: K| pb::QuantityChange {
        kind: kind.into(),
        ..Default::default()
    };
    match q {
        d::QuantityChange::Unchanged => of_kind(K::Unchanged),
        d::QuantityChange::Equivalent => of_kind(K::Equivalent),
        d::QuantityChange::NotApplicable => of_kind(K::NotApplicable),
        d::QuantityChange::Changed {
            expected,
            actual,
            unit,
            ratio,
        } => pb::QuantityChange {
            kind: K::Changed.into(),
            expected: *expected,
            actual: *actual,
            unit: unit.clone(),
            ratio: *ratio,
            ..Default::default()
        },
        d::QuantityChange::UnitChanged { from_unit, to_unit } => pb::QuantityChange {
            kind: K::UnitChanged.into(),
            from_unit: from_unit.clone(),
            to_unit: to_unit.clone(),
            ..Default::default()
        },
    }
}

fn step_change_to_pb(c: &d::StepChange) -> pb::StepChange {
    let kind = match c.kind {
        d::StepChangeKind::Inserted => pb::StepChangeKind::Inserted,
        d::StepChangeKind::Deleted => pb::StepChangeKind::Deleted,
        d::StepChangeKind::Modified => pb::StepChangeKind::Modified,
        d::StepChangeKind::Moved => pb::StepChangeKind::Moved,
    };
    pb::StepChange {
        kind: kind.into(),
        original_index: c.original_index,
        made_index: c.made_index,
        original: c.original.as_ref().map(step_to_pb),
        made: c.made.as_ref().map(step_to_pb),
        text_changed: c.text_changed,
        words: c
            .words
            .iter()
            .map(|w| pb::WordEdit {
                op: match w.op {
                    d::WordOp::Equal => pb::WordOp::Equal,
                    d::WordOp::Insert => pb::WordOp::Insert,
                    d::WordOp::Delete => pb::WordOp::Delete,
                }
                .into(),
                text: w.text.clone(),
            })
            .collect(),
        similarity: c.similarity,
    }
}

/// The reply for GetRecipeStats: everything counted, with the `top` most changed ingredients and
/// steps (ties broken by key so the order is stable).
pub fn stats_to_pb(recipe_id: &str, s: &d::RecipeStats, top: usize) -> pb::RecipeStats {
    let mean = |sum: f64, n: u64| if n == 0 { 0.0 } else { sum / n as f64 };
    let mut ingredients: Vec<_> = s.ingredients.iter().collect();
    ingredients.sort_by(|a, b| {
        b.1.total_changes()
            .cmp(&a.1.total_changes())
            .then(a.0.cmp(b.0))
    });
    let mut steps: Vec<_> = s.steps.iter().collect();
    steps.sort_by(|a, b| {
        b.1.total_changes()
            .cmp(&a.1.total_changes())
            .then(a.0.cmp(b.0))
    });
    pb::RecipeStats {
        recipe_id: recipe_id.to_string(),
        makes: s.makes,
        scaled_makes: s.scaled_makes,
        mean_scale_factor: mean(s.scale_factor_sum, s.scaled_makes),
        rated_makes: s.rated_makes,
        mean_rating: mean(s.rating_sum, s.rated_makes),
        ingredients: ingredients
            .into_iter()
            .take(top)
            .map(|(key, i)| {
                let mut substitutes: Vec<_> = i
                    .substitutes
                    .iter()
                    .map(|(name, count)| pb::Substitute {
                        name: name.clone(),
                        count: *count,
                    })
                    .collect();
                substitutes.sort_by(|a, b| b.count.cmp(&a.count).then(a.name.cmp(&b.name)));
                pb::IngredientStats {
                    key: key.clone(),
                    name: i.name.clone(),
                    total_changes: i.total_changes(),
                    added: i.added,
                    removed: i.removed,
                    substituted: i.substituted,
                    quantity_changed: i.quantity_changed,
                    unit_changed: i.unit_changed,
                    mean_quantity_ratio: i.mean_quantity_ratio().unwrap_or(0.0),
                    substitutes,
                }
            })
            .collect(),
        steps: steps
            .into_iter()
            .take(top)
            .map(|(id, st)| pb::StepStats {
                step_id: id.clone(),
                step_text: st.text.clone(),
                total_changes: st.total_changes(),
                modified: st.modified,
                moved: st.moved,
                deleted: st.deleted,
            })
            .collect(),
        steps_inserted: s.steps_inserted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_split_milliseconds_including_before_the_epoch() {
        assert_eq!(
            timestamp(1_500),
            Timestamp {
                seconds: 1,
                nanos: 500_000_000
            }
        );
        assert_eq!(
            timestamp(-1),
            Timestamp {
                seconds: -1,
                nanos: 999_000_000
            }
        );
    }
}
