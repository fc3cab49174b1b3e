//! The Amazon SQS backend: a standard queue, and optionally its dead-letter queue.
//!
//! Visibility, heartbeats and backoff map onto `ReceiveMessage` / `ChangeMessageVisibility`;
//! `dead_letter` sends a copy with a `dead-letter-reason` attribute to the DLQ and then deletes
//! the original. SQS accepts receipt handles of earlier receives and deletes through them (the
//! documentation: "the request succeeds, but the message might not be deleted"), so each
//! receipt also carries a local lease: once this consumer's visibility timeout has lapsed, or
//! the receipt was spent, the receipt is [`QueueError::StaleReceipt`] without asking SQS. That
//! keeps the promise that a stale receipt changes nothing. The lease is counted from when the
//! receive or extend call started, or [`LATENCY_ALLOWANCE`] before its response if the call
//! took longer (a long poll), so it ends before SQS's own lease unless SQS answered more than
//! that late; a request sent in the last moments of a lease can still race SQS's clock.
//! `delete_batch` and `extend_batch` use `DeleteMessageBatch` / `ChangeMessageVisibilityBatch`
//! with the same local checks and the same error mapping, entry by entry.

use crate::common::{
    STRING_TYPE, ceil_secs, check_duration, check_messages, check_receive, clean_reason,
    message_size, now_ms, peek_limit,
};
use crate::{
    DEAD_LETTER_MESSAGE_ID_ATTRIBUTE, DEAD_LETTER_REASON_ATTRIBUTE,
    DEAD_LETTER_RECEIVE_COUNT_ATTRIBUTE, DeadLetter, Delivery, MAX_ATTRIBUTES, MAX_MESSAGE_BYTES,
    MessageQueue, OutgoingMessage, QueueError, RESERVED_ATTRIBUTE_PREFIX, Receipt, ReceiptKind,
    Result,
};
use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::{BuildError, DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::{
    BatchResultErrorEntry, ChangeMessageVisibilityBatchRequestEntry,
    DeleteMessageBatchRequestEntry, Message, MessageAttributeValue, MessageSystemAttributeName,
    QueueAttributeName, SendMessageBatchRequestEntry,
};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Most entries in one `SendMessageBatch`, `DeleteMessageBatch` or
/// `ChangeMessageVisibilityBatch` (the SQS limit).
pub const MAX_BATCH_ENTRIES: usize = 10;
/// Attempts of one batch's failed entries before `send_batch` gives up on them.
pub const SEND_ATTEMPTS: u32 = 4;
/// How much of a receive's or extend's own duration is counted as having happened before SQS
/// started the visibility timeout (see the module documentation).
pub const LATENCY_ALLOWANCE: Duration = Duration::from_secs(1);
/// How long one `dead_letters` round waits for DLQ messages (a short poll can miss some).
const PEEK_WAIT_SECS: i32 = 1;
/// Retention set on dead-letter queues: the SQS maximum, 14 days.
const DLQ_RETENTION_SECS: u32 = 14 * 24 * 60 * 60;

/// The SQS backend's receipt: the handle of one receive, plus the local lease.
#[derive(Clone)]
pub(crate) struct SqsReceipt {
    handle: String,
    queue_url: String,
    lease: Arc<Mutex<Lease>>,
}

impl std::fmt::Debug for SqsReceipt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let short: String = self.handle.chars().take(16).collect();
        f.debug_struct("SqsReceipt")
            .field("handle", &format_args!("{short}…"))
            .field("queue_url", &self.queue_url)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct Lease {
    /// When this consumer stops holding the message, by its own clock.
    held_until: Instant,
    /// What spent the receipt, if something did.
    spent_by: Option<&'static str>,
}

impl SqsReceipt {
    fn lock(&self) -> std::sync::MutexGuard<'_, Lease> {
        self.lease.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `StaleReceipt` unless this receipt still holds the message.
    fn check(&self, op: &str) -> Result<()> {
        let lease = self.lock();
        if let Some(by) = lease.spent_by {
            return Err(QueueError::StaleReceipt(format!(
                "{op}: this receipt was already used to {by} the message"
            )));
        }
        let now = Instant::now();
        if now >= lease.held_until {
            return Err(QueueError::StaleReceipt(format!(
                "{op}: the visibility timeout lapsed {:?} ago, so another consumer may hold the \
                 message now; it was left alone",
                now - lease.held_until
            )));
        }
        Ok(())
    }

    fn spend(&self, by: &'static str) {
        self.lock().spent_by = Some(by);
    }

    fn hold(&self, base: Instant, visibility_secs: i32) {
        self.lock().held_until = base + Duration::from_secs(visibility_secs.max(0) as u64);
    }
}

/// The earliest moment SQS can have started a visibility timeout for a call that ran from
/// `start` until now.
fn lease_base(start: Instant) -> Instant {
    let end = Instant::now();
    end.checked_sub(LATENCY_ALLOWANCE)
        .map_or(start, |e| e.max(start))
}

/// A parsed `sqs://QUEUE_NAME[?dlq=DLQ_NAME]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqsUrl {
    pub queue: String,
    pub dlq: Option<String>,
}

