//! The job queue between the watcher and the sender.
//!
//! [`MessageQueue`] is the one interface; [`sqlite::SqliteQueue`] (embedded default, a file that
//! separate processes on one machine share, no AWS) and [`sqs::SqsQueue`] (Amazon SQS) implement
//! it side by side with the same guarantees, checked by one contract test suite
//! (`tests/contract.rs`):
//!
//! - delivery is at least once: a received message stays hidden from other consumers for its
//!   visibility timeout, and comes back unless it is deleted ([`MessageQueue::delete`]);
//! - a consumer keeps a message hidden while it works ([`MessageQueue::extend`]), hands it back
//!   for a later attempt ([`MessageQueue::release`]), or moves it to the dead-letter queue with a
//!   reason ([`MessageQueue::dead_letter`]);
//! - deletes and extensions also come in batches ([`MessageQueue::delete_batch`],
//!   [`MessageQueue::extend_batch`]) with one result per receipt, so a busy consumer pays one
//!   request for up to ten messages;
//! - a receipt whose visibility timeout lapsed and that another consumer has received since is
//!   [`QueueError::StaleReceipt`], and using it changes nothing.
//!
//! Messages are raw text bodies with string attributes (e.g. a W3C `traceparent`); what a job
//! looks like is decided a layer above. [`open`] picks the backend from a URL:
//! `sqlite://PATH[?queue=NAME&max_receive_count=N]` or `sqs://QUEUE_NAME[?dlq=DLQ_NAME]`.
//! `docs/queue.md` describes both.

use async_trait::async_trait;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

mod common;
pub mod sqlite;
pub mod sqs;

/// Most messages one `receive` returns (the SQS limit).
pub const MAX_RECEIVE_MESSAGES: u32 = 10;
/// Longest long poll of one `receive` (the SQS limit).
pub const MAX_WAIT: Duration = Duration::from_secs(20);
/// Longest visibility timeout, and longest `release` delay (the SQS limit).
pub const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 60 * 60);
/// Largest message: body plus attribute names, types and values, in bytes (the classic SQS
/// limit, kept for both backends so a message that works on one works on the other).
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// Most attributes a message may carry. SQS allows 10 per message; dead-lettering adds three of
/// its own (see [`RESERVED_ATTRIBUTE_PREFIX`]).
pub const MAX_ATTRIBUTES: usize = 7;
/// Attribute names starting with this are the queue's own and refused in `send_batch`.
pub const RESERVED_ATTRIBUTE_PREFIX: &str = "dead-letter-";
/// Attribute carrying the reason on a dead-lettered SQS message.
pub const DEAD_LETTER_REASON_ATTRIBUTE: &str = "dead-letter-reason";
/// Attribute carrying the original message id on a dead-lettered SQS message.
pub const DEAD_LETTER_MESSAGE_ID_ATTRIBUTE: &str = "dead-letter-message-id";
/// Attribute carrying the receive count at the time of dead-lettering on an SQS message.
pub const DEAD_LETTER_RECEIVE_COUNT_ATTRIBUTE: &str = "dead-letter-receive-count";
/// Longest dead-letter reason kept, in characters; longer reasons are cut and marked with `…`.
pub const MAX_REASON_CHARS: usize = 1024;
/// Most dead letters one `dead_letters` call returns; larger requests are clamped.
pub const MAX_DEAD_LETTER_PEEK: u32 = 100;
/// Receives after which a message is moved to the dead letters without a consumer's verdict
/// (the embedded queue's default, and a sensible value for [`create_sqs_queues`]).
pub const DEFAULT_MAX_RECEIVE_COUNT: u32 = 10;

/// A message to send.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OutgoingMessage {
    pub body: String,
    /// String message attributes, e.g. a W3C `traceparent`. Names follow the SQS rules
    /// (letters, digits, `-`, `_`, `.`; at most 256 bytes), values are not empty.
    pub attributes: BTreeMap<String, String>,
}

impl OutgoingMessage {
    pub fn new(body: impl Into<String>) -> Self {
        Self {
            body: body.into(),
            attributes: BTreeMap::new(),
        }
    }

    pub fn with_attribute(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.attributes.insert(name.into(), value.into());
        self
    }
}

