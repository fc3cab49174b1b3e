//! Conversions between a recipe document of the model (`recipe-model`) and its wire message.
//! The two have the same fields; both the comparison service and the sender need them.

use crate::recipe::v1 as pb;
use recipe_model as m;

pub fn recipe_from_pb(r: pb::Recipe) -> m::Recipe {
    m::Recipe {
        recipe_id: r.recipe_id,
        recipe_name: r.recipe_name,
        rating: r.rating,
        ingredients: r.ingredients.into_iter().map(ingredient_from_pb).collect(),
        steps: r
            .steps
            .into_iter()
            .map(|s| m::Step {
                step_id: s.step_id,
                step_text: s.step_text,
            })
            .collect(),
    }
}

fn ingredient_from_pb(i: pb::Ingredient) -> m::Ingredient {
    m::Ingredient {
        ingredient_id: i.ingredient_id,
        quantity: i.quantity,
        measurement: i.measurement,
        ingredient_name: i.ingredient_name,
    }
}

pub fn recipe_to_pb(r: &m::Recipe) -> pb::Recipe {
    pb::Recipe {
        recipe_id: r.recipe_id.clone(),
        recipe_name: r.recipe_name.clone(),
        rating: r.rating,
        ingredients: r.ingredients.iter().map(ingredient_to_pb).collect(),
        steps: r.steps.iter().map(step_to_pb).collect(),
    }
}

pub fn ingredient_to_pb(i: &m::Ingredient) -> pb::Ingredient {
    pb::Ingredient {
        ingredient_id: i.ingredient_id.clone(),
        quantity: i.quantity,
        measurement: i.measurement.clone(),
        ingredient_name: i.ingredient_name.clone(),
    }
}

pub fn step_to_pb(s: &m::Step) -> pb::Step {
    pb::Step {
        step_id: s.step_id.clone(),
        step_text: s.step_text.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipes_round_trip_through_the_wire_type() {
        let r = m::Recipe {
            recipe_id: "r1".into(),
            recipe_name: "Soup".into(),
            rating: Some(4.5),
            ingredients: vec![m::Ingredient {
                ingredient_id: "1".into(),
                quantity: 2.0,
                measurement: "cup".into(),
                ingredient_name: "water".into(),
            }],
            steps: vec![m::Step {
                step_id: "1".into(),
                step_text: "Boil.".into(),
            }],
        };
        assert_eq!(recipe_from_pb(recipe_to_pb(&r)), r);
    }
}