impl SqsUrl {
    pub fn parse(url: &str) -> Result<Self> {
        let usage = "sqs://QUEUE_NAME[?dlq=DLQ_NAME]";
        let rest = url
            .strip_prefix("sqs://")
            .ok_or_else(|| QueueError::Invalid(format!("{url:?} is not an SQS URL ({usage})")))?;
        let (queue, query) = rest.split_once('?').unwrap_or((rest, ""));
        check_queue_name(queue).map_err(|e| QueueError::Invalid(format!("{url:?}: {e}")))?;
        let mut dlq = None;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("dlq", name)) => {
                    check_queue_name(name)
                        .map_err(|e| QueueError::Invalid(format!("{url:?}: dlq: {e}")))?;
                    dlq = Some(name.to_string());
                }
                _ => {
                    return Err(QueueError::Invalid(format!(
                        "{url:?}: unknown parameter {pair:?} ({usage})"
                    )));
                }
            }
        }
        Ok(Self {
            queue: queue.to_string(),
            dlq,
        })
    }
}

fn check_queue_name(name: &str) -> std::result::Result<(), String> {
    if name.ends_with(".fifo") {
        return Err(format!(
            "{name:?} is a FIFO queue; only standard queues are supported"
        ));
    }
    if name.is_empty()
        || name.len() > 80
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(format!(
            "queue name {name:?} must be 1 to 80 letters, digits, '-' or '_'"
        ));
    }
    Ok(())
}

fn setup_hint(queue: &str) -> String {
    format!(
        "SQS queue {queue:?} does not exist; create it and its dead-letter queue with \
         message_queue::create_sqs_queues (the services' setup command), or \
         `aws sqs create-queue --queue-name {queue}` (see docs/queue.md)"
    )
}

/// Maps an SDK error onto the queue's error kinds.
fn sdk_error<E, R>(op: &str, queue: &str, err: SdkError<E, R>) -> QueueError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let code = err.code().unwrap_or("").to_string();
    let message = err.message().unwrap_or("").to_string();
    let detail = DisplayErrorContext(&err).to_string();
    if matches!(
        err,
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_)
    ) {
        return QueueError::Unavailable(format!("SQS {op} on {queue}: {detail}"));
    }
    classify(op, queue, &code, &message, &detail).unwrap_or_else(|| {
        QueueError::Internal(format!(
            "SQS {op} on {queue} failed ({}): {detail}",
            if code.is_empty() {
                "no error code"
            } else {
                &code
            }
        ))
    })
}

/// Maps one failed entry of a batch request, by its code like a whole request's error. An
/// unknown code is transient when SQS says it was not the sender's fault.
fn entry_error(op: &str, queue: &str, entry: &BatchResultErrorEntry) -> QueueError {
    let code = entry.code();
    let message = entry.message().unwrap_or("");
    let detail = format!("{code}: {message}");
    classify(op, queue, code, message, &detail).unwrap_or_else(|| {
        if entry.sender_fault() {
            QueueError::Internal(format!("SQS {op} on {queue} failed for an entry: {detail}"))
        } else {
            QueueError::Unavailable(format!("SQS {op} on {queue} failed for an entry: {detail}"))
        }
    })
}

/// The queue's error kind for an SQS error code, `None` for codes it does not know.
fn classify(op: &str, queue: &str, code: &str, message: &str, detail: &str) -> Option<QueueError> {
    let message = message.to_ascii_lowercase();
    // SQS speaks JSON but keeps the codes of its old query API (x-amzn-query-error), so both
    // spellings occur.
    Some(match code {
        "AWS.SimpleQueueService.NonExistentQueue" | "QueueDoesNotExist" => {
            QueueError::NotReady(setup_hint(queue))
        }
        "ReceiptHandleIsInvalid"
        | "AWS.SimpleQueueService.MessageNotInflight"
        | "MessageNotInflight" => {
            QueueError::StaleReceipt(format!("SQS {op} on {queue}: {detail}"))
        }
        "InvalidParameterValue" if message.contains("receipt handle") => {
            QueueError::StaleReceipt(format!("SQS {op} on {queue}: {detail}"))
        }
        "RequestThrottled"
        | "ThrottlingException"
        | "AWS.SimpleQueueService.RequestThrottled"
        | "OverLimit"
        | "KmsThrottled"
        | "ServiceUnavailable"
        | "InternalFailure"
        | "InternalError"
        | "AWS.SimpleQueueService.QueueDeletedRecently"
        | "QueueDeletedRecently" => {
            QueueError::Unavailable(format!("SQS {op} on {queue} ({code}): {detail}"))
        }
        "InvalidParameterValue"
        | "InvalidAttributeName"
        | "InvalidAttributeValue"
        | "InvalidMessageContents"
        | "MissingParameter"
        | "InvalidAddress"
        | "UnsupportedOperation"
        | "AWS.SimpleQueueService.UnsupportedOperation"
        | "AWS.SimpleQueueService.BatchRequestTooLong"
        | "BatchRequestTooLong"
        | "AWS.SimpleQueueService.TooManyEntriesInBatchRequest"
        | "TooManyEntriesInBatchRequest"
        | "AWS.SimpleQueueService.EmptyBatchRequest"
        | "EmptyBatchRequest"
        | "AWS.SimpleQueueService.BatchEntryIdsNotDistinct"
        | "BatchEntryIdsNotDistinct"
        | "AWS.SimpleQueueService.InvalidBatchEntryId"
        | "InvalidBatchEntryId" => {
            QueueError::Invalid(format!("SQS {op} on {queue} ({code}): {detail}"))
        }
        _ => return None,
    })
}

