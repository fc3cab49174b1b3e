//! Step alignment: which make step is which recipe step, and what happened to each.
//!
//! Steps pair by equal normalised text, then by equal stepId when the texts are similar, then by
//! shared rare words through an inverted index, so the cost grows near-linearly with the number
//! of steps. The longest run of pairs kept in recipe order stays in place; other pairs moved.
//! Edited texts get a word-level edit script.

use crate::types::{StepChange, StepChangeKind, WordEdit, WordOp};
use recipe_model::Step;
use similar::{Algorithm, DiffTag, capture_diff_slices};
use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::{HashMap, VecDeque};

/// Least word similarity for two different texts to count as the same step edited.
const MIN_SIMILARITY: f64 = 0.5;
/// Words in more unpaired recipe steps than this ("the", "and", "stir") are too common to find
/// candidates with; skipping them keeps the candidate lists short.
const MAX_POSTINGS: usize = 32;
/// Candidates per make step whose similarity is computed exactly, best shared-word score first.
const MAX_CANDIDATES: usize = 8;

/// A step's words: as written (for edit scripts) and as interned normalised keys.
struct Words<'a> {
    raw: Vec<&'a str>,
    keys: Vec<u32>,
    /// `keys` sorted: the word multiset, for similarity by merging.
    bag: Vec<u32>,
}

/// Gives every distinct normalised word a small number, so comparing words is comparing ints.
/// Keys borrow from the step texts unless they had to be lower-cased.
struct Interner<'a>(HashMap<Cow<'a, str>, u32>);

impl<'a> Interner<'a> {
    fn with_capacity(words: usize) -> Self {
        Self(HashMap::with_capacity(words))
    }

    fn intern(&mut self, key: Cow<'a, str>) -> u32 {
        let next = u32::try_from(self.0.len()).unwrap_or(u32::MAX);
        *self.0.entry(key).or_insert(next)
    }

    fn words(&mut self, text: &'a str) -> Words<'a> {
        let raw: Vec<&str> = text.split_whitespace().collect();
        let keys: Vec<u32> = raw.iter().map(|w| self.intern(word_key(w))).collect();
        let mut bag = keys.clone();
        bag.sort_unstable();
        Words { raw, keys, bag }
    }
}

/// Lower-cases a word and strips surrounding punctuation ("Oven," -> "oven", "180C." ->
/// "180c"); a word of punctuation only is kept as it is so that it still counts as a word.
/// Borrows when nothing needs lower-casing, which is most words.
fn word_key(word: &str) -> Cow<'_, str> {
    let stripped = word.trim_matches(|c: char| !c.is_alphanumeric());
    let key = if stripped.is_empty() { word } else { stripped };
    if key.chars().any(char::is_uppercase) {
        Cow::Owned(key.to_lowercase())
    } else {
        Cow::Borrowed(key)
    }
}

/// Dice similarity of two word multisets: 2·|common| / (|a| + |b|), 1 when both are empty.
fn bag_similarity(a: &[u32], b: &[u32]) -> f64 {
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    let (mut i, mut j, mut common) = (0, 0, 0usize);
    while let (Some(x), Some(y)) = (a.get(i), b.get(j)) {
        match x.cmp(y) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                common += 1;
                i += 1;
                j += 1;
            }
        }
    }
    2.0 * common as f64 / (a.len() + b.len()) as f64
}

/// Aligns the make's steps with the recipe's. Steps with the same text in the same relative
/// order are not listed, whatever their ids. Changes come in make order, each deleted step just
/// before the make step that follows its place.
pub fn align(recipe: &[Step], made: &[Step]) -> Vec<StepChange> {
    // Roughly the number of distinct words (texts repeat many), to rehash rarely.
    let bytes: usize = recipe.iter().chain(made).map(|s| s.step_text.len()).sum();
    let mut interner = Interner::with_capacity(bytes / 12);
    let recipe_words: Vec<Words<'_>> = recipe
        .iter()
        .map(|s| interner.words(&s.step_text))
        .collect();
    let made_words: Vec<Words<'_>> = made.iter().map(|s| interner.words(&s.step_text)).collect();
    let sides = Sides {
        recipe,
        made,
        recipe_words: &recipe_words,
        made_words: &made_words,
    };
    let partners = sides.pair();
    sides.changes(&partners)
}

