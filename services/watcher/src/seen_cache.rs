//! An in-memory, bounded memory of file versions known to be settled, so that re-listing a
//! large bucket does not ask the ledger about every unchanged file every time.
//!
//! Entries are 128-bit digests of (key, ETag): a false "seen" would lose a file, so the digest
//! is wide enough that a collision is not a practical concern. When the cache is full it is
//! emptied and refilled from the ledger: memory stays bounded, correctness never depends on it.

use sha2::{Digest, Sha256};
use std::collections::HashSet;

pub struct SeenCache {
    entries: HashSet<u128>,
    capacity: usize,
}

impl SeenCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: HashSet::new(),
            capacity,
        }
    }

    fn digest(key: &str, etag: &str) -> u128 {
        let mut h = Sha256::new();
        h.update(key.as_bytes());
        // A separator no key contains, so ("ab", "c") and ("a", "bc") differ.
        h.update([0u8]);
        h.update(etag.as_bytes());
        let bytes: [u8; 16] = h.finalize()[..16].try_into().expect("16 bytes");
        u128::from_le_bytes(bytes)
    }

    pub fn contains(&self, key: &str, etag: &str) -> bool {
        self.entries.contains(&Self::digest(key, etag))
    }

    pub fn insert(&mut self, key: &str, etag: &str) {
        if self.capacity == 0 {
            return;
        }
        if self.entries.len() >= self.capacity {
            self.entries = HashSet::new();
        }
        self.entries.insert(Self::digest(key, etag));
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_versions_not_keys() {
        let mut c = SeenCache::new(10);
        c.insert("makes/a.json", "e1");
        assert!(c.contains("makes/a.json", "e1"));
        assert!(!c.contains("makes/a.json", "e2"), "a rewrite is new");
        assert!(!c.contains("makes/a.jso", "ne1"), "fields are separated");
    }

    #[test]
    fn stays_within_its_capacity() {
        let mut c = SeenCache::new(3);
        for i in 0..10 {
            c.insert(&format!("k{i}"), "e");
            assert!(c.len() <= 3);
        }
        assert!(c.contains("k9", "e"));
        let mut off = SeenCache::new(0);
        off.insert("k", "e");
        assert!(off.is_empty());
    }
}