fn build_error(what: &str, e: BuildError) -> QueueError {
    QueueError::Internal(format!("building SQS {what}: {e}"))
}

fn string_attribute(value: &str) -> Result<MessageAttributeValue> {
    MessageAttributeValue::builder()
        .data_type(STRING_TYPE)
        .string_value(value)
        .build()
        .map_err(|e| build_error("message attribute", e))
}

fn sqs_attributes(
    attributes: &BTreeMap<String, String>,
) -> Result<HashMap<String, MessageAttributeValue>> {
    attributes
        .iter()
        .map(|(k, v)| Ok((k.clone(), string_attribute(v)?)))
        .collect()
}

/// String (and Number, which SQS carries as text) attributes of a received message. Binary
/// ones have no string form and are left out.
fn received_attributes(m: &Message) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (name, value) in m.message_attributes().into_iter().flatten() {
        match value.string_value() {
            Some(s) => {
                out.insert(name.clone(), s.to_string());
            }
            None => tracing::debug!(
                attribute = %name,
                data_type = value.data_type(),
                "skipping an attribute without a string value"
            ),
        }
    }
    out
}

fn system_attribute(m: &Message, name: MessageSystemAttributeName) -> Option<&str> {
    m.attributes()
        .and_then(|a| a.get(&name))
        .map(String::as_str)
}

/// Compact inclusive index ranges (`0-2, 5`), for errors about which messages were (not) sent.
fn describe_indexes(indexes: &[usize]) -> String {
    let mut parts = Vec::new();
    let mut iter = indexes.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end += 1;
            iter.next();
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    parts.join(", ")
}

/// Splits messages into batches SQS accepts: at most 10 entries and [`MAX_MESSAGE_BYTES`] in
/// total. Returns index ranges into `messages`.
fn batches(messages: &[OutgoingMessage]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, m) in messages.iter().enumerate() {
        let size = message_size(m);
        if i > start && (i - start == MAX_BATCH_ENTRIES || bytes + size > MAX_MESSAGE_BYTES) {
            out.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < messages.len() {
        out.push(start..messages.len());
    }
    out
}

/// What `delete_batch` / `extend_batch` ask of SQS.
#[derive(Debug, Clone, Copy)]
enum BatchOp {
    Delete,
    /// Hidden for this many seconds from the request.
    Extend {
        secs: i32,
    },
}

impl BatchOp {
    fn name(self) -> &'static str {
        match self {
            BatchOp::Delete => "delete",
            BatchOp::Extend { .. } => "extend",
        }
    }

    fn request(self) -> &'static str {
        match self {
            BatchOp::Delete => "DeleteMessageBatch",
            BatchOp::Extend { .. } => "ChangeMessageVisibilityBatch",
        }
    }
}

/// An SQS queue and, optionally, its dead-letter queue.
pub struct SqsQueue {
    client: Client,
    name: String,
    url: String,
    dlq: Option<(String, String)>,
}

impl SqsQueue {
    /// Looks the queue (and the DLQ, if named) up. `NotReady` if either does not exist.
    pub async fn connect(config: &SdkConfig, name: &str, dlq: Option<&str>) -> Result<Self> {
        check_queue_name(name).map_err(QueueError::Invalid)?;
        let client = Client::from_conf(
            aws_sdk_sqs::config::Builder::from(config)
                .interceptor(aws_setup::TraceCalls)
                .build(),
        );
        let url = queue_url(&client, name).await?;
        let dlq = match dlq {
            Some(dlq_name) => {
                check_queue_name(dlq_name).map_err(QueueError::Invalid)?;
                Some((dlq_name.to_string(), queue_url(&client, dlq_name).await?))
            }
            None => None,
        };
        Ok(Self {
            client,
            name: name.to_string(),
            url,
            dlq,
        })
    }

    pub fn queue_url(&self) -> &str {
        &self.url
    }

    pub fn dead_letter_queue_url(&self) -> Option<&str> {
        self.dlq.as_ref().map(|(_, url)| url.as_str())
    }

