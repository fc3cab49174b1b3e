//! The lease keeper: one task keeps the messages of every job in flight hidden from other
//! senders, instead of one heartbeat task per job.
//!
//! Each job registers its receipt with the moment its visibility timeout started. The keeper
//! wakes every `visibility / 6` and extends, with `extend_batch` in batches of 10, only the
//! leases that end within the next `visibility / 2`. So a job that finishes within the first half
//! of its visibility costs no extend call at all, a longer one is extended about every half
//! visibility, and a transient failure leaves two or more ticks to try again before the lease
//! would lapse. A stale receipt means another consumer may hold the message now: the keeper
//! forgets that lease and tells its job ([`Lease::lost`]).

use message_queue::{Delivery, MAX_RECEIVE_MESSAGES, MessageQueue, QueueError, Receipt};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

/// A receive may have hidden its messages at any moment while it ran. For a long poll that
/// waited, that is near its end, so the lease is counted from this long before the receive
/// returned (or from its start, if it was quicker): early enough to be safe, late enough not to
/// extend jobs that did not need it. The same allowance as the SQS backend's own local lease.
pub const RECEIVE_LATENCY_ALLOWANCE: Duration = Duration::from_secs(1);

/// When the visibility timeout of messages from a receive that started at `started` (and
/// returned just now) began, at the earliest that matters.
pub fn lease_start(started: Instant) -> Instant {
    let now = Instant::now();
    now.checked_sub(RECEIVE_LATENCY_ALLOWANCE)
        .map_or(started, |early| early.max(started))
}

/// Keeps the leases of all jobs in flight. Dropping it stops its task.
pub struct LeaseKeeper {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

struct Shared {
    queue: Arc<dyn MessageQueue>,
    visibility: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    next_id: u64,
    leases: HashMap<u64, Held>,
}

struct Held {
    receipt: Receipt,
    message_id: String,
    /// When the message becomes visible again unless extended, by this process's clock.
    deadline: Instant,
    /// Tells the job its lease is lost; taken when used.
    lost: Option<oneshot::Sender<QueueError>>,
}

impl Shared {
    /// The state, even after a panic elsewhere: every update leaves it consistent.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl LeaseKeeper {
    /// Starts the keeper's task; leases are extended by `visibility` each time.
    pub fn start(queue: Arc<dyn MessageQueue>, visibility: Duration) -> Self {
        let shared = Arc::new(Shared {
            queue,
            visibility,
            state: Mutex::new(State::default()),
        });
        let task = tokio::spawn(keep(shared.clone()));
        Self { shared, task }
    }

    /// Registers a delivery whose visibility timeout started at `since` (see [`lease_start`]).
    /// The lease is kept until the returned [`Lease`] is dropped.
    pub fn hold(&self, delivery: &Delivery, since: Instant) -> Lease {
        let (tx, rx) = oneshot::channel();
        let mut state = self.shared.lock();
        let id = state.next_id;
        state.next_id += 1;
        state.leases.insert(
            id,
            Held {
                receipt: delivery.receipt.clone(),
                message_id: delivery.message_id.clone(),
                deadline: since + self.shared.visibility,
                lost: Some(tx),
            },
        );
        Lease {
            id,
            shared: self.shared.clone(),
            lost: rx,
        }
    }

