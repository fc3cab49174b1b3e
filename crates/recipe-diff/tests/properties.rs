//! Property tests of the diff engine: a recipe compared with itself has no changes, applying the
//! diff of a make to its recipe rebuilds the make, and exact rescaling is reported exactly.

use proptest::prelude::*;
use recipe_diff::{QuantityChange, RecipeDiff, apply, diff};
use recipe_model::{Ingredient, Recipe, Step};
use std::collections::HashMap;

const NAMES: [&str; 16] = [
    "flour",
    "sugar",
    "butter",
    "eggs",
    "milk",
    "salt",
    "vanilla",
    "baking powder",
    "cocoa",
    "honey",
    "oil",
    "yeast",
    "cream",
    "cinnamon",
    "oats",
    "margarine",
];
const UNITS: [&str; 13] = [
    "g", "kg", "cup", "tbsp", "tsp", "ml", "oz", "lb", "", "pinch", "clove", "T", "t",
];
const WORDS: [&str; 24] = [
    "mix",
    "the",
    "flour",
    "and",
    "sugar",
    "bake",
    "at",
    "180C",
    "for",
    "20",
    "minutes",
    "stir",
    "gently",
    "until",
    "smooth",
    "add",
    "eggs",
    "fold",
    "in",
    "chocolate",
    "chill",
    "serve",
    "warm",
    "oven",
];
const FACTORS: [f64; 5] = [0.25, 0.5, 1.5, 2.0, 3.0];

fn quantity() -> impl Strategy<Value = f64> {
    prop_oneof![1 => Just(0.0), 9 => (1u32..=40).prop_map(|q| f64::from(q) * 0.25)]
}

fn text() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(prop::sample::select(&WORDS[..]), 2..9),
        any::<bool>(),
    )
        .prop_map(|(words, full_stop)| words.join(" ") + if full_stop { "." } else { "" })
}

fn ingredient(id: String) -> impl Strategy<Value = Ingredient> {
    (
        quantity(),
        prop::sample::select(&UNITS[..]),
        prop::sample::select(&NAMES[..]),
    )
        .prop_map(move |(quantity, unit, name)| Ingredient {
            ingredient_id: id.clone(),
            quantity,
            measurement: unit.to_string(),
            ingredient_name: name.to_string(),
        })
}

fn recipe() -> impl Strategy<Value = Recipe> {
    let ingredients = (0usize..12).prop_flat_map(|n| {
        (0..n)
            .map(|k| ingredient(format!("i{k}")))
            .collect::<Vec<_>>()
    });
    let steps = prop::collection::vec(text(), 0..12).prop_map(|texts| {
        texts
            .into_iter()
            .enumerate()
            .map(|(k, step_text)| Step {
                step_id: format!("s{k}"),
                step_text,
            })
            .collect::<Vec<_>>()
    });
    let rating = prop::option::of((0u32..=10).prop_map(|r| f64::from(r) / 2.0));
    (ingredients, steps, rating).prop_map(|(ingredients, steps, rating)| Recipe {
        recipe_id: "r1".into(),
        recipe_name: "Cake".into(),
        rating,
        ingredients,
        steps,
    })
}