/// A received message, held by this consumer until its visibility timeout lapses.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub body: String,
    pub attributes: BTreeMap<String, String>,
    /// Proof of this receive; pass it to `delete`, `extend`, `release`.
    pub receipt: Receipt,
    /// How many times the message has been received, this time included (SQS: approximate).
    pub receive_count: u32,
    /// Stable over redeliveries; unique within the queue.
    pub message_id: String,
    /// When the message was sent, milliseconds since the Unix epoch.
    pub sent_at_ms: i64,
}

/// A message in the dead-letter queue, as an operator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The id the message had in the main queue.
    pub message_id: String,
    pub body: String,
    /// The attributes it was sent with (the queue's own `dead-letter-*` ones removed).
    pub attributes: BTreeMap<String, String>,
    pub reason: String,
    /// When it was dead-lettered, milliseconds since the Unix epoch (see `docs/queue.md` for
    /// messages SQS moved by itself).
    pub dead_at_ms: i64,
    pub receive_count: u32,
}

/// Opaque proof that a consumer received a message; only the queue that issued it accepts it.
/// Clones share state: settling one settles all.
#[derive(Debug, Clone)]
pub struct Receipt(pub(crate) ReceiptKind);

#[derive(Debug, Clone)]
pub(crate) enum ReceiptKind {
    Sqlite(sqlite::SqliteReceipt),
    Sqs(sqs::SqsReceipt),
}

/// Cloneable so that one failure of a whole batch request can be reported for each of its
/// entries.
#[derive(Debug, Clone, thiserror::Error)]
pub enum QueueError {
    /// The queue is not set up (SQS queue missing, database file unusable); the message says how
    /// to fix it.
    #[error("queue not ready: {0}")]
    NotReady(String),
    /// The receipt no longer holds the message: it was deleted, released or dead-lettered
    /// already, or its visibility timeout lapsed and another consumer may have it. Nothing was
    /// changed; there is nothing for the caller to do but to drop the message.
    #[error("stale receipt: {0}")]
    StaleReceipt(String),
    /// Worth retrying: throttling, timeouts, the backend unreachable or busy.
    #[error("queue unavailable: {0}")]
    Unavailable(String),
    /// The request itself is wrong (bad URL, argument out of range, message too large, …).
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("queue failure: {0}")]
    Internal(String),
}

impl QueueError {
    /// True for errors a retry may cure.
    pub fn is_transient(&self) -> bool {
        matches!(self, QueueError::Unavailable(_))
    }

    /// The same error kind, its message prefixed with `context`.
    pub fn context(self, context: impl std::fmt::Display) -> Self {
        match self {
            QueueError::NotReady(m) => QueueError::NotReady(format!("{context}: {m}")),
            QueueError::StaleReceipt(m) => QueueError::StaleReceipt(format!("{context}: {m}")),
            QueueError::Unavailable(m) => QueueError::Unavailable(format!("{context}: {m}")),
            QueueError::Invalid(m) => QueueError::Invalid(format!("{context}: {m}")),
            QueueError::Internal(m) => QueueError::Internal(format!("{context}: {m}")),
        }
    }
}

pub type Result<T, E = QueueError> = std::result::Result<T, E>;