    /// Leases currently kept.
    pub fn len(&self) -> usize {
        self.shared.lock().leases.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One job's registration with the keeper; dropping it ends the keeping (the job settled).
pub struct Lease {
    id: u64,
    shared: Arc<Shared>,
    lost: oneshot::Receiver<QueueError>,
}

impl Lease {
    /// Resolves with the queue's `StaleReceipt` error when the lease is lost: another consumer
    /// may hold the message now. Never resolves otherwise.
    pub async fn lost(&mut self) -> QueueError {
        match (&mut self.lost).await {
            Ok(e) => e,
            // The keeper forgot the lease without losing it (it stopped): nothing to report.
            Err(_) => std::future::pending().await,
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.shared.lock().leases.remove(&self.id);
    }
}

/// The keeper's task: a tick every `visibility / 6`.
async fn keep(shared: Arc<Shared>) {
    // At least 1 ms: `interval` refuses zero, and the settings refuse visibilities that short.
    let period = (shared.visibility / 6).max(Duration::from_millis(1));
    let mut ticks = tokio::time::interval(period);
    // A slow extend call delays the next tick rather than causing a burst of them.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        extend_due(&shared).await;
    }
}

/// Extends the leases that end within the next half visibility, most urgent first.
async fn extend_due(shared: &Shared) {
    let horizon = Instant::now() + shared.visibility / 2;
    let mut due: Vec<(Instant, u64, Receipt)> = shared
        .lock()
        .leases
        .iter()
        .filter(|(_, held)| held.deadline <= horizon)
        .map(|(id, held)| (held.deadline, *id, held.receipt.clone()))
        .collect();
    if due.is_empty() {
        return;
    }
    due.sort_by_key(|(deadline, id, _)| (*deadline, *id));
    for chunk in due.chunks(MAX_RECEIVE_MESSAGES as usize) {
        let receipts: Vec<Receipt> = chunk.iter().map(|(_, _, r)| r.clone()).collect();
        let started = Instant::now();
        let results = shared
            .queue
            .extend_batch(&receipts, shared.visibility)
            .await;
        let mut state = shared.lock();
        let mut failed = 0;
        let mut last_error = None;
        for ((_, id, _), result) in chunk.iter().zip(results) {
            match result {
                // Counted from before the call: the queue started the new timeout later.
                Ok(()) => {
                    if let Some(held) = state.leases.get_mut(id) {
                        held.deadline = started + shared.visibility;
                    }
                }
                Err(e @ QueueError::StaleReceipt(_)) => {
                    // The job may have settled meanwhile (then nobody is told, nothing lost).
                    if let Some(mut held) = state.leases.remove(id) {
                        tracing::debug!(message_id = %held.message_id, error = %e, "lease lost");
                        if let Some(tx) = held.lost.take() {
                            let _ = tx.send(e);
                        }
                    }
                }
                // The lease stays due, so the next tick tries again.
                Err(e) => {
                    failed += 1;
                    last_error = Some(e);
                }
            }
        }
        if let Some(e) = last_error {
            tracing::warn!(
                failed,
                of = chunk.len(),
                error = %e,
                "extending leases failed; trying again at the next tick"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use message_queue::OutgoingMessage;

    const VISIBILITY: Duration = Duration::from_secs(1);

    async fn queue_with(n: usize) -> (Arc<dyn MessageQueue>, Vec<Delivery>) {
        let queue = message_queue::open("sqlite::memory:")
            .await
            .expect("open queue");
        let messages = (0..n).map(|i| OutgoingMessage::new(format!("m{i}")));
        queue.send_batch(messages.collect()).await.expect("send");
        let got = queue
            .receive(10, Duration::ZERO, VISIBILITY)
            .await
            .expect("receive");
        assert_eq!(got.len(), n);
        (queue, got)
    }

    #[tokio::test]
    async fn a_stale_receipt_tells_its_job_and_spares_the_others() {
        let (queue, got) = queue_with(2).await;
        let keeper = LeaseKeeper::start(queue.clone(), VISIBILITY);
        // Someone else settled the first message: its receipt is stale from now on.
        queue.delete(&got[0].receipt).await.expect("delete");
        // Registered as if received long ago, so both are due at the first tick.
        let long_ago = Instant::now() - VISIBILITY;
        let mut gone = keeper.hold(&got[0], long_ago);
        let mut kept = keeper.hold(&got[1], long_ago);
        let lost = tokio::time::timeout(Duration::from_secs(5), gone.lost())
            .await
            .expect("told within a few ticks");
        assert!(matches!(lost, QueueError::StaleReceipt(_)), "{lost:?}");
        assert_eq!(keeper.len(), 1, "the lost lease is forgotten");
        // The other one was extended and is still held: no news for its job.
        let quiet = tokio::time::timeout(VISIBILITY * 2, kept.lost()).await;
        assert!(quiet.is_err(), "the held lease was not lost: {quiet:?}");
        let visible = queue
            .receive(10, Duration::ZERO, VISIBILITY)
            .await
            .expect("receive");
        assert!(visible.is_empty(), "still hidden past its first timeout");
        drop(kept);
        assert!(keeper.is_empty(), "a dropped lease deregisters");
        drop(gone);
    }

    #[test]
    fn a_lease_starts_at_most_the_allowance_before_the_receive_returned() {
        let now = Instant::now();
        assert_eq!(lease_start(now), now);
        let long_poll = now - Duration::from_secs(15);
        let start = lease_start(long_poll);
        assert!(start > now - RECEIVE_LATENCY_ALLOWANCE - Duration::from_millis(100));
        assert!(start <= Instant::now() - RECEIVE_LATENCY_ALLOWANCE);
    }
}