/// One random edit a cook might make. Positions are taken modulo the current length.
#[derive(Debug, Clone)]
enum Edit {
    AddIngredient(Ingredient),
    RemoveIngredient(usize),
    Substitute(usize, &'static str),
    Requantity(usize, f64),
    Rescale(f64),
    ConvertUnit(usize),
    RenumberIngredient(usize),
    Respell(usize),
    InsertStep(usize, String),
    DeleteStep(usize),
    ModifyStep(usize, usize, &'static str),
    MoveStep(usize, usize),
    RenumberSteps,
    Rename,
    Rate(Option<f64>),
}

fn edit() -> impl Strategy<Value = Edit> {
    let pos = || 0usize..64;
    prop_oneof![
        ingredient("new".into()).prop_map(Edit::AddIngredient),
        pos().prop_map(Edit::RemoveIngredient),
        (pos(), prop::sample::select(&NAMES[..])).prop_map(|(p, n)| Edit::Substitute(p, n)),
        (pos(), quantity()).prop_map(|(p, q)| Edit::Requantity(p, q)),
        prop::sample::select(&FACTORS[..]).prop_map(Edit::Rescale),
        pos().prop_map(Edit::ConvertUnit),
        pos().prop_map(Edit::RenumberIngredient),
        pos().prop_map(Edit::Respell),
        (pos(), text()).prop_map(|(p, t)| Edit::InsertStep(p, t)),
        pos().prop_map(Edit::DeleteStep),
        (pos(), pos(), prop::sample::select(&WORDS[..]))
            .prop_map(|(p, w, word)| Edit::ModifyStep(p, w, word)),
        (pos(), pos()).prop_map(|(a, b)| Edit::MoveStep(a, b)),
        Just(Edit::RenumberSteps),
        Just(Edit::Rename),
        prop::option::of((0u32..=10).prop_map(|r| f64::from(r) / 2.0)).prop_map(Edit::Rate),
    ]
}

/// Applies the edits; fresh ids come from a counter so the make stays valid.
fn make_from(recipe: &Recipe, edits: &[Edit]) -> Recipe {
    let mut m = recipe.clone();
    for (n, e) in edits.iter().enumerate() {
        let fresh = format!("x{n}");
        let ni = m.ingredients.len();
        let ns = m.steps.len();
        match e.clone() {
            Edit::AddIngredient(ing) => m.ingredients.push(Ingredient {
                ingredient_id: fresh,
                ..ing
            }),
            Edit::RemoveIngredient(p) if ni > 0 => {
                m.ingredients.remove(p % ni);
            }
            Edit::Substitute(p, name) if ni > 0 => {
                m.ingredients[p % ni].ingredient_name = name.into();
            }
            Edit::Requantity(p, q) if ni > 0 => m.ingredients[p % ni].quantity = q,
            Edit::Rescale(f) => m.ingredients.iter_mut().for_each(|i| i.quantity *= f),
            Edit::ConvertUnit(p) if ni > 0 => convert(&mut m.ingredients[p % ni]),
            Edit::RenumberIngredient(p) if ni > 0 => m.ingredients[p % ni].ingredient_id = fresh,
            Edit::Respell(p) if ni > 0 => {
                let ing = &mut m.ingredients[p % ni];
                ing.ingredient_name = ing.ingredient_name.to_uppercase();
            }
            Edit::InsertStep(p, text) => m.steps.insert(
                p % (ns + 1),
                Step {
                    step_id: fresh,
                    step_text: text,
                },
            ),
            Edit::DeleteStep(p) if ns > 0 => {
                m.steps.remove(p % ns);
            }
            Edit::ModifyStep(p, w, word) if ns > 0 => {
                let step = &mut m.steps[p % ns];
                let mut words: Vec<&str> = step.step_text.split_whitespace().collect();
                let at = w % words.len().max(1);
                if let Some(slot) = words.get_mut(at) {
                    *slot = word;
                }
                step.step_text = words.join(" ");
            }
            Edit::MoveStep(a, b) if ns > 0 => {
                let step = m.steps.remove(a % ns);
                m.steps.insert(b % ns, step);
            }
            Edit::RenumberSteps => {
                for (k, s) in m.steps.iter_mut().enumerate() {
                    s.step_id = format!("{fresh}-{k}");
                }
            }
            Edit::Rename => m.recipe_name.push_str(" (mine)"),
            Edit::Rate(r) => m.rating = r,
            _ => {}
        }
    }
    m
}

/// Rewrites an amount in an equivalent unit where one is at hand.
fn convert(ing: &mut Ingredient) {
    let (unit, factor) = match ing.measurement.as_str() {
        "cup" => ("ml", 236.588),
        "tbsp" | "T" => ("tsp", 3.0),
        "g" => ("kg", 0.001),
        "kg" => ("g", 1000.0),
        "lb" => ("oz", 16.0),
        _ => return,
    };
    ing.measurement = unit.into();
    ing.quantity *= factor;
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

/// Every float in the diff is finite, so it serialises as a number (JSON, protobuf).
fn all_finite(d: &RecipeDiff) -> bool {
    let quantities = d.ingredients.iter().all(|c| match &c.quantity {
        QuantityChange::Changed {
            expected,
            actual,
            ratio,
            ..
        } => expected.is_finite() && actual.is_finite() && ratio.is_finite(),
        _ => true,
    });
    quantities
        && d.similarity.is_finite()
        && d.scaling.as_ref().is_none_or(|s| s.factor.is_finite())
        && d.steps.iter().all(|s| s.similarity.is_finite())
}

fn assert_rebuilds(made: &Recipe, rebuilt: &Recipe) -> Result<(), TestCaseError> {
    prop_assert_eq!(&rebuilt.recipe_name, &made.recipe_name);
    prop_assert_eq!(rebuilt.rating, made.rating);
    let by_id = |r: &Recipe| -> HashMap<String, Ingredient> {
        r.ingredients
            .iter()
            .map(|i| (i.ingredient_id.clone(), i.clone()))
            .collect()
    };
    let (want, got) = (by_id(made), by_id(rebuilt));
    prop_assert_eq!(rebuilt.ingredients.len(), made.ingredients.len());
    for (id, w) in &want {
        let g = got.get(id);
        prop_assert!(g.is_some(), "ingredient {} missing", id);
        let g = g.unwrap();
        prop_assert_eq!(&g.ingredient_name, &w.ingredient_name);
        prop_assert_eq!(&g.measurement, &w.measurement);
        prop_assert!(
            close(g.quantity, w.quantity),
            "{} != {}",
            g.quantity,
            w.quantity
        );
    }
    let texts =
        |r: &Recipe| -> Vec<String> { r.steps.iter().map(|s| s.step_text.clone()).collect() };
    prop_assert_eq!(texts(rebuilt), texts(made));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn a_recipe_compared_with_itself_has_no_changes(r in recipe()) {
        let d = diff(&r, &r);
        prop_assert_eq!(&d, &RecipeDiff {
            summary: "no changes".into(),
            similarity: 1.0,
            ..RecipeDiff::default()
        });
    }

    #[test]
    fn applying_the_diff_rebuilds_the_make(
        r in recipe(),
        edits in prop::collection::vec(edit(), 0..10),
    ) {
        let made = make_from(&r, &edits);
        prop_assume!(made.validate().is_ok());
        let d = diff(&r, &made);
        prop_assert!(all_finite(&d), "{:?}", d);
        prop_assert!((0.0..=1.0).contains(&d.similarity));
        assert_rebuilds(&made, &apply(&r, &d))?;
    }

    #[test]
    fn similarity_is_one_exactly_without_significant_changes(
        r in recipe(),
        edits in prop::collection::vec(edit(), 0..4),
    ) {
        let made = make_from(&r, &edits);
        prop_assume!(made.validate().is_ok());
        let d = diff(&r, &made);
        let significant = d.name.is_some()
            || d.rating.is_some()
            || d.scaling.is_some()
            || d.ingredients.iter().any(recipe_diff::ingredient_is_significant)
            || d.steps.iter().any(recipe_diff::step_is_significant);
        prop_assert_eq!(d.similarity == 1.0, !significant, "{:?}", d);
    }

    #[test]
    fn exact_rescaling_is_reported_exactly(
        r in recipe(),
        factor in prop::sample::select(&FACTORS[..]),
        converted in prop::collection::vec(0usize..64, 0..3),
    ) {
        let mut r = r;
        for ing in &mut r.ingredients {
            if ing.quantity == 0.0 {
                ing.quantity = 1.0;
            }
        }
        prop_assume!(r.ingredients.len() >= 2);
        let mut made = r.clone();
        made.ingredients.iter_mut().for_each(|i| i.quantity *= factor);
        for p in converted {
            let n = made.ingredients.len();
            convert(&mut made.ingredients[p % n]);
        }
        let d = diff(&r, &made);
        let s = d.scaling.clone();
        prop_assert!(s.is_some(), "{:?}", d);
        let s = s.unwrap();
        prop_assert_eq!(s.factor, factor);
        prop_assert_eq!(s.ingredients_scaled as usize, r.ingredients.len());
        prop_assert!(d.ingredients.iter().all(|c| c.quantity == QuantityChange::Equivalent));
        prop_assert_eq!(d.summary, format!("scaled ×{factor}"));
    }
}
