//! What a DynamoDB store remembers between makes, so that recording a make usually costs one
//! transactional write and no read: the latest version of recently used recipes, the
//! statistics shards this process wrote last, and which shards its makes are writing right now.
//!
//! Both go out of date when another replica writes. That is safe because every write relying
//! on them carries a condition that fails if they are (the head's `latest_version`, the shard's
//! `rev`), and a failed condition evicts the entry: a stale cache costs a retry, never a wrong
//! count or a make compared with an outdated recipe.

use crate::StoredRecipe;
use lru::LruCache;
use recipe_diff::RecipeStats;
use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::Mutex;

/// Recipes whose latest version is kept (each holds one recipe document).
pub const DEFAULT_RECIPE_ENTRIES: usize = 1024;
/// Statistics shards kept (each holds one recipe's statistics for 1/16 of its makes).
pub const DEFAULT_SHARD_ENTRIES: usize = 4096;

/// A statistics shard as last written or read: `rev` is None when the item does not exist yet.
#[derive(Debug, Clone)]
pub(crate) struct Shard {
    pub stats: RecipeStats,
    pub rev: Option<u64>,
}

pub(crate) struct ReadCache {
    latest: Mutex<LruCache<String, StoredRecipe>>,
    shards: Mutex<LruCache<(String, u8), Shard>>,
    /// Per recipe, how many makes of this process are writing each shard now.
    busy: Mutex<HashMap<String, Vec<u32>>>,
}

/// A statistics shard this process's make is writing; the shard is free again when dropped.
pub(crate) struct ShardClaim<'a> {
    cache: &'a ReadCache,
    recipe_id: String,
    pub shard: u8,
}

impl Drop for ShardClaim<'_> {
    fn drop(&mut self) {
        let mut busy = lock(&self.cache.busy);
        if let Some(writers) = busy.get_mut(&self.recipe_id) {
            if let Some(n) = writers.get_mut(usize::from(self.shard)) {
                *n = n.saturating_sub(1);
            }
            if writers.iter().all(|n| *n == 0) {
                busy.remove(&self.recipe_id);
            }
        }
    }
}

impl ReadCache {
    /// A cache of at most the given numbers of entries (at least one each), least recently
    /// used evicted first.
    pub fn new(recipes: usize, shards: usize) -> Self {
        let cap = |n: usize| NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN);
        Self {
            latest: Mutex::new(LruCache::new(cap(recipes))),
            shards: Mutex::new(LruCache::new(cap(shards))),
            busy: Mutex::new(HashMap::new()),
        }
    }

    /// Picks the statistics shard (of `count`) a make of `recipe_id` writes:
    /// looking from `preferred` on, the first shard no other make of this process is writing
    /// whose state is cached, else the first one not being written, else `preferred`.
    ///
    /// Two makes of one process on one shard would race for its `rev`, and the loser would pay
    /// a read and a second write; a cached shard saves the read. So a process writes as few
    /// shards per recipe as it has makes of that recipe in flight, and a warm make costs one
    /// write. Other replicas still race now and then; the `rev` condition settles that.
    pub fn claim_shard(&self, recipe_id: &str, preferred: u8, count: u8) -> ShardClaim<'_> {
        let count = count.max(1);
        let mut busy = lock(&self.busy);
        let writers = busy.entry(recipe_id.to_string()).or_default();
        if writers.len() < usize::from(count) {
            writers.resize(usize::from(count), 0);
        }
        let free: Vec<u8> = (0..count)
            .map(|i| ((u16::from(preferred) + u16::from(i)) % u16::from(count)) as u8)
            .filter(|shard| writers[usize::from(*shard)] == 0)
            .collect();
        let shard = {
            let cached = lock(&self.shards);
            let mut key = (recipe_id.to_string(), 0);
            free.iter().copied().find(|shard| {
                key.1 = *shard;
                cached.contains(&key)
            })
        }
        .or_else(|| free.first().copied())
        .unwrap_or(preferred % count);
        writers[usize::from(shard)] += 1;
        ShardClaim {
            cache: self,
            recipe_id: recipe_id.to_string(),
            shard,
        }
    }

    pub fn latest(&self, recipe_id: &str) -> Option<StoredRecipe> {
        lock(&self.latest).get(recipe_id).cloned()
    }

    /// Remembers `stored` unless a newer version is already known.
    pub fn put_latest(&self, stored: &StoredRecipe) {
        let mut latest = lock(&self.latest);
        match latest.get(&stored.recipe.recipe_id) {
            Some(known) if known.version > stored.version => {}
            _ => {
                latest.put(stored.recipe.recipe_id.clone(), stored.clone());
            }
        }
    }

    pub fn forget_latest(&self, recipe_id: &str) {
        lock(&self.latest).pop(recipe_id);
    }

    pub fn shard(&self, recipe_id: &str, shard: u8) -> Option<Shard> {
        lock(&self.shards)
            .get(&(recipe_id.to_string(), shard))
            .cloned()
    }

    pub fn put_shard(&self, recipe_id: &str, shard: u8, value: Shard) {
        lock(&self.shards).put((recipe_id.to_string(), shard), value);
    }

    pub fn forget_shard(&self, recipe_id: &str, shard: u8) {
        lock(&self.shards).pop(&(recipe_id.to_string(), shard));
    }
}

