//! Ingredient comparison: pairs the recipe's ingredients with the make's, detects scaling and
//! says for each pair whether it was substituted, respelled, or used in another amount or unit.
//!
//! Pairing is by ingredientId first, then by normalised name, so a renumbered ingredient is
//! still recognised and a different ingredient under the recipe's id is a substitution.

use crate::names::normalise_name;
use crate::scaling;
use crate::types::{IngredientChange, IngredientChangeKind, MatchedBy, QuantityChange, Scaling};
use crate::units::{Unit, approx_eq, parse_unit};
use recipe_model::Ingredient;
use std::collections::{HashMap, VecDeque};

/// The ingredient part of a diff.
#[derive(Debug, Clone, PartialEq)]
pub struct IngredientDiff {
    pub scaling: Option<Scaling>,
    /// Added and modified ingredients in the make's order, then removed ones in the recipe's.
    pub changes: Vec<IngredientChange>,
}

/// One recipe ingredient paired with one make ingredient, with their parsed units.
struct Pair<'a> {
    index: usize,
    original: &'a Ingredient,
    original_unit: &'a Unit,
    made: &'a Ingredient,
    made_unit: &'a Unit,
    matched_by: MatchedBy,
}

/// Compares the make's ingredients with the recipe's. Pairs that differ in nothing but a
/// quantity following the scaling factor are not listed.
pub fn compare(recipe: &[Ingredient], made: &[Ingredient]) -> IngredientDiff {
    let units = |list: &[Ingredient]| -> Vec<Unit> {
        list.iter().map(|i| parse_unit(&i.measurement)).collect()
    };
    let (recipe_units, made_units) = (units(recipe), units(made));
    let pairs: Vec<Option<Pair<'_>>> = pair(recipe, made)
        .into_iter()
        .zip(made.iter().zip(&made_units))
        .map(|(partner, (m, made_unit))| {
            let (index, matched_by) = partner?;
            Some(Pair {
                index,
                original: recipe.get(index)?,
                original_unit: recipe_units.get(index)?,
                made: m,
                made_unit,
                matched_by,
            })
        })
        .collect();
    let ratios: Vec<f64> = pairs
        .iter()
        .flatten()
        .filter_map(Pair::base_ratio)
        .collect();
    let scaling = scaling::detect(&ratios);
    let factor = scaling.as_ref().map_or(1.0, |s| s.factor);

    let mut changes = Vec::new();
    let mut paired_recipe = vec![false; recipe.len()];
    for (made_ing, pair) in made.iter().zip(&pairs) {
        match pair {
            None => changes.push(added(made_ing)),
            Some(pair) => {
                paired_recipe[pair.index] = true;
                changes.extend(pair.change(factor));
            }
        }
    }
    let removed = recipe
        .iter()
        .zip(&paired_recipe)
        .filter(|(_, paired)| !**paired)
        .map(|(ing, _)| removed(ing));
    changes.extend(removed);
    IngredientDiff { scaling, changes }
}

/// For each make ingredient, the index of its recipe partner and how it was found.
fn pair(recipe: &[Ingredient], made: &[Ingredient]) -> Vec<Option<(usize, MatchedBy)>> {
    let by_id: HashMap<&str, usize> = recipe
        .iter()
        .enumerate()
        .map(|(i, ing)| (ing.ingredient_id.as_str(), i))
        .collect();
    let mut taken = vec![false; recipe.len()];
    let mut partners: Vec<Option<(usize, MatchedBy)>> = made
        .iter()
        .map(|m| {
            let i = *by_id.get(m.ingredient_id.as_str())?;
            taken[i] = true;
            Some((i, MatchedBy::Id))
        })
        .collect();

    // Equal names pair in order, so duplicates ("salt" for the dough and for the topping)
    // keep their relative order.
    let mut by_name: HashMap<String, VecDeque<usize>> = HashMap::new();
    for (i, ing) in recipe.iter().enumerate().filter(|(i, _)| !taken[*i]) {
        by_name
            .entry(normalise_name(&ing.ingredient_name))
            .or_default()
            .push_back(i);
    }
    for (m, partner) in made.iter().zip(partners.iter_mut()) {
        if partner.is_none() {
            *partner = by_name
                .get_mut(&normalise_name(&m.ingredient_name))
                .and_then(VecDeque::pop_front)
                .map(|i| (i, MatchedBy::Name));
        }
    }
    partners
}