/// Both step lists with their words.
struct Sides<'s, 'a> {
    recipe: &'a [Step],
    made: &'a [Step],
    recipe_words: &'s [Words<'a>],
    made_words: &'s [Words<'a>],
}

/// Pairing state: the recipe partner of each make step, and which recipe steps are taken.
struct Pairing {
    partners: Vec<Option<usize>>,
    taken: Vec<bool>,
}

impl Pairing {
    fn link(&mut self, made: usize, recipe: usize) {
        self.partners[made] = Some(recipe);
        self.taken[recipe] = true;
    }

    fn unpaired_made(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.partners.len()).filter(|&j| self.partners[j].is_none())
    }
}

impl Sides<'_, '_> {
    /// For each make step, the index of its recipe step.
    fn pair(&self) -> Vec<Option<usize>> {
        let mut p = Pairing {
            partners: vec![None; self.made.len()],
            taken: vec![false; self.recipe.len()],
        };
        self.pair_equal_text(&mut p);
        self.pair_same_id(&mut p);
        self.pair_similar_text(&mut p);
        p.partners
    }

    /// Equal normalised texts pair in order, so repeated steps ("Stir.") keep their order.
    fn pair_equal_text(&self, p: &mut Pairing) {
        let mut by_text: HashMap<&[u32], VecDeque<usize>> = HashMap::new();
        for (i, w) in self.recipe_words.iter().enumerate() {
            by_text.entry(&w.keys).or_default().push_back(i);
        }
        for (j, w) in self.made_words.iter().enumerate() {
            if let Some(i) = by_text
                .get_mut(w.keys.as_slice())
                .and_then(VecDeque::pop_front)
            {
                p.link(j, i);
            }
        }
    }

    /// A step kept under its id and edited moderately is the same step.
    fn pair_same_id(&self, p: &mut Pairing) {
        let by_id: HashMap<&str, usize> = self
            .recipe
            .iter()
            .enumerate()
            .map(|(i, s)| (s.step_id.as_str(), i))
            .collect();
        let unpaired: Vec<usize> = p.unpaired_made().collect();
        for j in unpaired {
            let Some(&i) = by_id.get(self.made[j].step_id.as_str()) else {
                continue;
            };
            if !p.taken[i] && self.similarity(i, j) >= MIN_SIMILARITY {
                p.link(j, i);
            }
        }
    }

    /// Pairs the remaining steps by shared words, best similarity first.
    fn pair_similar_text(&self, p: &mut Pairing) {
        let index = self.word_index(&p.taken);
        let mut found: Vec<(f64, usize, usize)> = Vec::new();
        for j in p.unpaired_made() {
            for i in self.candidates(&index, j) {
                let s = self.similarity(i, j);
                if s >= MIN_SIMILARITY {
                    found.push((s, j, i));
                }
            }
        }
        // Best first; among equals the one nearest its old position, then a fixed order.
        found.sort_by(|a, b| {
            b.0.total_cmp(&a.0)
                .then_with(|| a.1.abs_diff(a.2).cmp(&b.1.abs_diff(b.2)))
                .then_with(|| (a.1, a.2).cmp(&(b.1, b.2)))
        });
        for (_, j, i) in found {
            if p.partners[j].is_none() && !p.taken[i] {
                p.link(j, i);
            }
        }
    }

    /// Word -> the untaken recipe steps containing it, in recipe order.
    fn word_index(&self, taken: &[bool]) -> HashMap<u32, Vec<usize>> {
        let mut index: HashMap<u32, Vec<usize>> = HashMap::new();
        for (i, w) in self.recipe_words.iter().enumerate() {
            if taken[i] {
                continue;
            }
            let mut distinct = w.bag.clone();
            distinct.dedup();
            for key in distinct {
                index.entry(key).or_default().push(i);
            }
        }
        index
    }

