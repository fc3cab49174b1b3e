//! Whole-recipe scaling: did the cook make double (or half, or 1.5×) the recipe?
//!
//! Given the make/recipe amount ratios of the paired ingredients, finds the one ratio most of
//! them share. Reporting it lets the diff list only the deviations from the scaled amounts
//! instead of every ingredient.

use crate::types::Scaling;
use crate::units::approx_eq;

/// Largest denominator tried when snapping a factor to a simple fraction (halves, thirds,
/// quarters, ... twelfths cover what cooks do).
const MAX_DENOMINATOR: u32 = 12;

/// Finds the scaling factor among `ratios` (make amount / recipe amount in base units, each
/// finite and > 0). It is reported when it is not 1, at least two ingredients share it and they
/// are strictly more than half of those compared.
pub fn detect(ratios: &[f64]) -> Option<Scaling> {
    let factor = snap(most_common(ratios)?);
    if approx_eq(factor, 1.0) {
        return None;
    }
    // Count against the reported factor, so "scaled" means exactly what the quantity comparison
    // later treats as unchanged.
    let scaled = ratios.iter().filter(|&&r| approx_eq(r, factor)).count();
    if scaled < 2 || scaled * 2 <= ratios.len() {
        return None;
    }
    Some(Scaling {
        factor,
        ingredients_scaled: u32::try_from(scaled).unwrap_or(u32::MAX),
        ingredients_compared: u32::try_from(ratios.len()).unwrap_or(u32::MAX),
    })
}

/// The mean of the largest group of ratios equal within the tolerance (ties: the smaller ratio).
fn most_common(ratios: &[f64]) -> Option<f64> {
    let mut sorted: Vec<f64> = ratios.iter().copied().filter(|r| r.is_finite()).collect();
    sorted.sort_by(f64::total_cmp);
    let mut best: Option<&[f64]> = None;
    let mut start = 0;
    while start < sorted.len() {
        let anchor = sorted[start];
        let len = sorted[start..]
            .iter()
            .take_while(|&&r| approx_eq(r, anchor))
            .count();
        let group = &sorted[start..start + len];
        if best.is_none_or(|b| group.len() > b.len()) {
            best = Some(group);
        }
        start += len.max(1);
    }
    best.map(|g| g.iter().sum::<f64>() / g.len() as f64)
}

/// Replaces a factor that is a simple fraction p/q up to float noise by exactly p / q, so that
/// a recipe made ×1.5 reports 1.5 and not 1.4999999999999998.
fn snap(factor: f64) -> f64 {
    for q in 1..=MAX_DENOMINATOR {
        let p = (factor * f64::from(q)).round();
        if p >= 1.0 && approx_eq(p / f64::from(q), factor) {
            return p / f64::from(q);
        }
    }
    factor
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_shared_factor_and_counts() {
        let s = detect(&[2.0, 2.0, 2.0, 1.5]).expect("scaled");
        assert_eq!(s.factor, 2.0);
        assert_eq!(s.ingredients_scaled, 3);
        assert_eq!(s.ingredients_compared, 4);
    }

    #[test]
    fn snaps_float_noise_to_simple_fractions() {
        let third = 1.0 / 3.0;
        let noisy = [third * (1.0 + 1e-12), third, third * (1.0 - 1e-12)];
        assert_eq!(detect(&noisy).expect("scaled").factor, 1.0 / 3.0);
        let s = detect(&[4.5 * 236.588 / (1.5 * 236.588), 3.0]).expect("scaled");
        assert_eq!(s.factor, 3.0);
        assert_eq!(detect(&[0.25, 0.25]).expect("scaled").factor, 0.25);
    }

    #[test]
    fn irregular_factors_are_kept_as_they_are() {
        let f = 1.234_567;
        assert_eq!(detect(&[f, f]).expect("scaled").factor, f);
    }

    #[test]
    fn needs_two_ingredients_and_a_strict_majority() {
        assert!(detect(&[2.0]).is_none());
        assert!(detect(&[2.0, 2.0, 3.0, 4.0]).is_none());
        assert!(detect(&[2.0, 2.0, 3.0]).is_some());
        assert!(detect(&[]).is_none());
    }

    #[test]
    fn factor_one_is_not_scaling() {
        assert!(detect(&[1.0, 1.0, 1.0 + 1e-12, 2.0]).is_none());
    }
}