impl Pair<'_> {
    /// make amount / recipe amount in base units, when both are comparable and non-zero.
    fn base_ratio(&self) -> Option<f64> {
        let bo = self.original_unit.to_base(self.original.quantity);
        let bm = self.made_unit.to_base(self.made.quantity);
        (self.original_unit.comparable(self.made_unit) && bo > 0.0 && bm > 0.0).then(|| bm / bo)
    }

    /// The change for the pair, or None when the make's ingredient is the recipe's (scaled)
    /// exactly.
    fn change(&self, factor: f64) -> Option<IngredientChange> {
        let (o, m) = (self.original, self.made);
        let quantity = self.quantity_change(factor);
        let identical = o.ingredient_id == m.ingredient_id
            && o.ingredient_name == m.ingredient_name
            && quantity == QuantityChange::Unchanged;
        if identical {
            return None;
        }
        let substituted = self.matched_by == MatchedBy::Id
            && normalise_name(&o.ingredient_name) != normalise_name(&m.ingredient_name);
        Some(IngredientChange {
            kind: IngredientChangeKind::Modified,
            original: Some(o.clone()),
            made: Some(m.clone()),
            matched_by: Some(self.matched_by),
            substituted,
            quantity,
        })
    }

    /// How the make's amount relates to the recipe's amount times `factor`.
    ///
    /// When the recipe asked for none (expected 0) the ratio is undefined; it is reported as
    /// 0.0, so a consumer must look at `expected` before reading the ratio.
    fn quantity_change(&self, factor: f64) -> QuantityChange {
        let (o, m) = (self.original, self.made);
        let (uo, um) = (self.original_unit, self.made_unit);
        if !uo.comparable(um) {
            return QuantityChange::UnitChanged {
                from_unit: o.measurement.clone(),
                to_unit: m.measurement.clone(),
            };
        }
        let expected = o.quantity * factor;
        // Same unit: keep the cook's number as written instead of a round trip through ml.
        let actual = if uo.factor == um.factor {
            m.quantity
        } else {
            um.to_base(m.quantity) / uo.factor
        };
        if approx_eq(actual, expected) {
            return if o.measurement == m.measurement {
                QuantityChange::Unchanged
            } else {
                QuantityChange::Equivalent
            };
        }
        let ratio = if expected > 0.0 {
            actual / expected
        } else {
            0.0
        };
        QuantityChange::Changed {
            expected,
            actual,
            unit: o.measurement.clone(),
            ratio,
        }
    }
}

fn added(made: &Ingredient) -> IngredientChange {
    IngredientChange {
        kind: IngredientChangeKind::Added,
        original: None,
        made: Some(made.clone()),
        matched_by: None,
        substituted: false,
        quantity: QuantityChange::NotApplicable,
    }
}

