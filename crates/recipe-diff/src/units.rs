//! Units of measurement: what a measurement string such as `Tbsp`, `cups` or `g` means.
//!
//! Quantities are compared in a base unit per dimension (ml for volume, g for mass, 1 for a
//! count), so that "1 cup" and "236.588 ml" are the same amount. Units this module does not know
//! (pinch, clove, handful, ...) are opaque: comparable only with the same unit, by its
//! normalised spelling.

use crate::names::normalise_name;

/// US customary cup in millilitres; the other US volume units derive from it so that
/// conversions between them (3 tsp = 1 tbsp, 16 tbsp = 1 cup) are exact up to rounding.
const CUP_ML: f64 = 236.588;
const TBSP_ML: f64 = CUP_ML / 16.0;
const TSP_ML: f64 = CUP_ML / 48.0;
const FL_OZ_ML: f64 = CUP_ML / 8.0;
const PINT_ML: f64 = CUP_ML * 2.0;
const QUART_ML: f64 = CUP_ML * 4.0;
const OUNCE_G: f64 = 28.3495;
const POUND_G: f64 = 453.592;

/// What kind of amount a unit measures. Amounts convert into each other only within one
/// dimension; opaque units form one dimension per normalised spelling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dimension {
    Volume,
    Mass,
    Count,
    Opaque(String),
}

/// A parsed unit: its dimension and how many base units (ml, g, items) one of it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Unit {
    pub dimension: Dimension,
    pub factor: f64,
}

impl Unit {
    fn new(dimension: Dimension, factor: f64) -> Self {
        Self { dimension, factor }
    }

    /// Whether amounts in the two units can be converted into each other.
    pub fn comparable(&self, other: &Unit) -> bool {
        self.dimension == other.dimension
    }

    /// The amount `quantity` of this unit expressed in the dimension's base unit.
    pub fn to_base(&self, quantity: f64) -> f64 {
        quantity * self.factor
    }
}

/// Parses a measurement as a cook wrote it. Never fails: unknown units are opaque.
pub fn parse_unit(measurement: &str) -> Unit {
    let cleaned = clean(measurement);
    // A lone capital T is the cookbook abbreviation for tablespoon, a lowercase t for teaspoon;
    // this is the only case-sensitive rule.
    match cleaned.as_str() {
        "T" => return Unit::new(Dimension::Volume, TBSP_ML),
        "t" => return Unit::new(Dimension::Volume, TSP_ML),
        _ => {}
    }
    let lower = cleaned.to_lowercase();
    known_unit(&lower).unwrap_or_else(|| Unit::new(Dimension::Opaque(normalise_name(&lower)), 1.0))
}