    /// The SQS part of a receipt this queue issued.
    fn own<'r>(&self, receipt: &'r Receipt) -> Result<&'r SqsReceipt> {
        match &receipt.0 {
            ReceiptKind::Sqs(r) if r.queue_url == self.url => Ok(r),
            ReceiptKind::Sqs(r) => Err(QueueError::Invalid(format!(
                "the receipt belongs to {}, not {}",
                r.queue_url, self.url
            ))),
            ReceiptKind::Sqlite(_) => Err(QueueError::Invalid(
                "an embedded-queue receipt was passed to the SQS queue".into(),
            )),
        }
    }

    /// Sends one batch, retrying entries that failed for transient reasons. Returns the
    /// indexes (into the whole `send_batch` call) that still failed, with why.
    async fn send_one_batch(
        &self,
        messages: &[OutgoingMessage],
        range: std::ops::Range<usize>,
    ) -> Result<Vec<(usize, String, bool)>> {
        let mut pending: Vec<usize> = range.collect();
        let mut permanent = Vec::new();
        let mut last_transient = Vec::new();
        for attempt in 0..SEND_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
            }
            let entries = pending
                .iter()
                .map(|&i| {
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(&messages[i].body)
                        .set_message_attributes(
                            Some(sqs_attributes(&messages[i].attributes)?)
                                .filter(|a| !a.is_empty()),
                        )
                        .build()
                        .map_err(|e| build_error("batch entry", e))
                })
                .collect::<Result<Vec<_>>>()?;
            let out = self
                .client
                .send_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| sdk_error("SendMessageBatch", &self.name, e))?;
            last_transient.clear();
            for failed in out.failed() {
                let Ok(i) = failed.id().parse::<usize>() else {
                    return Err(QueueError::Internal(format!(
                        "SQS SendMessageBatch on {}: a failure names entry {:?}, which was not \
                         sent",
                        self.name,
                        failed.id()
                    )));
                };
                let why = format!("{}: {}", failed.code(), failed.message().unwrap_or(""));
                if failed.sender_fault() {
                    permanent.push((i, why, true));
                } else {
                    last_transient.push((i, why, false));
                }
            }
            pending = last_transient.iter().map(|(i, _, _)| *i).collect();
            if pending.is_empty() {
                break;
            }
            tracing::debug!(queue = %self.name, attempt, failed = pending.len(), "retrying failed batch entries");
        }
        permanent.extend(last_transient);
        permanent.sort_by_key(|(i, _, _)| *i);
        Ok(permanent)
    }

    async fn receive_from(
        &self,
        url: &str,
        name: &str,
        max: u32,
        wait_secs: i32,
        visibility_secs: i32,
    ) -> Result<(Vec<Message>, Instant)> {
        let start = Instant::now();
        let out = self
            .client
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(max as i32)
            .wait_time_seconds(wait_secs)
            .visibility_timeout(visibility_secs)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(|e| sdk_error("ReceiveMessage", name, e))?;
        Ok((out.messages.unwrap_or_default(), lease_base(start)))
    }

    async fn change_visibility(&self, r: &SqsReceipt, op: &str, secs: i32) -> Result<Instant> {
        let start = Instant::now();
        let result = self
            .client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(&r.handle)
            .visibility_timeout(secs)
            .send()
            .await;
        match result {
            Ok(_) => Ok(lease_base(start)),
            Err(e) => {
                let err = sdk_error(op, &self.name, e);
                if matches!(err, QueueError::StaleReceipt(_)) {
                    r.spend("find stale at SQS");
                }
                Err(err)
            }
        }
    }

    /// `delete_batch` / `extend_batch`: local checks first (a spent or lapsed lease is stale
    /// without asking SQS), then requests of up to 10 entries. A receipt handle that occurs
    /// twice is sent once (a request repeating a handle may be refused whole) and its later copies
    /// get what a second call in a row would: a second delete is stale, a second extend shares
    /// the first one's result.
    async fn batch(&self, receipts: &[Receipt], op: BatchOp) -> Vec<Result<()>> {
        let mut results: Vec<Result<()>> = vec![Ok(()); receipts.len()];
        let mut pending: Vec<(usize, &SqsReceipt)> = Vec::new();
        let mut first_of: HashMap<&str, usize> = HashMap::new();
        let mut repeats: Vec<(usize, usize)> = Vec::new();
        for (i, receipt) in receipts.iter().enumerate() {
            let checked = self
                .own(receipt)
                .and_then(|r| r.check(op.name()).map(|()| r));
            match checked {
                Err(e) => results[i] = Err(e),
                Ok(r) => match first_of.get(r.handle.as_str()) {
                    Some(&first) => repeats.push((i, first)),
                    None => {
                        first_of.insert(&r.handle, i);
                        pending.push((i, r));
                    }
                },
            }
        }
        for chunk in pending.chunks(MAX_BATCH_ENTRIES) {
            self.batch_request(chunk, op, &mut results).await;
        }
        for (i, first) in repeats {
            results[i] = match (&results[first], op) {
                (Ok(()), BatchOp::Delete) => Err(QueueError::StaleReceipt(
                    "delete: the same receipt came earlier in this batch, which deleted the \
                     message"
                        .into(),
                )),
                (first_result, _) => first_result.clone(),
            };
        }
        results
    }

    /// One `DeleteMessageBatch` or `ChangeMessageVisibilityBatch` of at most 10 entries, whose
    /// ids are the entries' positions in the whole call. Writes each entry's result.
    async fn batch_request(
        &self,
        chunk: &[(usize, &SqsReceipt)],
        op: BatchOp,
        results: &mut [Result<()>],
    ) {
        let start = Instant::now();
        let answer = match op {
            BatchOp::Delete => self.send_delete_batch(chunk).await,
            BatchOp::Extend { secs } => self.send_change_visibility_batch(chunk, secs).await,
        };
        let (successful, failed) = match answer {
            Ok(answer) => answer,
            Err(e) => {
                for (i, _) in chunk {
                    results[*i] = Err(e.clone());
                }
                return;
            }
        };
        let base = lease_base(start);
        let successful: HashSet<&str> = successful.iter().map(String::as_str).collect();
        let failed: HashMap<&str, &BatchResultErrorEntry> =
            failed.iter().map(|f| (f.id(), f)).collect();
        for (i, r) in chunk {
            let id = i.to_string();
            results[*i] = if let Some(f) = failed.get(id.as_str()) {
                let err = entry_error(op.request(), &self.name, f);
                if matches!(err, QueueError::StaleReceipt(_)) {
                    r.spend("find stale at SQS");
                }
                Err(err)
            } else if successful.contains(id.as_str()) {
                match op {
                    BatchOp::Delete => r.spend("delete"),
                    BatchOp::Extend { secs } => r.hold(base, secs),
                }
                Ok(())
            } else {
                // Assuming success could let the local lease outlive SQS's.
                Err(QueueError::Internal(format!(
                    "SQS {} on {}: the answer says nothing about entry {id}",
                    op.request(),
                    self.name
                )))
            };
        }
    }

    /// Ids that succeeded and entries that failed, or the error of the whole request.
    async fn send_delete_batch(
        &self,
        chunk: &[(usize, &SqsReceipt)],
    ) -> Result<(Vec<String>, Vec<BatchResultErrorEntry>)> {
        let entries = chunk
            .iter()
            .map(|(i, r)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(&r.handle)
                    .build()
                    .map_err(|e| build_error("delete batch entry", e))
            })
            .collect::<Result<Vec<_>>>()?;
        let out = self
            .client
            .delete_message_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| sdk_error("DeleteMessageBatch", &self.name, e))?;
        let ok = out
            .successful()
            .iter()
            .map(|s| s.id().to_string())
            .collect();
        Ok((ok, out.failed().to_vec()))
    }

    async fn send_change_visibility_batch(
        &self,
        chunk: &[(usize, &SqsReceipt)],
        secs: i32,
    ) -> Result<(Vec<String>, Vec<BatchResultErrorEntry>)> {
        let entries = chunk
            .iter()
            .map(|(i, r)| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(&r.handle)
                    .visibility_timeout(secs)
                    .build()
                    .map_err(|e| build_error("visibility batch entry", e))
            })
            .collect::<Result<Vec<_>>>()?;
        let out = self
            .client
            .change_message_visibility_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| sdk_error("ChangeMessageVisibilityBatch", &self.name, e))?;
        let ok = out
            .successful()
            .iter()
            .map(|s| s.id().to_string())
            .collect();
        Ok((ok, out.failed().to_vec()))
    }
}

