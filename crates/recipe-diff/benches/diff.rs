//! Diff cost for a typical recipe, a large one and the largest the model allows, each against a
//! realistic make (scaled, substitutions, amount and unit changes, steps edited, moved, added
//! and removed). Compare the large and largest cases to see how the cost grows.

use criterion::{Criterion, criterion_group, criterion_main};
use recipe_diff::{apply, diff};
use recipe_model::{Ingredient, Recipe, Step};
use std::hint::black_box;

/// A small deterministic generator, so every run benchmarks the same documents.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// Skewed towards small values, like word frequencies in real text.
    fn skewed(&mut self, n: usize) -> usize {
        let u = (self.next() % 1_000_000) as f64 / 1_000_000.0;
        ((u * u * u) * n as f64) as usize
    }
}

const UNITS: [&str; 8] = ["g", "cup", "tbsp", "tsp", "ml", "", "oz", "pinch"];
const SYLLABLES: [&str; 16] = [
    "ba", "ke", "mi", "xo", "stir", "fol", "d", "ch", "op", "sl", "ic", "e", "wh", "is", "k", "an",
];

fn word(n: usize) -> String {
    let mut w = String::new();
    let mut k = n + 1;
    while k > 0 {
        w.push_str(SYLLABLES[k % SYLLABLES.len()]);
        k /= SYLLABLES.len();
    }
    w
}

fn sentence(rng: &mut Lcg, vocabulary: usize) -> String {
    let len = 8 + rng.below(12);
    (0..len)
        .map(|_| word(rng.skewed(vocabulary)))
        .collect::<Vec<_>>()
        .join(" ")
        + "."
}

fn recipe(ingredients: usize, steps: usize, seed: u64) -> Recipe {
    let mut rng = Lcg(seed);
    Recipe {
        recipe_id: "bench".into(),
        recipe_name: "Benchmark bake".into(),
        rating: Some(4.0),
        ingredients: (0..ingredients)
            .map(|k| Ingredient {
                ingredient_id: k.to_string(),
                quantity: (1 + rng.below(40)) as f64 * 0.25,
                measurement: UNITS[rng.below(UNITS.len())].into(),
                ingredient_name: format!("{} {}", word(k), word(k + 7)),
            })
            .collect(),
        steps: (0..steps)
            .map(|k| Step {
                step_id: k.to_string(),
                step_text: sentence(&mut rng, 50 * steps.max(20)),
            })
            .collect(),
    }
}

/// A cook's make: doubled, about 10% of ingredients substituted or re-measured, one removed,
/// one added; about 10% of steps edited, 5% moved, a few inserted and deleted, ids renumbered.
fn make(recipe: &Recipe, seed: u64) -> Recipe {
    let mut rng = Lcg(seed);
    let mut m = recipe.clone();
    m.rating = Some(5.0);
    for (k, ing) in m.ingredients.iter_mut().enumerate() {
        ing.quantity *= 2.0;
        match k % 10 {
            3 => ing.ingredient_name = format!("vegan {}", ing.ingredient_name),
            6 => ing.quantity *= 1.5,
            8 if ing.measurement == "cup" => {
                ing.measurement = "ml".into();
                ing.quantity *= 236.588;
            }
            _ => {}
        }
    }
    m.ingredients.remove(m.ingredients.len() / 2);
    m.ingredients.push(Ingredient {
        ingredient_id: "extra".into(),
        quantity: 1.0,
        measurement: "tsp".into(),
        ingredient_name: "vanilla".into(),
    });
    let vocabulary = 50 * m.steps.len().max(20);
    for step in m.steps.iter_mut().step_by(10) {
        let mut words: Vec<String> = step.step_text.split(' ').map(str::to_string).collect();
        let at = rng.below(words.len());
        words[at] = word(rng.skewed(vocabulary));
        step.step_text = words.join(" ");
    }
    for _ in 0..(m.steps.len() / 20).max(1) {
        let from = rng.below(m.steps.len());
        let step = m.steps.remove(from);
        let to = rng.below(m.steps.len() + 1);
        m.steps.insert(to, step);
    }
    for k in 0..(m.steps.len() / 50).max(1) {
        if !m.steps.is_empty() {
            m.steps.remove(rng.below(m.steps.len()));
        }
        let at = rng.below(m.steps.len() + 1);
        m.steps.insert(
            at,
            Step {
                step_id: format!("new{k}"),
                step_text: sentence(&mut rng, vocabulary),
            },
        );
    }
    for (k, step) in m.steps.iter_mut().enumerate() {
        step.step_id = format!("m{k}");
    }
    m
}

fn bench_diff(c: &mut Criterion) {
    for (label, ingredients, steps) in [
        ("typical 20x15", 20, 15),
        ("large 300x300", 300, 300),
        ("max 1000x1000", 1000, 1000),
    ] {
        let original = recipe(ingredients, steps, 42);
        let made = make(&original, 7);
        let d = diff(&original, &made);
        let texts = |r: &Recipe| {
            r.steps
                .iter()
                .map(|s| s.step_text.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            texts(&apply(&original, &d)),
            texts(&made),
            "bench inputs must round-trip"
        );
        c.bench_function(&format!("diff {label}"), |b| {
            b.iter(|| diff(black_box(&original), black_box(&made)))
        });
    }
}

criterion_group!(benches, bench_diff);
criterion_main!(benches);
