//! Retry delays: exponential in the attempt number, capped, with random jitter so that jobs that
//! failed together (a comparison outage fails every job in flight at once) do not all come back
//! in the same instant.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// `min(base · 2^(attempt−1), max)`, plus jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Self {
        Self { base, max }
    }

    /// The delay before attempt `attempt + 1`, after `attempt` (1-based) attempts, without
    /// jitter. Attempt 0 is treated as 1.
    pub fn delay(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(31);
        self.base
            .checked_mul(1u32 << doublings)
            .unwrap_or(self.max)
            .min(self.max)
    }

    /// [`Backoff::delay`] plus jitter.
    pub fn jittered(&self, attempt: u32) -> Duration {
        with_jitter(self.delay(attempt))
    }

    /// A delay the server asked for (gRPC RetryInfo), capped at `max` so that an odd answer
    /// cannot park a job for hours, plus jitter.
    pub fn server_hint(&self, hint: Duration) -> Duration {
        with_jitter(hint.min(self.max))
    }
}

/// `delay` plus a random extra of up to a quarter of it.
pub fn with_jitter(delay: Duration) -> Duration {
    let quarter = delay.as_nanos() / 4;
    if quarter == 0 {
        return delay;
    }
    let extra = u128::from(random_u64()) % quarter;
    delay + Duration::from_nanos(u64::try_from(extra).unwrap_or(u64::MAX))
}

/// A random number from the standard library's per-process random hash keys. Each
/// `RandomState::new()` gets fresh keys, which is all the randomness jitter needs; it saves a
/// dependency on a random number crate.
fn random_u64() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(0x5eed);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        assert_eq!(b.delay(0), Duration::from_millis(100));
        assert_eq!(b.delay(1), Duration::from_millis(100));
        assert_eq!(b.delay(2), Duration::from_millis(200));
        assert_eq!(b.delay(4), Duration::from_millis(800));
        assert_eq!(b.delay(5), Duration::from_secs(1));
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(1));
    }

    #[test]
    fn jitter_adds_at_most_a_quarter() {
        let d = Duration::from_secs(4);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..50 {
            let j = with_jitter(d);
            assert!(j >= d && j < d + Duration::from_secs(1), "{j:?}");
            seen.insert(j);
        }
        assert!(seen.len() > 1, "jitter varies");
        assert_eq!(with_jitter(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn server_hints_are_capped() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let d = b.server_hint(Duration::from_secs(3600));
        assert!(d >= Duration::from_secs(1) && d < Duration::from_millis(1250));
    }
}