async fn queue_url(client: &Client, name: &str) -> Result<String> {
    let out = client
        .get_queue_url()
        .queue_name(name)
        .send()
        .await
        .map_err(|e| sdk_error("GetQueueUrl", name, e))?;
    out.queue_url
        .ok_or_else(|| QueueError::Internal(format!("SQS GetQueueUrl for {name} returned no URL")))
}

/// The queue's URL, creating the queue if it does not exist. Looking first keeps an existing
/// queue's attributes out of CreateQueue's "same attributes or error" comparison.
async fn ensure_queue(client: &Client, name: &str) -> Result<String> {
    match queue_url(client, name).await {
        Err(QueueError::NotReady(_)) => {}
        found => return found,
    }
    let out = client
        .create_queue()
        .queue_name(name)
        .send()
        .await
        .map_err(|e| sdk_error("CreateQueue", name, e))?;
    out.queue_url
        .ok_or_else(|| QueueError::Internal(format!("SQS CreateQueue for {name} returned no URL")))
}

/// Creates (or updates) `name` and its dead-letter queue `dlq_name`, with a redrive policy
/// moving a message received more than `max_receive_count` (1..=1000) times to the DLQ, and the
/// DLQ's retention at the 14-day maximum. Safe to run again: existing queues are kept and their
/// settings updated.
pub async fn create_queues(
    config: &SdkConfig,
    name: &str,
    dlq_name: &str,
    max_receive_count: u32,
) -> Result<()> {
    check_queue_name(name).map_err(QueueError::Invalid)?;
    check_queue_name(dlq_name).map_err(QueueError::Invalid)?;
    if name == dlq_name {
        return Err(QueueError::Invalid(format!(
            "queue {name:?} cannot be its own dead-letter queue"
        )));
    }
    if !(1..=1000).contains(&max_receive_count) {
        return Err(QueueError::Invalid(format!(
            "max_receive_count must be 1..=1000, not {max_receive_count}"
        )));
    }
    let client = Client::new(config);
    let dlq_url = ensure_queue(&client, dlq_name).await?;
    client
        .set_queue_attributes()
        .queue_url(&dlq_url)
        .attributes(
            QueueAttributeName::MessageRetentionPeriod,
            DLQ_RETENTION_SECS.to_string(),
        )
        .send()
        .await
        .map_err(|e| sdk_error("SetQueueAttributes", dlq_name, e))?;
    let dlq_arn = client
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| sdk_error("GetQueueAttributes", dlq_name, e))?
        .attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .ok_or_else(|| QueueError::Internal(format!("SQS returned no QueueArn for {dlq_name}")))?;
    let url = ensure_queue(&client, name).await?;
    let policy = serde_json::json!({
        "deadLetterTargetArn": dlq_arn,
        "maxReceiveCount": max_receive_count.to_string(),
    });
    client
        .set_queue_attributes()
        .queue_url(&url)
        .attributes(QueueAttributeName::RedrivePolicy, policy.to_string())
        .send()
        .await
        .map_err(|e| sdk_error("SetQueueAttributes", name, e))?;
    Ok(())
}