/// Trims, drops abbreviation dots ("tbsp.", "fl. oz.") and folds runs of whitespace.
fn clean(measurement: &str) -> String {
    measurement
        .split(|c: char| c.is_whitespace() || c == '.')
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn known_unit(lower: &str) -> Option<Unit> {
    use Dimension::{Count, Mass, Volume};
    let unit = match lower {
        "" | "whole" | "piece" | "pieces" | "each" | "pc" | "pcs" => Unit::new(Count, 1.0),
        "tsp" | "tsps" | "teaspoon" | "teaspoons" => Unit::new(Volume, TSP_ML),
        "tbsp" | "tbsps" | "tbs" | "tbl" | "tbls" | "tablespoon" | "tablespoons" => {
            Unit::new(Volume, TBSP_ML)
        }
        "cup" | "cups" => Unit::new(Volume, CUP_ML),
        "ml" | "mls" | "millilitre" | "millilitres" | "milliliter" | "milliliters" => {
            Unit::new(Volume, 1.0)
        }
        "l" | "litre" | "litres" | "liter" | "liters" => Unit::new(Volume, 1000.0),
        "fl oz" | "floz" | "fluid ounce" | "fluid ounces" => Unit::new(Volume, FL_OZ_ML),
        "pint" | "pints" | "pt" => Unit::new(Volume, PINT_ML),
        "quart" | "quarts" | "qt" => Unit::new(Volume, QUART_ML),
        "g" | "gram" | "grams" | "gramme" | "grammes" => Unit::new(Mass, 1.0),
        "kg" | "kgs" | "kilogram" | "kilograms" => Unit::new(Mass, 1000.0),
        "mg" | "milligram" | "milligrams" => Unit::new(Mass, 0.001),
        "oz" | "ounce" | "ounces" => Unit::new(Mass, OUNCE_G),
        "lb" | "lbs" | "pound" | "pounds" => Unit::new(Mass, POUND_G),
        _ => return None,
    };
    Some(unit)
}

/// Equality of two amounts with a relative tolerance of 1e-9, so that conversions through
/// base units and float rounding of scaled amounts do not count as changes.
pub fn approx_eq(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ml(quantity: f64, unit: &str) -> f64 {
        let u = parse_unit(unit);
        assert_eq!(u.dimension, Dimension::Volume, "{unit} is a volume");
        u.to_base(quantity)
    }

    #[test]
    fn tablespoon_spellings_are_all_the_same_unit() {
        for spelling in [
            "tbsp",
            "TBS",
            "Tbsp",
            "T",
            "tablespoon",
            "Tablespoons",
            " tbsp. ",
        ] {
            assert!(approx_eq(ml(1.0, spelling), 14.78675), "{spelling}");
        }
    }

    #[test]
    fn capital_t_is_tablespoon_and_small_t_is_teaspoon() {
        assert!(approx_eq(ml(1.0, "T"), ml(3.0, "t")));
        assert!(approx_eq(ml(1.0, "t"), ml(1.0, "tsp")));
        assert!(!approx_eq(ml(1.0, "T"), ml(1.0, "t")));
    }

    #[test]
    fn volume_conversions_agree() {
        assert!(approx_eq(ml(1.0, "cup"), ml(236.588, "ml")));
        assert!(approx_eq(ml(1.0, "cups"), ml(16.0, "tbsp")));
        assert!(approx_eq(ml(2.0, "cup"), ml(1.0, "pint")));
        assert!(approx_eq(ml(1.0, "quart"), ml(2.0, "pint")));
        assert!(approx_eq(ml(1.0, "fl oz"), ml(29.5735, "millilitres")));
        assert!(approx_eq(ml(1.0, "Fluid Ounces"), ml(2.0, "Tbsp")));
        assert!(approx_eq(ml(1.5, "L"), ml(1500.0, "milliliter")));
        assert!(approx_eq(ml(1.0, "litre"), ml(1.0, "liters")));
    }

    #[test]
    fn mass_conversions_agree() {
        let g = |q: f64, u: &str| parse_unit(u).to_base(q);
        assert!(approx_eq(g(1.0, "kg"), g(1000.0, "g")));
        assert!(approx_eq(g(1.0, "lb"), g(453.592, "grams")));
        assert!(approx_eq(g(2.0, "lbs"), g(1.0, "pound") * 2.0));
        assert!(approx_eq(g(1.0, "oz"), g(28.3495, "gram")));
        assert!(approx_eq(g(1.0, "Ounces"), g(28_349.5, "mg")));
    }

    #[test]
    fn counts_and_opaque_units() {
        assert_eq!(parse_unit("").dimension, Dimension::Count);
        assert_eq!(parse_unit("Whole").dimension, Dimension::Count);
        assert_eq!(parse_unit("pieces").dimension, Dimension::Count);
        assert!(parse_unit("pinch").comparable(&parse_unit("Pinches")));
        assert!(parse_unit("clove").comparable(&parse_unit("cloves.")));
        assert!(!parse_unit("pinch").comparable(&parse_unit("handful")));
        assert!(!parse_unit("pinch").comparable(&parse_unit("tsp")));
        assert!(!parse_unit("cup").comparable(&parse_unit("g")));
        assert!(!parse_unit("").comparable(&parse_unit("g")));
    }

    #[test]
    fn approx_eq_is_relative_and_handles_zero() {
        assert!(approx_eq(0.0, 0.0));
        assert!(!approx_eq(0.0, 1e-12));
        assert!(approx_eq(1e6, 1e6 + 1e-4));
        assert!(!approx_eq(1.0, 1.0 + 1e-6));
    }
}