    /// The recipe steps sharing the most rare words with make step `j`, relative to length.
    fn candidates(&self, index: &HashMap<u32, Vec<usize>>, j: usize) -> Vec<usize> {
        let mut distinct = self.made_words[j].bag.clone();
        distinct.dedup();
        let mut hits: HashMap<usize, usize> = HashMap::new();
        for key in distinct {
            let Some(steps) = index.get(&key).filter(|s| s.len() <= MAX_POSTINGS) else {
                continue;
            };
            for &i in steps {
                *hits.entry(i).or_default() += 1;
            }
        }
        let made_len = self.made_words[j].bag.len();
        // Shared words per word of both texts, scaled to an integer to sort without floats.
        let mut ranked: Vec<(Reverse<usize>, usize)> = hits
            .into_iter()
            .map(|(i, h)| {
                let total = (self.recipe_words[i].bag.len() + made_len).max(1);
                (Reverse(h * 1_000_000 / total), i)
            })
            .collect();
        ranked.sort_unstable();
        ranked
            .into_iter()
            .take(MAX_CANDIDATES)
            .map(|(_, i)| i)
            .collect()
    }

    fn similarity(&self, i: usize, j: usize) -> f64 {
        bag_similarity(&self.recipe_words[i].bag, &self.made_words[j].bag)
    }

    /// The listed changes, given the pairing.
    fn changes(&self, partners: &[Option<usize>]) -> Vec<StepChange> {
        let pairs: Vec<(usize, usize)> = partners
            .iter()
            .enumerate()
            .filter_map(|(j, p)| p.map(|i| (j, i)))
            .collect();
        let in_order = longest_increasing(&pairs.iter().map(|&(_, i)| i).collect::<Vec<_>>());

        // Sort keys place each change in make order; a deleted step goes just before the
        // in-place make step that follows it in the recipe.
        let mut keyed: Vec<((usize, u8, usize), StepChange)> = Vec::new();
        let mut anchor: Vec<Option<usize>> = vec![None; self.recipe.len()];
        let mut paired = vec![false; self.recipe.len()];
        for (&(j, i), &kept) in pairs.iter().zip(&in_order) {
            paired[i] = true;
            if kept {
                anchor[i] = Some(j);
            }
            let kind = if kept {
                StepChangeKind::Modified
            } else {
                StepChangeKind::Moved
            };
            let unchanged = kept && self.recipe[i].step_text == self.made[j].step_text;
            if !unchanged {
                keyed.push(((j, 1, 0), self.paired_change(kind, i, j)));
            }
        }
        for (j, _) in partners.iter().enumerate().filter(|(_, p)| p.is_none()) {
            keyed.push(((j, 1, 0), self.inserted(j)));
        }
        let mut next_anchor = self.made.len();
        for i in (0..self.recipe.len()).rev() {
            if !paired[i] {
                keyed.push(((next_anchor, 0, i), self.deleted(i)));
            }
            if let Some(j) = anchor[i] {
                next_anchor = j;
            }
        }
        keyed.sort_by_key(|(key, _)| *key);
        keyed.into_iter().map(|(_, change)| change).collect()
    }

    fn paired_change(&self, kind: StepChangeKind, i: usize, j: usize) -> StepChange {
        let (original, made) = (&self.recipe[i], &self.made[j]);
        let text_changed = original.step_text != made.step_text;
        let (words, similarity) = if text_changed {
            word_edits(&self.recipe_words[i], &self.made_words[j])
        } else {
            (Vec::new(), 1.0)
        };
        StepChange {
            kind,
            original_index: Some(index_u32(i)),
            made_index: Some(index_u32(j)),
            original: Some(original.clone()),
            made: Some(made.clone()),
            text_changed,
            words,
            similarity,
        }
    }

    fn inserted(&self, j: usize) -> StepChange {
        StepChange {
            kind: StepChangeKind::Inserted,
            original_index: None,
            made_index: Some(index_u32(j)),
            original: None,
            made: Some(self.made[j].clone()),
            text_changed: false,
            words: Vec::new(),
            similarity: 0.0,
        }
    }

    fn deleted(&self, i: usize) -> StepChange {
        StepChange {
            kind: StepChangeKind::Deleted,
            original_index: Some(index_u32(i)),
            made_index: None,
            original: Some(self.recipe[i].clone()),
            made: None,
            text_changed: false,
            words: Vec::new(),
            similarity: 0.0,
        }
    }
}

/// Step counts are bounded by validation (1000), far below u32::MAX.
fn index_u32(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(u32::MAX)
}