#[async_trait]
impl MessageQueue for SqsQueue {
    async fn send_batch(&self, messages: Vec<OutgoingMessage>) -> Result<()> {
        check_messages(&messages)?;
        let total = messages.len();
        let mut sent = 0;
        for range in batches(&messages) {
            let end = range.end;
            let failed = match self.send_one_batch(&messages, range.clone()).await {
                Ok(failed) => failed,
                Err(e) => {
                    let not_sent: Vec<usize> = (range.start..total).collect();
                    return Err(e.context(format!(
                        "{sent} of {total} messages sent; not sent, or not all: {}",
                        describe_indexes(&not_sent)
                    )));
                }
            };
            if !failed.is_empty() {
                let failed_indexes: Vec<usize> = failed.iter().map(|(i, _, _)| *i).collect();
                let not_attempted: Vec<usize> = (end..total).collect();
                let reasons: Vec<String> = failed
                    .iter()
                    .map(|(i, why, _)| format!("message {i}: {why}"))
                    .collect();
                let detail = format!(
                    "SQS SendMessageBatch on {}: {} of {total} messages sent; failed: {}{}; {}",
                    self.name,
                    sent + (end - range.start - failed.len()),
                    describe_indexes(&failed_indexes),
                    if not_attempted.is_empty() {
                        String::new()
                    } else {
                        format!("; not attempted: {}", describe_indexes(&not_attempted))
                    },
                    reasons.join("; ")
                );
                return Err(if failed.iter().any(|(_, _, sender_fault)| *sender_fault) {
                    QueueError::Invalid(detail)
                } else {
                    QueueError::Unavailable(detail)
                });
            }
            sent = end;
        }
        Ok(())
    }

