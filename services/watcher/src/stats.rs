//! Counters of what the watcher did, for logs, tests and (later) metrics.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct WatcherStats {
    /// Poll mode: complete passes over the prefixes.
    pub scans: AtomicU64,
    /// Objects seen in listings, or created-object records in events.
    pub objects_seen: AtomicU64,
    /// Keys outside the layout (logged once each per process in poll mode).
    pub ignored: AtomicU64,
    pub recipe_jobs: AtomicU64,
    pub make_jobs: AtomicU64,
    /// Poll mode: versions another replica held a live claim on.
    pub claimed_elsewhere: AtomicU64,
    /// Events mode: notification messages consumed.
    pub events: AtomicU64,
    /// Events mode: notifications that could not be read, moved to the events DLQ.
    pub bad_events: AtomicU64,
    /// Failed scans or event batches (retried).
    pub errors: AtomicU64,
}

impl WatcherStats {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Jobs put on the queue so far.
    pub fn jobs(&self) -> u64 {
        Self::get(&self.recipe_jobs) + Self::get(&self.make_jobs)
    }
}
