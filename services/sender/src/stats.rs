//! Counters of what the sender did, shared by every job task. Tests read them through
//! [`crate::startup::Application::stats`]; a metrics exporter can read the same atomics later.

use std::sync::atomic::{AtomicU64, Ordering};

/// Running totals since start. A delivery normally ends in one of `recipes_processed` /
/// `makes_processed`, `retried`, `dead_lettered`, `stale` or `released_at_shutdown`. Exceptions:
/// an accepted job whose delete then finds the receipt stale counts as processed and stale; one
/// whose release or dead-letter call failed is in none (it comes back after its visibility
/// timeout).
#[derive(Debug, Default)]
pub struct SenderStats {
    /// Deliveries taken from the queue (a redelivered message counts again).
    pub received: AtomicU64,
    /// Recipe jobs the comparison service accepted (duplicates included).
    pub recipes_processed: AtomicU64,
    /// Make jobs the comparison service accepted (duplicates included).
    pub makes_processed: AtomicU64,
    /// Accepted jobs that wrote nothing: a replayed make, or a recipe equal to its latest version.
    pub duplicates: AtomicU64,
    /// Deliveries handed back to the queue for a later attempt.
    pub retried: AtomicU64,
    /// Deliveries moved to the dead letters.
    pub dead_lettered: AtomicU64,
    /// Deliveries dropped because the queue said another consumer holds them now.
    pub stale: AtomicU64,
    /// Deliveries handed back unfinished when the shutdown grace period ran out.
    pub released_at_shutdown: AtomicU64,
}

/// A plain copy of [`SenderStats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub received: u64,
    pub recipes_processed: u64,
    pub makes_processed: u64,
    pub duplicates: u64,
    pub retried: u64,
    pub dead_lettered: u64,
    pub stale: u64,
    pub released_at_shutdown: u64,
}

impl SenderStats {
    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            received: get(&self.received),
            recipes_processed: get(&self.recipes_processed),
            makes_processed: get(&self.makes_processed),
            duplicates: get(&self.duplicates),
            retried: get(&self.retried),
            dead_lettered: get(&self.dead_lettered),
            stale: get(&self.stale),
            released_at_shutdown: get(&self.released_at_shutdown),
        }
    }
}

/// Adds one; counters are independent totals, so relaxed ordering is enough.
pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}