#[async_trait]
pub trait MessageQueue: Send + Sync + 'static {
    /// Sends every message, or fails saying which were not sent. SQS takes them in batches of
    /// at most 10 and retries entries it failed for transient reasons a few times; when a batch
    /// still fails, earlier batches stay sent (sending again duplicates them: delivery is at
    /// least once anyway). The embedded queue writes all of them in one transaction. An empty
    /// list sends nothing.
    async fn send_batch(&self, messages: Vec<OutgoingMessage>) -> Result<()>;

    /// Up to `max` (1..=10) messages, each hidden from other consumers for `visibility`
    /// (≤ 12 h). Waits up to `wait` (≤ 20 s) for the first one to arrive; returns as soon as
    /// there is at least one, and an empty list when the wait ends without any. SQS rounds
    /// `wait` and `visibility` up to whole seconds.
    async fn receive(
        &self,
        max: u32,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<Delivery>>;

    /// Acknowledges the message: it is gone for good. `StaleReceipt` if the receipt no longer
    /// holds it (already deleted, or lapsed and received by someone else).
    async fn delete(&self, receipt: &Receipt) -> Result<()>;

    /// Heartbeat: keeps the message hidden for `visibility` from now.
    async fn extend(&self, receipt: &Receipt, visibility: Duration) -> Result<()>;

    /// [`delete`](Self::delete) for many receipts at once: one result per receipt, in the same
    /// order, each as `delete` would give it (a stale receipt fails alone with `StaleReceipt`,
    /// the others are deleted). SQS sends `DeleteMessageBatch` requests of up to 10 entries; a
    /// request that fails as a whole fails each of its entries with that error. The embedded
    /// queue deletes the whole slice in one transaction. An empty slice does nothing.
    async fn delete_batch(&self, receipts: &[Receipt]) -> Vec<Result<()>>;

    /// [`extend`](Self::extend) for many receipts at once, each kept hidden for `visibility`
    /// from now: one result per receipt, in the same order, with the same rules as
    /// [`delete_batch`](Self::delete_batch) (`ChangeMessageVisibilityBatch` on SQS).
    async fn extend_batch(&self, receipts: &[Receipt], visibility: Duration) -> Vec<Result<()>>;

    /// Hands the message back: it becomes visible again after `delay` (backoff). The receipt is
    /// spent afterwards.
    async fn release(&self, receipt: &Receipt, delay: Duration) -> Result<()>;

    /// Moves the message to the dead-letter queue with `reason`. The copy is written before the
    /// original is deleted, so a crash in between leaves the message in both places (a
    /// duplicate dead letter), never in neither. The embedded queue does both in one
    /// transaction. Fails with `Invalid` when the queue has no dead-letter queue configured.
    async fn dead_letter(&self, delivery: &Delivery, reason: &str) -> Result<()>;

    /// Up to `max` dead letters, oldest first where the backend can tell, without consuming
    /// them. On SQS this receives from the DLQ with a visibility timeout of 0, which counts as a
    /// receive and may miss or repeat messages (see `docs/queue.md`).
    async fn dead_letters(&self, max: u32) -> Result<Vec<DeadLetter>>;

    /// Messages ready to be received now (not held, not delayed). Exact for the embedded queue,
    /// approximate and eventually consistent on SQS.
    async fn approximate_depth(&self) -> Result<u64>;
}

/// Opens the queue a URL names:
///
/// - `sqlite://PATH[?queue=NAME&max_receive_count=N]` (or `sqlite:///abs/path`,
///   `sqlite::memory:`): the embedded queue; the file is created if needed;
/// - `sqs://QUEUE_NAME[?dlq=DLQ_NAME]`: Amazon SQS through the shared AWS configuration
///   (`aws-setup`); both queues must exist (see [`create_sqs_queues`]).
pub async fn open(url: &str) -> Result<Arc<dyn MessageQueue>> {
    if url.starts_with("sqs:") {
        let target = sqs::SqsUrl::parse(url)?;
        let queue = sqs::SqsQueue::connect(
            &aws_setup::load().await,
            &target.queue,
            target.dlq.as_deref(),
        )
        .await?;
        Ok(Arc::new(queue))
    } else if url.starts_with("sqlite:") {
        Ok(Arc::new(sqlite::SqliteQueue::open(url).await?))
    } else {
        Err(QueueError::Invalid(format!(
            "unsupported queue URL {url:?}: use sqlite://PATH[?queue=NAME] or \
             sqs://QUEUE_NAME[?dlq=DLQ_NAME]"
        )))
    }
}

/// Creates (or updates) an SQS queue and its dead-letter queue, with a redrive policy that makes
/// SQS itself move a message received more than `max_receive_count` times to the DLQ. That is a
/// safety net for consumers that crash or hang; such messages arrive without a reason. Safe to
/// run again. Uses the shared AWS configuration (`aws-setup`).
pub async fn create_sqs_queues(name: &str, dlq_name: &str, max_receive_count: u32) -> Result<()> {
    sqs::create_queues(&aws_setup::load().await, name, dlq_name, max_receive_count).await
}
