//! The circuit breaker in front of `receive`: while the comparison service (or the bucket) is
//! failing, the sender stops taking jobs instead of receiving them only to hand them back.
//!
//! Why: every receive counts against a message (`receive_count`), and the queues move a message
//! to the dead letters after a fixed number of receives (the redrive safety net). Without the
//! breaker, an outage of a few minutes would burn through that budget and dead-letter good jobs.
//! With it, a transient failure pauses receiving for a backoff that grows while the outage lasts
//! (shared by all job tasks), and receiving resumes only after a probe that spends no job's
//! attempts: the gRPC health check of the comparison service, and a `head` of the object whose
//! read failed. A job that succeeds meanwhile closes the breaker at once.

use crate::backoff::Backoff;
use crate::rpc::Comparison;
use object_source::{ObjectError, ObjectSource};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// What failed, so the probe checks the right thing before receiving resumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Suspect {
    Comparison,
    /// The object source, probed with a `head` of this key.
    Source {
        key: String,
    },
}

#[derive(Debug, Default)]
struct State {
    /// `Some` while open (receiving paused), until when.
    open_until: Option<Instant>,
    /// Consecutive pauses without a successful job in between; sets the pause length.
    level: u32,
    comparison: bool,
    source_key: Option<String>,
}

#[derive(Debug)]
pub struct Breaker {
    state: Mutex<State>,
    backoff: Backoff,
    /// While open, why it opened (`None` when closed); lets the receive loop cancel a long poll
    /// the moment the breaker opens, and the admin port report the sender not ready.
    open: watch::Sender<Option<String>>,
}

impl Breaker {
    pub fn new(backoff: Backoff) -> Self {
        Self {
            state: Mutex::new(State::default()),
            backoff,
            open: watch::Sender::new(None),
        }
    }

    /// The state, even if a thread panicked while holding the lock: every update leaves it
    /// consistent, so there is nothing to lose by going on.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a transient failure. Opens the breaker (logged once) if it was closed; while
    /// open, only a longer server-requested delay (`hint`, from RetryInfo) extends the pause.
    pub fn trip(&self, suspect: Suspect, hint: Option<Duration>, why: &str) {
        let mut s = self.lock();
        match suspect {
            Suspect::Comparison => s.comparison = true,
            Suspect::Source { key } => s.source_key = Some(key),
        }
        let now = Instant::now();
        match s.open_until {
            None => {
                s.level = s.level.saturating_add(1);
                let pause = match hint {
                    Some(h) => self.backoff.server_hint(h),
                    None => self.backoff.jittered(s.level),
                };
                s.open_until = Some(now + pause);
                self.open.send_replace(Some(why.to_string()));
                tracing::warn!(
                    pause = ?pause,
                    reason = %why,
                    "pausing receiving: a dependency is failing; jobs wait in the queue"
                );
            }
            Some(until) => {
                if let Some(h) = hint {
                    let later = now + self.backoff.server_hint(h);
                    if later > until {
                        s.open_until = Some(later);
                    }
                }
            }
        }
    }

    /// Records a job that got through to the comparison service: closes the breaker.
    pub fn record_success(&self) {
        let mut s = self.lock();
        s.level = 0;
        if s.open_until.take().is_some() {
            s.comparison = false;
            s.source_key = None;
            self.open.send_replace(None);
            tracing::info!("resuming receiving: a job went through");
        }
    }

    pub fn is_open(&self) -> bool {
        self.lock().open_until.is_some()
    }

    /// Follows the breaker: `None` while closed, the reason it opened while open.
    pub fn watch(&self) -> watch::Receiver<Option<String>> {
        self.open.subscribe()
    }

    /// Resolves when the breaker is open (at once if it is).
    pub async fn opened(&self) {
        let mut open = self.open.subscribe();
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = open.wait_for(Option::is_some).await;
    }

    /// Returns when receiving may go on: at once when closed; otherwise after the pause, once a
    /// probe finds the suspects healthy (each failed probe lengthens the pause).
    pub async fn wait_until_closed(&self, prober: &Prober) {
        loop {
            let until = match self.lock().open_until {
                None => return,
                Some(until) => until,
            };
            tokio::time::sleep_until(until).await;
            let (comparison, source_key) = {
                let s = self.lock();
                match s.open_until {
                    None => return,
                    // Extended meanwhile (a server asked for a longer delay).
                    Some(until) if until > Instant::now() => continue,
                    Some(_) => (s.comparison, s.source_key.clone()),
                }
            };
            let verdict = prober.probe(comparison, source_key.as_deref()).await;
            let mut s = self.lock();
            if s.open_until.is_none() {
                return; // a job succeeded while the probe ran
            }
            match verdict {
                Ok(()) => {
                    // `level` stays until a job succeeds, so a service that fails again at once
                    // gets a longer pause than the last one.
                    s.open_until = None;
                    s.comparison = false;
                    s.source_key = None;
                    self.open.send_replace(None);
                    tracing::info!("resuming receiving: the probe found the dependencies healthy");
                    return;
                }
                Err(why) => {
                    s.level = s.level.saturating_add(1);
                    let pause = self.backoff.jittered(s.level);
                    s.open_until = Some(Instant::now() + pause);
                    tracing::debug!(pause = ?pause, reason = %why, "still paused");
                }
            }
        }
    }
}

/// Checks a dependency without touching the queue.
pub struct Prober {
    pub comparison: Comparison,
    pub source: Arc<dyn ObjectSource>,
}

impl Prober {
    async fn probe(&self, comparison: bool, source_key: Option<&str>) -> Result<(), String> {
        if comparison {
            self.comparison.check_health().await?;
        }
        if let Some(key) = source_key {
            match self.source.head(key).await {
                // Any answer about the object itself means the source works.
                Ok(_) | Err(ObjectError::NotFound(_) | ObjectError::InvalidKey(_)) => {}
                Err(e) => return Err(format!("object source: {e}")),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        Breaker::new(Backoff::new(
            Duration::from_millis(100),
            Duration::from_secs(1),
        ))
    }

    #[tokio::test]
    async fn a_trip_opens_and_a_success_closes() {
        let b = breaker();
        assert!(!b.is_open());
        b.trip(Suspect::Comparison, None, "UNAVAILABLE");
        assert!(b.is_open());
        b.trip(Suspect::Comparison, None, "UNAVAILABLE again");
        assert_eq!(b.lock().level, 1, "failures while open do not escalate");
        b.record_success();
        assert!(!b.is_open());
        assert_eq!(b.lock().level, 0);
    }

    #[tokio::test]
    async fn server_hints_extend_the_pause_up_to_the_cap() {
        let b = breaker();
        b.trip(Suspect::Comparison, None, "x");
        let first = b.lock().open_until.expect("open");
        b.trip(Suspect::Comparison, Some(Duration::from_secs(30)), "y");
        let later = b.lock().open_until.expect("open");
        assert!(later > first);
        assert!(later <= Instant::now() + Duration::from_millis(1250));
    }
}