/// Marks a longest strictly increasing subsequence of `seq` (patience sorting, O(n log n)).
fn longest_increasing(seq: &[usize]) -> Vec<bool> {
    // tails[k]: position in seq of the smallest tail of an increasing run of length k + 1.
    let mut tails: Vec<usize> = Vec::new();
    let mut prev: Vec<Option<usize>> = vec![None; seq.len()];
    for (k, &value) in seq.iter().enumerate() {
        let len = tails.partition_point(|&t| seq[t] < value);
        prev[k] = len.checked_sub(1).map(|l| tails[l]);
        if len == tails.len() {
            tails.push(k);
        } else {
            tails[len] = k;
        }
    }
    let mut marked = vec![false; seq.len()];
    let mut at = tails.last().copied();
    while let Some(k) = at {
        marked[k] = true;
        at = prev[k];
    }
    marked
}

/// Word-level edit script from `a` to `b` on normalised words, shown with the words as
/// written (the make's spelling for equal words), consecutive words of one op grouped. Also
/// returns the order-aware similarity 2·|equal words| / (|a| + |b|).
fn word_edits(a: &Words<'_>, b: &Words<'_>) -> (Vec<WordEdit>, f64) {
    let mut edits: Vec<WordEdit> = Vec::new();
    let mut equal = 0usize;
    for op in capture_diff_slices(Algorithm::Myers, &a.keys, &b.keys) {
        let (tag, old, new) = op.as_tag_tuple();
        let old_words = a.raw.get(old).unwrap_or_default();
        let new_words = b.raw.get(new).unwrap_or_default();
        match tag {
            DiffTag::Equal => {
                equal += new_words.len();
                push_words(&mut edits, WordOp::Equal, new_words);
            }
            DiffTag::Delete => push_words(&mut edits, WordOp::Delete, old_words),
            DiffTag::Insert => push_words(&mut edits, WordOp::Insert, new_words),
            DiffTag::Replace => {
                push_words(&mut edits, WordOp::Delete, old_words);
                push_words(&mut edits, WordOp::Insert, new_words);
            }
        }
    }
    let total = a.keys.len() + b.keys.len();
    let similarity = if total == 0 {
        1.0
    } else {
        2.0 * equal as f64 / total as f64
    };
    (edits, similarity)
}

