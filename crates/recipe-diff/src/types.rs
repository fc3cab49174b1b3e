//! The structured result of comparing a make with its recipe.
//!
//! Designed so that a dashboard can render it directly and so that applying it to the
//! original recipe rebuilds the make (see `apply`): every ingredient or step that is not
//! listed is unchanged (ingredient quantities multiplied by the scaling factor, if any).

use recipe_model::{Ingredient, Step};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct RecipeDiff {
    pub name: Option<TextChange>,
    pub rating: Option<RatingChange>,
    /// Present when the common ingredients (most of them, at least two) were all multiplied by
    /// one factor other than 1. Quantity changes below are then deviations from the scaled amount.
    pub scaling: Option<Scaling>,
    /// Ingredients added, removed or modified, in the make's order, then removed ones in the
    /// recipe's order.
    pub ingredients: Vec<IngredientChange>,
    /// Steps inserted, deleted, modified or moved.
    pub steps: Vec<StepChange>,
    /// One line a person can read, e.g. "scaled x2; butter substituted by margarine; step 3 modified".
    pub summary: String,
    /// 1.0 for identical documents, towards 0.0 for unrelated ones.
    pub similarity: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextChange {
    pub from: String,
    pub to: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RatingChange {
    pub from: Option<f64>,
    pub to: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scaling {
    /// make amount / recipe amount, in common units.
    pub factor: f64,
    /// How many common ingredients followed the factor exactly.
    pub ingredients_scaled: u32,
    /// How many common ingredients had comparable amounts at all.
    pub ingredients_compared: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum IngredientChangeKind {
    Added,
    Removed,
    /// Present in both; see the flags and `quantity` for what changed.
    Modified,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MatchedBy {
    Id,
    Name,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IngredientChange {
    pub kind: IngredientChangeKind,
    /// The recipe's ingredient (absent when added).
    pub original: Option<Ingredient>,
    /// The make's ingredient (absent when removed).
    pub made: Option<Ingredient>,
    /// How a modified ingredient was paired with the recipe's; None for added/removed.
    pub matched_by: Option<MatchedBy>,
    /// Same ingredientId, a different ingredient (normalised names differ).
    pub substituted: bool,
    pub quantity: QuantityChange,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum QuantityChange {
    /// Same amount as the recipe's (times the scaling factor); any listed change is cosmetic
    /// (name spelling, id) or a substitution.
    Unchanged,
    /// Same amount written in another, convertible unit (1 cup -> 236.6 ml).
    Equivalent,
    /// A different amount. `expected` is what the recipe (scaled) asks for and `actual` what the
    /// make used, both in the recipe's unit; `ratio` = actual / expected, or 0.0 when expected
    /// is 0 (the recipe asked for none, so no finite ratio exists).
    Changed {
        expected: f64,
        actual: f64,
        unit: String,
        ratio: f64,
    },
    /// Units that do not convert into each other (cup -> g, pinch -> tsp).
    UnitChanged { from_unit: String, to_unit: String },
    /// Not applicable (added or removed ingredient).
    NotApplicable,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StepChangeKind {
    Inserted,
    Deleted,
    /// Same place in the order, text changed.
    Modified,
    /// Out of its original order; `text_changed` says whether it was also edited.
    Moved,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepChange {
    pub kind: StepChangeKind,
    /// 0-based position in the recipe (absent when inserted).
    pub original_index: Option<u32>,
    /// 0-based position in the make (absent when deleted).
    pub made_index: Option<u32>,
    pub original: Option<Step>,
    pub made: Option<Step>,
    pub text_changed: bool,
    /// Word-level edit script from the original text to the made text (empty unless text_changed).
    pub words: Vec<WordEdit>,
    /// Word similarity of the two texts, 0..=1 (1 for inserted/deleted is meaningless: 0).
    pub similarity: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WordOp {
    Equal,
    Insert,
    Delete,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WordEdit {
    pub op: WordOp,
    pub text: String,
}