    async fn receive(
        &self,
        max: u32,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<Delivery>> {
        check_receive(max, wait, visibility)?;
        let visibility_secs = ceil_secs(visibility);
        let (messages, base) = self
            .receive_from(&self.url, &self.name, max, ceil_secs(wait), visibility_secs)
            .await?;
        let mut out = Vec::with_capacity(messages.len());
        for m in messages {
            let message_id = m.message_id().unwrap_or_default().to_string();
            let Some(handle) = m.receipt_handle() else {
                // Without a handle it cannot be acknowledged; it comes back after the timeout.
                tracing::warn!(queue = %self.name, %message_id, "received a message without a receipt handle");
                continue;
            };
            let receive_count = system_attribute(
                &m,
                MessageSystemAttributeName::ApproximateReceiveCount,
            )
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| {
                tracing::warn!(queue = %self.name, %message_id, "no ApproximateReceiveCount");
                1
            });
            let sent_at_ms = system_attribute(&m, MessageSystemAttributeName::SentTimestamp)
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| {
                    tracing::warn!(queue = %self.name, %message_id, "no SentTimestamp");
                    0
                });
            let receipt = SqsReceipt {
                handle: handle.to_string(),
                queue_url: self.url.clone(),
                lease: Arc::new(Mutex::new(Lease {
                    held_until: base,
                    spent_by: None,
                })),
            };
            receipt.hold(base, visibility_secs);
            out.push(Delivery {
                attributes: received_attributes(&m),
                body: m.body.unwrap_or_default(),
                receipt: Receipt(ReceiptKind::Sqs(receipt)),
                receive_count,
                message_id,
                sent_at_ms,
            });
        }
        Ok(out)
    }

    async fn delete(&self, receipt: &Receipt) -> Result<()> {
        let r = self.own(receipt)?;
        r.check("delete")?;
        let result = self
            .client
            .delete_message()
            .queue_url(&self.url)
            .receipt_handle(&r.handle)
            .send()
            .await;
        match result {
            Ok(_) => {
                r.spend("delete");
                Ok(())
            }
            Err(e) => {
                let err = sdk_error("DeleteMessage", &self.name, e);
                if matches!(err, QueueError::StaleReceipt(_)) {
                    r.spend("find stale at SQS");
                }
                Err(err)
            }
        }
    }

    async fn extend(&self, receipt: &Receipt, visibility: Duration) -> Result<()> {
        check_duration("extend: visibility", visibility)?;
        let r = self.own(receipt)?;
        r.check("extend")?;
        let secs = ceil_secs(visibility);
        let base = self
            .change_visibility(r, "ChangeMessageVisibility (extend)", secs)
            .await?;
        r.hold(base, secs);
        Ok(())
    }

    async fn delete_batch(&self, receipts: &[Receipt]) -> Vec<Result<()>> {
        self.batch(receipts, BatchOp::Delete).await
    }

    async fn extend_batch(&self, receipts: &[Receipt], visibility: Duration) -> Vec<Result<()>> {
        if let Err(e) = check_duration("extend: visibility", visibility) {
            return vec![Err(e); receipts.len()];
        }
        let op = BatchOp::Extend {
            secs: ceil_secs(visibility),
        };
        self.batch(receipts, op).await
    }

    async fn release(&self, receipt: &Receipt, delay: Duration) -> Result<()> {
        check_duration("release: delay", delay)?;
        let r = self.own(receipt)?;
        r.check("release")?;
        self.change_visibility(r, "ChangeMessageVisibility (release)", ceil_secs(delay))
            .await?;
        r.spend("release");
        Ok(())
    }

    async fn dead_letter(&self, delivery: &Delivery, reason: &str) -> Result<()> {
        let reason = clean_reason(reason)?;
        let Some((dlq_name, dlq_url)) = &self.dlq else {
            return Err(QueueError::Invalid(format!(
                "queue {} has no dead-letter queue configured; open it as \
                 sqs://{}?dlq=DLQ_NAME",
                self.name, self.name
            )));
        };
        let r = self.own(&delivery.receipt)?;
        // Checked first so that a stale receipt does not leave a copy behind.
        r.check("dead_letter")?;
        // SQS takes at most 10 attributes; three are the dead letter's own. Messages this crate
        // sent have at most MAX_ATTRIBUTES, others may have more: the surplus is dropped.
        let kept: BTreeMap<String, String> = delivery
            .attributes
            .iter()
            .filter(|(name, _)| !name.starts_with(RESERVED_ATTRIBUTE_PREFIX))
            .take(MAX_ATTRIBUTES)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if kept.len() < delivery.attributes.len() {
            tracing::warn!(
                queue = %self.name,
                message_id = %delivery.message_id,
                dropped = delivery.attributes.len() - kept.len(),
                "dead letter: attributes beyond the SQS limit dropped"
            );
        }
        let mut attributes = sqs_attributes(&kept)?;
        attributes.insert(
            DEAD_LETTER_REASON_ATTRIBUTE.to_string(),
            string_attribute(&reason)?,
        );
        if !delivery.message_id.is_empty() {
            attributes.insert(
                DEAD_LETTER_MESSAGE_ID_ATTRIBUTE.to_string(),
                string_attribute(&delivery.message_id)?,
            );
        }
        attributes.insert(
            DEAD_LETTER_RECEIVE_COUNT_ATTRIBUTE.to_string(),
            string_attribute(&delivery.receive_count.to_string())?,
        );
        // The body may be anything SQS delivered; an empty body cannot be sent back.
        let body = if delivery.body.is_empty() {
            " ".to_string()
        } else {
            delivery.body.clone()
        };
        self.client
            .send_message()
            .queue_url(dlq_url)
            .message_body(body)
            .set_message_attributes(Some(attributes))
            .send()
            .await
            .map_err(|e| {
                sdk_error("SendMessage", dlq_name, e)
                    .context("dead_letter: the copy was not written; the message was left alone")
            })?;
        // A crash here leaves the message in both queues: a duplicate dead letter, never a loss.
        self.delete(&delivery.receipt).await.map_err(|e| {
            e.context(format!(
                "dead_letter: copied to {dlq_name}, but deleting the original failed"
            ))
        })
    }

    async fn dead_letters(&self, max: u32) -> Result<Vec<DeadLetter>> {
        let Some((dlq_name, dlq_url)) = &self.dlq else {
            return Err(QueueError::Invalid(format!(
                "queue {} has no dead-letter queue configured; open it as \
                 sqs://{}?dlq=DLQ_NAME",
                self.name, self.name
            )));
        };
        let limit = peek_limit(max) as usize;
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        // Receiving with a visibility timeout of 0 leaves every message visible, so later rounds
        // may return the same ones; stop when a round brings nothing new.
        let rounds = limit / 10 + 3;
        for _ in 0..rounds {
            if out.len() >= limit {
                break;
            }
            let want = (limit - out.len()).min(10) as u32;
            let (messages, _) = self
                .receive_from(dlq_url, dlq_name, want, PEEK_WAIT_SECS, 0)
                .await?;
            let mut new = 0;
            for m in messages {
                let dlq_id = m.message_id().unwrap_or_default().to_string();
                if !seen.insert(dlq_id.clone()) || out.len() >= limit {
                    continue;
                }
                new += 1;
                out.push(to_dead_letter(&m, dlq_id));
            }
            if new == 0 {
                break;
            }
        }
        Ok(out)
    }

    async fn approximate_depth(&self) -> Result<u64> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
            .map_err(|e| sdk_error("GetQueueAttributes", &self.name, e))?;
        let value = out
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::ApproximateNumberOfMessages))
            .ok_or_else(|| {
                QueueError::Internal(format!(
                    "SQS GetQueueAttributes on {} returned no ApproximateNumberOfMessages",
                    self.name
                ))
            })?;
        value.parse().map_err(|_| {
            QueueError::Internal(format!(
                "SQS GetQueueAttributes on {}: ApproximateNumberOfMessages {value:?} is not a \
                 number",
                self.name
            ))
        })
    }
}