/// A panic while holding the lock cannot leave an entry half-written (every update is one
/// `put`/`pop`), so a poisoned lock is still usable.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn warm(cache: &ReadCache, recipe: &str, shard: u8) {
        let value = Shard {
            stats: RecipeStats::default(),
            rev: Some(1),
        };
        cache.put_shard(recipe, shard, value);
    }

    #[test]
    fn makes_in_flight_get_different_shards_warm_ones_first() {
        let cache = ReadCache::new(4, 64);
        warm(&cache, "r", 9);
        let a = cache.claim_shard("r", 3, 16);
        assert_eq!(a.shard, 9, "the cached shard saves a read");
        let b = cache.claim_shard("r", 3, 16);
        assert_eq!(
            b.shard, 3,
            "no other cached shard is free: the preferred one"
        );
        let c = cache.claim_shard("r", 3, 16);
        assert_eq!(c.shard, 4, "the next one not being written");
        let other = cache.claim_shard("s", 3, 16);
        assert_eq!(other.shard, 3, "recipes do not share shards");
        drop(a);
        let d = cache.claim_shard("r", 0, 16);
        assert_eq!(d.shard, 9, "free again once the claim is dropped");
    }

    #[test]
    fn a_sequence_of_makes_keeps_to_one_shard() {
        let cache = ReadCache::new(4, 64);
        let first = cache.claim_shard("r", 5, 16).shard;
        warm(&cache, "r", first);
        for preferred in 0..16 {
            assert_eq!(cache.claim_shard("r", preferred, 16).shard, first);
        }
        assert!(
            lock(&cache.busy).is_empty(),
            "dropped claims leave nothing behind"
        );
    }

    #[test]
    fn when_every_shard_is_busy_claims_share_and_are_counted() {
        let cache = ReadCache::new(4, 64);
        let all: Vec<_> = (0..4).map(|i| cache.claim_shard("r", i, 4)).collect();
        let mut shards: Vec<u8> = all.iter().map(|c| c.shard).collect();
        shards.sort_unstable();
        assert_eq!(shards, [0, 1, 2, 3]);
        let shared = cache.claim_shard("r", 2, 4);
        assert_eq!(shared.shard, 2);
        drop(shared);
        // Shard 2 still has its first writer: a new make must not take it as free.
        let next = cache.claim_shard("r", 2, 4);
        assert_eq!(next.shard, 2, "all busy, so the preferred one again");
        drop(all);
        drop(next);
        assert!(lock(&cache.busy).is_empty());
    }
}