fn push_words(edits: &mut Vec<WordEdit>, op: WordOp, words: &[&str]) {
    if words.is_empty() {
        return;
    }
    let text = words.join(" ");
    match edits.last_mut() {
        Some(last) if last.op == op => {
            last.text.push(' ');
            last.text.push_str(&text);
        }
        _ => edits.push(WordEdit { op, text }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(texts: &[&str]) -> Vec<Step> {
        texts
            .iter()
            .enumerate()
            .map(|(i, t)| Step {
                step_id: (i + 1).to_string(),
                step_text: (*t).to_string(),
            })
            .collect()
    }

    fn kinds(changes: &[StepChange]) -> Vec<(StepChangeKind, Option<u32>, Option<u32>)> {
        changes
            .iter()
            .map(|c| (c.kind, c.original_index, c.made_index))
            .collect()
    }

    const RECIPE: [&str; 4] = [
        "Preheat the oven.",
        "Cream the butter and sugar until fluffy.",
        "Fold in the flour gently.",
        "Bake at 180C for 20 minutes",
    ];

    #[test]
    fn oven_temperature_change_is_one_modified_step_with_word_edits() {
        let mut made = RECIPE;
        made[3] = "Bake at 200C for 20 minutes";
        let changes = align(&steps(&RECIPE), &steps(&made));
        assert_eq!(
            kinds(&changes),
            [(StepChangeKind::Modified, Some(3), Some(3))]
        );
        let edit = |op, text: &str| WordEdit {
            op,
            text: text.into(),
        };
        assert_eq!(
            changes[0].words,
            [
                edit(WordOp::Equal, "Bake at"),
                edit(WordOp::Delete, "180C"),
                edit(WordOp::Insert, "200C"),
                edit(WordOp::Equal, "for 20 minutes"),
            ]
        );
        assert!(changes[0].text_changed);
        assert!((changes[0].similarity - 10.0 / 12.0).abs() < 1e-12);
    }

    #[test]
    fn renumbered_steps_are_not_a_change() {
        let mut made = steps(&RECIPE);
        for (k, s) in made.iter_mut().enumerate() {
            s.step_id = format!("s{}", 10 * k);
        }
        assert!(align(&steps(&RECIPE), &made).is_empty());
    }

    #[test]
    fn a_step_moved_to_the_end_is_moved() {
        let made = [RECIPE[1], RECIPE[2], RECIPE[3], RECIPE[0]];
        let changes = align(&steps(&RECIPE), &steps(&made));
        assert_eq!(kinds(&changes), [(StepChangeKind::Moved, Some(0), Some(3))]);
        assert!(!changes[0].text_changed);
    }

    #[test]
    fn a_moved_and_edited_step_is_moved_with_text_changed() {
        let made = [RECIPE[1], RECIPE[2], "Preheat the oven well.", RECIPE[3]];
        let changes = align(&steps(&RECIPE), &steps(&made));
        assert_eq!(kinds(&changes), [(StepChangeKind::Moved, Some(0), Some(2))]);
        assert!(changes[0].text_changed);
        let words: Vec<_> = changes[0]
            .words
            .iter()
            .map(|w| (w.op, w.text.as_str()))
            .collect();
        assert_eq!(
            words,
            [
                (WordOp::Equal, "Preheat the oven"),
                (WordOp::Insert, "well.")
            ]
        );
    }

    #[test]
    fn inserted_and_deleted_steps_in_make_order() {
        let made = [RECIPE[0], "Grease a tin.", RECIPE[1], RECIPE[3]];
        let changes = align(&steps(&RECIPE), &steps(&made));
        assert_eq!(
            kinds(&changes),
            [
                (StepChangeKind::Inserted, None, Some(1)),
                (StepChangeKind::Deleted, Some(2), None),
            ]
        );
    }

    #[test]
    fn unrelated_texts_are_not_paired_even_under_the_same_id() {
        let recipe = steps(&["Whisk the eggs."]);
        let made = steps(&["Serve with cream on top."]);
        let kinds: Vec<_> = align(&recipe, &made).iter().map(|c| c.kind).collect();
        assert_eq!(kinds, [StepChangeKind::Inserted, StepChangeKind::Deleted]);
    }

    #[test]
    fn edited_steps_under_new_ids_pair_by_words() {
        let recipe = steps(&RECIPE);
        let mut made = steps(&[
            RECIPE[0],
            RECIPE[1],
            "Fold in the flour very gently.",
            RECIPE[3],
        ]);
        made[2].step_id = "new".into();
        let changes = align(&recipe, &made);
        assert_eq!(
            kinds(&changes),
            [(StepChangeKind::Modified, Some(2), Some(2))]
        );
    }

    #[test]
    fn cosmetic_edits_pair_by_normalised_text() {
        let mut made = RECIPE;
        made[0] = "preheat the OVEN";
        let changes = align(&steps(&RECIPE), &steps(&made));
        assert_eq!(
            kinds(&changes),
            [(StepChangeKind::Modified, Some(0), Some(0))]
        );
        assert_eq!(changes[0].similarity, 1.0);
        assert!(changes[0].words.iter().all(|w| w.op == WordOp::Equal));
    }

    #[test]
    fn repeated_steps_keep_their_order() {
        let recipe = steps(&["Stir.", "Add milk.", "Stir."]);
        let made = steps(&["Stir.", "Add milk.", "Stir."]);
        assert!(align(&recipe, &made).is_empty());
    }

    #[test]
    fn longest_increasing_marks_one_longest_run() {
        let marked = longest_increasing(&[3, 0, 1, 4, 2]);
        assert_eq!(marked, [false, true, true, false, true]);
        assert!(longest_increasing(&[]).is_empty());
    }

    #[test]
    fn words_are_compared_lower_case_without_surrounding_punctuation() {
        assert_eq!(word_key("Oven,"), "oven");
        assert_eq!(word_key("(180C)."), "180c");
        assert_eq!(word_key("1/2"), "1/2");
        assert_eq!(word_key("&"), "&");
    }

    #[test]
    fn dice_counts_repeated_words() {
        assert_eq!(bag_similarity(&[1, 1, 2], &[1, 2, 2]), 2.0 * 2.0 / 6.0);
        assert_eq!(bag_similarity(&[], &[]), 1.0);
        assert_eq!(bag_similarity(&[1], &[]), 0.0);
    }
}