/// A DLQ message as an operator sees it. Messages SQS moved by itself (redrive policy) carry
/// none of the `dead-letter-*` attributes.
fn to_dead_letter(m: &Message, dlq_message_id: String) -> DeadLetter {
    let mut attributes = received_attributes(m);
    let reason = attributes.remove(DEAD_LETTER_REASON_ATTRIBUTE);
    let original_id = attributes.remove(DEAD_LETTER_MESSAGE_ID_ATTRIBUTE);
    let recorded_count = attributes
        .remove(DEAD_LETTER_RECEIVE_COUNT_ATTRIBUTE)
        .and_then(|v| v.parse().ok());
    attributes.retain(|name, _| !name.starts_with(RESERVED_ATTRIBUTE_PREFIX));
    let sqs_count = system_attribute(m, MessageSystemAttributeName::ApproximateReceiveCount)
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or(0);
    let reason = reason.unwrap_or_else(|| {
        format!(
            "moved by the SQS redrive policy after too many receives without success \
             (no reason recorded; approximate receive count {sqs_count}, including peeks)"
        )
    });
    DeadLetter {
        message_id: original_id.unwrap_or(dlq_message_id),
        body: m.body().unwrap_or_default().to_string(),
        attributes,
        reason,
        dead_at_ms: system_attribute(m, MessageSystemAttributeName::SentTimestamp)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(now_ms),
        receive_count: recorded_count.unwrap_or(sqs_count),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_a_queue_and_an_optional_dlq() {
        assert_eq!(
            SqsUrl::parse("sqs://jobs?dlq=jobs-dlq").ok(),
            Some(SqsUrl {
                queue: "jobs".into(),
                dlq: Some("jobs-dlq".into())
            })
        );
        assert_eq!(
            SqsUrl::parse("sqs://s3_events").ok(),
            Some(SqsUrl {
                queue: "s3_events".into(),
                dlq: None
            })
        );
        for bad in [
            "sqs://",
            "sqs://a b",
            "sqs://jobs.fifo",
            "sqs://jobs?dlq=",
            "sqs://jobs?dql=x",
            "sqlite://jobs",
            &format!("sqs://{}", "x".repeat(81)),
        ] {
            assert!(
                matches!(SqsUrl::parse(bad), Err(QueueError::Invalid(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn batches_respect_count_and_size() {
        let small: Vec<OutgoingMessage> = (0..25)
            .map(|i| OutgoingMessage::new(i.to_string()))
            .collect();
        assert_eq!(batches(&small), vec![0..10, 10..20, 20..25]);
        let big = OutgoingMessage::new("x".repeat(MAX_MESSAGE_BYTES / 2));
        let three = vec![big.clone(), big.clone(), big];
        assert_eq!(batches(&three), vec![0..2, 2..3]);
        assert!(batches(&[]).is_empty());
    }

    #[test]
    fn failed_batch_entries_map_like_whole_calls() {
        let entry = |code: &str, message: &str, sender_fault: bool| {
            BatchResultErrorEntry::builder()
                .id("3")
                .code(code)
                .message(message)
                .sender_fault(sender_fault)
                .build()
                .expect("entry")
        };
        let op = "DeleteMessageBatch";
        for stale in [
            entry("ReceiptHandleIsInvalid", "not a valid receipt handle", true),
            entry("AWS.SimpleQueueService.MessageNotInflight", "", true),
            entry(
                "InvalidParameterValue",
                "Value x for parameter ReceiptHandle is invalid. Reason: The receipt handle has \
                 expired.",
                true,
            ),
        ] {
            let err = entry_error(op, "q", &stale);
            assert!(matches!(err, QueueError::StaleReceipt(_)), "{err:?}");
        }
        let throttled = entry_error(op, "q", &entry("RequestThrottled", "slow down", false));
        assert!(throttled.is_transient(), "{throttled:?}");
        let unknown_theirs = entry_error(op, "q", &entry("SomethingNew", "oops", false));
        assert!(unknown_theirs.is_transient(), "{unknown_theirs:?}");
        let unknown_ours = entry_error(op, "q", &entry("SomethingNew", "oops", true));
        assert!(
            matches!(unknown_ours, QueueError::Internal(_)),
            "{unknown_ours:?}"
        );
        let invalid = entry_error(op, "q", &entry("InvalidParameterValue", "too long", true));
        assert!(matches!(invalid, QueueError::Invalid(_)), "{invalid:?}");
    }

    #[test]
    fn index_lists_are_compact() {
        assert_eq!(describe_indexes(&[0, 1, 2, 5, 7, 8]), "0-2, 5, 7-8");
        assert_eq!(describe_indexes(&[]), "");
    }

    #[test]
    fn a_lapsed_or_spent_lease_is_stale() {
        let r = SqsReceipt {
            handle: "h".into(),
            queue_url: "u".into(),
            lease: Arc::new(Mutex::new(Lease {
                held_until: Instant::now() + Duration::from_secs(60),
                spent_by: None,
            })),
        };
        assert!(r.check("x").is_ok());
        let copy = r.clone();
        r.spend("delete");
        assert!(matches!(copy.check("x"), Err(QueueError::StaleReceipt(_))));
        let lapsed = SqsReceipt {
            lease: Arc::new(Mutex::new(Lease {
                held_until: Instant::now(),
                spent_by: None,
            })),
            ..r
        };
        assert!(matches!(
            lapsed.check("x"),
            Err(QueueError::StaleReceipt(_))
        ));
    }
}
