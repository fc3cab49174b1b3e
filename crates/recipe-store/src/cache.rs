//! What a DynamoDB store remembers between makes, so that recording a make usually costs one
//! transactional write and no read: the latest version of recently used recipes and the
//! statistics shards this process wrote last.
//!
//! Both go out of date when another replica writes. That is safe because every write relying
//! on them carries a condition that fails if they are (the head's `latest_version`, the shard's
//! `rev`), and a failed condition evicts the entry: a stale cache costs a retry, never a wrong
//! count or a make compared with an outdated recipe.

use crate::StoredRecipe;
use lru::LruCache;
use recipe_diff::RecipeStats;
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
}

impl ReadCache {
    /// A cache of at most the given numbers of entries (at least one each), least recently
    /// used evicted first.
    pub fn new(recipes: usize, shards: usize) -> Self {
        let cap = |n: usize| NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN);
        Self {
            latest: Mutex::new(LruCache::new(cap(recipes))),
            shards: Mutex::new(LruCache::new(cap(shards))),
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