fn removed(original: &Ingredient) -> IngredientChange {
    IngredientChange {
        kind: IngredientChangeKind::Removed,
        original: Some(original.clone()),
        made: None,
        matched_by: None,
        substituted: false,
        quantity: QuantityChange::NotApplicable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ing(id: &str, quantity: f64, measurement: &str, name: &str) -> Ingredient {
        Ingredient {
            ingredient_id: id.into(),
            quantity,
            measurement: measurement.into(),
            ingredient_name: name.into(),
        }
    }

    fn pancakes() -> Vec<Ingredient> {
        vec![
            ing("1", 2.0, "cup", "flour"),
            ing("2", 2.0, "", "eggs"),
            ing("3", 100.0, "g", "sugar"),
            ing("4", 50.0, "g", "butter"),
            ing("5", 1.0, "pinch", "salt"),
        ]
    }

    #[test]
    fn identical_ingredients_have_no_changes() {
        let d = compare(&pancakes(), &pancakes());
        assert_eq!(
            d,
            IngredientDiff {
                scaling: None,
                changes: vec![]
            }
        );
    }

    #[test]
    fn an_equivalent_amount_in_another_unit_is_not_a_quantity_change() {
        let mut made = pancakes();
        made[0] = ing("1", 473.176, "ml", "flour");
        made[3] = ing("4", 0.05, "kg", "butter");
        let d = compare(&pancakes(), &made);
        assert_eq!(d.changes.len(), 2);
        assert!(
            d.changes
                .iter()
                .all(|c| c.quantity == QuantityChange::Equivalent && !c.substituted)
        );
    }

    #[test]
    fn tablespoon_spellings_are_equivalent() {
        let recipe = vec![ing("1", 2.0, "tbsp", "oil")];
        let made = vec![ing("1", 2.0, "TBS", "oil")];
        let d = compare(&recipe, &made);
        assert_eq!(d.changes[0].quantity, QuantityChange::Equivalent);
        let made = vec![ing("1", 6.0, "t", "oil")];
        assert_eq!(
            compare(&recipe, &made).changes[0].quantity,
            QuantityChange::Equivalent
        );
    }

    #[test]
    fn incomparable_units_are_a_unit_change() {
        let mut made = pancakes();
        made[0] = ing("1", 250.0, "g", "flour");
        made[4] = ing("5", 0.25, "tsp", "salt");
        let d = compare(&pancakes(), &made);
        let units: Vec<_> = d.changes.iter().map(|c| c.quantity.clone()).collect();
        assert_eq!(
            units,
            [
                QuantityChange::UnitChanged {
                    from_unit: "cup".into(),
                    to_unit: "g".into()
                },
                QuantityChange::UnitChanged {
                    from_unit: "pinch".into(),
                    to_unit: "tsp".into()
                },
            ]
        );
    }

    #[test]
    fn same_id_with_another_name_is_a_substitution() {
        let mut made = pancakes();
        made[3] = ing("4", 50.0, "g", "margarine");
        let d = compare(&pancakes(), &made);
        assert_eq!(d.changes.len(), 1);
        let c = &d.changes[0];
        assert!(c.substituted);
        assert_eq!(c.matched_by, Some(MatchedBy::Id));
        assert_eq!(c.quantity, QuantityChange::Unchanged);
    }

    #[test]
    fn respelling_is_listed_but_not_a_substitution() {
        let mut made = pancakes();
        made[1] = ing("2", 2.0, "", "Egg");
        let d = compare(&pancakes(), &made);
        assert_eq!(d.changes.len(), 1);
        assert!(!d.changes[0].substituted);
        assert_eq!(d.changes[0].quantity, QuantityChange::Unchanged);
    }

    #[test]
    fn renumbered_ingredients_pair_by_plural_and_case_insensitive_name() {
        let recipe = vec![ing("1", 3.0, "", "Tomatoes"), ing("2", 1.0, "", "onion")];
        let made = vec![ing("a", 3.0, "", "tomato"), ing("b", 1.0, "", "ONIONS")];
        let d = compare(&recipe, &made);
        assert_eq!(d.changes.len(), 2);
        for c in &d.changes {
            assert_eq!(c.kind, IngredientChangeKind::Modified);
            assert_eq!(c.matched_by, Some(MatchedBy::Name));
            assert!(!c.substituted);
            assert_eq!(c.quantity, QuantityChange::Unchanged);
        }
    }

    #[test]
    fn unpaired_ingredients_are_added_and_removed_in_order() {
        let mut made = pancakes();
        made.remove(4);
        made.insert(0, ing("9", 1.0, "tsp", "vanilla"));
        let d = compare(&pancakes(), &made);
        let kinds: Vec<_> = d.changes.iter().map(|c| c.kind).collect();
        assert_eq!(
            kinds,
            [IngredientChangeKind::Added, IngredientChangeKind::Removed]
        );
        assert_eq!(
            d.changes[1]
                .original
                .as_ref()
                .map(|i| i.ingredient_id.as_str()),
            Some("5")
        );
    }

    #[test]
    fn scaling_with_one_deviation_reports_only_that_deviation() {
        let recipe = pancakes();
        let mut made: Vec<_> = recipe
            .iter()
            .map(|i| Ingredient {
                quantity: i.quantity * 2.0,
                ..i.clone()
            })
            .collect();
        made[2].quantity = 300.0; // sugar: 1.5 × the doubled 100 g
        let d = compare(&recipe, &made);
        let s = d.scaling.expect("scaled");
        assert_eq!(s.factor, 2.0);
        assert_eq!((s.ingredients_scaled, s.ingredients_compared), (4, 5));
        assert_eq!(d.changes.len(), 1);
        assert_eq!(
            d.changes[0].quantity,
            QuantityChange::Changed {
                expected: 200.0,
                actual: 300.0,
                unit: "g".into(),
                ratio: 1.5
            }
        );
    }

    #[test]
    fn changed_amounts_are_expressed_in_the_recipes_unit() {
        let recipe = vec![ing("1", 1.0, "cup", "milk")];
        let made = vec![ing("1", 1.0, "pint", "milk")];
        let QuantityChange::Changed {
            expected,
            actual,
            unit,
            ratio,
        } = compare(&recipe, &made).changes[0].quantity.clone()
        else {
            panic!("expected a quantity change");
        };
        assert_eq!((expected, unit.as_str()), (1.0, "cup"));
        assert!(approx_eq(actual, 2.0) && approx_eq(ratio, 2.0));
    }

    #[test]
    fn zero_amounts_give_a_finite_ratio() {
        let recipe = vec![ing("1", 0.0, "g", "salt")];
        let made = vec![ing("1", 5.0, "g", "salt")];
        let d = compare(&recipe, &made);
        assert_eq!(
            d.changes[0].quantity,
            QuantityChange::Changed {
                expected: 0.0,
                actual: 5.0,
                unit: "g".into(),
                ratio: 0.0
            }
        );
        assert!(compare(&recipe, &recipe).changes.is_empty());
    }
}
