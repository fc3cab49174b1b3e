//! The queue contract, written once and run against both backends.
//!
//! Every test is a generic `async fn(&Backend)`; the `contract!` macro instantiates each one in
//! `sqlite::` (a temporary database file) and `sqs::` (a fresh, uniquely named queue and DLQ on
//! the emulator `AWS_ENDPOINT_URL` points at). Without `AWS_ENDPOINT_URL` the SQS tests fail on
//! purpose: run `scripts/test.sh`, which starts moto. Tests that only make sense for one backend
//! live in the `sqlite_only` and `sqs_only` modules.
//!
//! Timeouts are short (1–2 s) to keep the suite fast; SQS counts them in whole seconds and moto
//! looks at expired visibility timeouts about once a second during a long poll, so the bounds
//! below leave room for that.
//!
//! Where moto differs from SQS, and what that means here: moto accepts receipt handles of
//! earlier receives for ChangeMessageVisibility and DeleteMessage and acts on the message
//! (SQS documents that only the latest handle is to be used, and that a delete through an old
//! one may succeed), and deleting twice succeeds on both. No test is
//! loosened for that: the stale-receipt assertions hold on SQS because of the backend's local
//! lease (see `src/sqs.rs`), and they fail if it is removed. Real SQS standard queues may, on
//! rare occasions, deliver a message twice; `two_concurrent_consumers_never_share_a_message`
//! could then fail against real AWS through no fault of the backend.

use message_queue::{Delivery, MessageQueue, OutgoingMessage, QueueError, create_sqs_queues, open};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// Backends

/// A visibility timeout no test outlives.
const HOLD: Duration = Duration::from_secs(30);
const SECOND: Duration = Duration::from_secs(1);

struct Backend {
    queue: Arc<dyn MessageQueue>,
    /// Opens another handle on the same queue (another consumer, or another process).
    url: String,
    _dir: Option<tempfile::TempDir>,
    /// SQS queues to drop after a passing test.
    sqs_queues: Vec<String>,
}

impl Backend {
    async fn reopen(&self) -> Arc<dyn MessageQueue> {
        open(&self.url).await.expect("open the queue again")
    }

    async fn finish(self) {
        if self.sqs_queues.is_empty() {
            return;
        }
        // Best effort: the emulator is thrown away after the run anyway.
        let client = aws_sdk_sqs::Client::new(&aws_setup::load().await);
        for name in self.sqs_queues {
            if let Ok(out) = client.get_queue_url().queue_name(&name).send().await
                && let Some(url) = out.queue_url
            {
                let _ = client.delete_queue().queue_url(url).send().await;
            }
        }
    }
}

async fn sqlite_backend() -> Backend {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}/queue/jobs.db", dir.path().display());
    Backend {
        queue: open(&url).await.expect("open sqlite queue"),
        url,
        _dir: Some(dir),
        sqs_queues: Vec::new(),
    }
}

/// Fails the test when there is no emulator to run against.
fn require_emulator() {
    if std::env::var_os("AWS_ENDPOINT_URL").is_none_or(|v| v.is_empty()) {
        panic!(
            "AWS_ENDPOINT_URL is not set, so the SQS contract tests have nothing to run against. \
             Run scripts/test.sh (it starts moto), or start \
             `python scripts/lib/moto_server.py -p 5066 &` and set \
             AWS_ENDPOINT_URL=http://127.0.0.1:5066 AWS_ACCESS_KEY_ID=testing \
             AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1"
        );
    }
}

fn unique_name() -> String {
    format!("mq-{}", uuid::Uuid::new_v4().simple())
}

async fn sqs_backend() -> Backend {
    require_emulator();
    let name = unique_name();
    let dlq = format!("{name}-dlq");
    create_sqs_queues(&name, &dlq, message_queue::DEFAULT_MAX_RECEIVE_COUNT)
        .await
        .expect("create queue and DLQ");
    let url = format!("sqs://{name}?dlq={dlq}");
    Backend {
        queue: open(&url).await.expect("open SQS queue"),
        url,
        _dir: None,
        sqs_queues: vec![name, dlq],
    }
}

macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let backend = super::sqlite_backend().await;
                    super::$name(&backend).await;
                    backend.finish().await;
                }
            )*
        }
        mod sqs {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let backend = super::sqs_backend().await;
                    super::$name(&backend).await;
                    backend.finish().await;
                }
            )*
        }
    };
}

contract!(
    send_batch_of_25_then_receive_each_exactly_once,
    held_messages_are_invisible_until_the_visibility_timeout,
    delete_is_final,
    release_with_delay_returns_it_after_the_delay,
    extend_keeps_it_hidden_past_the_original_timeout,
    stale_receipts_change_nothing,
    dead_letter_moves_it_with_the_reason,
    two_concurrent_consumers_never_share_a_message,
    long_poll_returns_when_a_message_arrives,
    approximate_depth_counts_visible_messages,
    bad_arguments_are_invalid_and_change_nothing,
    delete_batch_removes_exactly_the_messages_named,
    a_stale_receipt_fails_alone_in_a_batch,
    extend_batch_keeps_them_hidden_past_the_original_timeout,
    empty_batches_do_nothing,
);

// ---------------------------------------------------------------------------------------------
// Helpers

fn traceparent(i: usize) -> String {
    format!("00-{:032x}-{:016x}-01", i + 1, i + 7)
}

fn message(i: usize) -> OutgoingMessage {
    OutgoingMessage::new(format!("{{\"job\":{i}}}"))
        .with_attribute("traceparent", traceparent(i))
        .with_attribute("index", i.to_string())
}

fn assert_stale<T: std::fmt::Debug>(what: &str, result: Result<T, QueueError>) {
    assert!(
        matches!(result, Err(QueueError::StaleReceipt(_))),
        "{what}: expected StaleReceipt, got {result:?}"
    );
}

fn assert_invalid<T: std::fmt::Debug>(what: &str, result: Result<T, QueueError>) {
    assert!(
        matches!(result, Err(QueueError::Invalid(_))),
        "{what}: expected Invalid, got {result:?}"
    );
}

/// Receives until a receive comes back empty (nothing visible is left), holding everything.
async fn drain(q: &dyn MessageQueue, visibility: Duration) -> Vec<Delivery> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut all = Vec::new();
    loop {
        assert!(Instant::now() < deadline, "draining took too long");
        let got = q.receive(10, SECOND, visibility).await.expect("receive");
        if got.is_empty() {
            return all;
        }
        all.extend(got);
    }
}

/// Waits (long polling) until one message is received; fails after `within`.
async fn receive_one_within(
    q: &dyn MessageQueue,
    within: Duration,
    visibility: Duration,
) -> Delivery {
    let deadline = Instant::now() + within;
    loop {
        let mut got = q.receive(1, SECOND, visibility).await.expect("receive");
        if let Some(d) = got.pop() {
            assert!(got.is_empty(), "asked for one message, got more");
            return d;
        }
        assert!(
            Instant::now() < deadline,
            "no message became visible within {within:?}"
        );
    }
}

/// Receives until `count` messages are held (each for `visibility`); fails after `within`.
async fn receive_n(
    q: &dyn MessageQueue,
    count: usize,
    within: Duration,
    visibility: Duration,
) -> Vec<Delivery> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    while got.len() < count {
        assert!(
            Instant::now() < deadline,
            "received only {} of {count} messages within {within:?}",
            got.len()
        );
        let want = (count - got.len()).min(10) as u32;
        got.extend(q.receive(want, SECOND, visibility).await.expect("receive"));
    }
    assert_eq!(got.len(), count, "received more than asked for");
    got
}

fn assert_all_ok(what: &str, results: &[Result<(), QueueError>], expected_len: usize) {
    assert_eq!(
        results.len(),
        expected_len,
        "{what}: one result per receipt"
    );
    for (i, r) in results.iter().enumerate() {
        assert!(r.is_ok(), "{what}: entry {i} failed: {r:?}");
    }
}

/// Nothing is visible right now (a receive without waiting returns nothing).
async fn assert_nothing_visible(q: &dyn MessageQueue, what: &str) {
    let got = q.receive(10, Duration::ZERO, HOLD).await.expect("receive");
    assert!(
        got.is_empty(),
        "{what}: expected nothing visible, got {:?}",
        got.iter().map(|d| &d.body).collect::<Vec<_>>()
    );
}

/// The depth settles on `expected` (SQS counts are eventually consistent); fails after 3 s.
async fn assert_depth(q: &dyn MessageQueue, expected: u64) {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let depth = q.approximate_depth().await.expect("approximate_depth");
        if depth == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "approximate_depth is {depth}, expected {expected}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// The contract

async fn send_batch_of_25_then_receive_each_exactly_once(b: &Backend) {
    let q = b.queue.as_ref();
    let before_ms = now_ms();
    let sent: Vec<OutgoingMessage> = (0..25).map(message).collect();
    q.send_batch(sent.clone()).await.expect("send_batch");

    let got = drain(q, HOLD).await;
    let bodies: Vec<&str> = got.iter().map(|d| d.body.as_str()).collect();
    assert_eq!(got.len(), 25, "received {bodies:?}");
    let unique: HashSet<&str> = bodies.iter().copied().collect();
    assert_eq!(
        unique.len(),
        25,
        "a message was delivered twice: {bodies:?}"
    );
    let ids: HashSet<&str> = got.iter().map(|d| d.message_id.as_str()).collect();
    assert_eq!(ids.len(), 25, "message ids are not unique");
    for d in &got {
        let original = sent
            .iter()
            .find(|m| m.body == d.body)
            .unwrap_or_else(|| panic!("received a body that was never sent: {:?}", d.body));
        assert_eq!(
            d.attributes, original.attributes,
            "attributes of {}",
            d.body
        );
        assert!(d.attributes["traceparent"].starts_with("00-"));
        assert_eq!(d.receive_count, 1);
        assert!(!d.message_id.is_empty());
        assert!(
            d.sent_at_ms >= before_ms - 5_000 && d.sent_at_ms <= now_ms() + 5_000,
            "sent_at_ms {} is not around now",
            d.sent_at_ms
        );
    }
    // Everything is held: nothing is delivered twice.
    assert_nothing_visible(q, "after receiving all 25").await;
}

async fn held_messages_are_invisible_until_the_visibility_timeout(b: &Backend) {
    let q = b.queue.as_ref();
    q.send_batch(vec![message(1)]).await.expect("send");
    let first = receive_one_within(q, Duration::from_secs(5), Duration::from_secs(2)).await;
    let received_at = Instant::now();
    assert_eq!(first.receive_count, 1);
    assert_nothing_visible(q, "while held").await;

    let again = receive_one_within(q, Duration::from_secs(6), HOLD).await;
    assert!(
        received_at.elapsed() >= Duration::from_millis(1_800),
        "visible again after {:?}, before the 2 s visibility timeout",
        received_at.elapsed()
    );
    assert_eq!(again.message_id, first.message_id);
    assert_eq!(again.body, first.body);
    assert_eq!(again.attributes, first.attributes);
    assert_eq!(again.receive_count, 2);
    q.delete(&again.receipt).await.expect("delete");
}

async fn delete_is_final(b: &Backend) {
    let q = b.queue.as_ref();
    q.send_batch(vec![message(1)]).await.expect("send");
    let d = receive_one_within(q, Duration::from_secs(5), SECOND).await;
    q.delete(&d.receipt).await.expect("delete");
    // Past the visibility timeout, it does not come back.
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    assert_nothing_visible(q, "after delete and the visibility timeout").await;
    assert_depth(q, 0).await;
}

async fn release_with_delay_returns_it_after_the_delay(b: &Backend) {
    let q = b.queue.as_ref();
    q.send_batch(vec![message(1)]).await.expect("send");
    let first = receive_one_within(q, Duration::from_secs(5), HOLD).await;
    let released_at = Instant::now();
    q.release(&first.receipt, Duration::from_secs(2))
        .await
        .expect("release");
    let early = q.receive(10, SECOND, HOLD).await.expect("receive");
    assert!(early.is_empty(), "visible before the delay: {early:?}");

    let second = receive_one_within(q, Duration::from_secs(6), HOLD).await;
    assert!(
        released_at.elapsed() >= Duration::from_millis(1_800),
        "visible again after {:?}, before the 2 s delay",
        released_at.elapsed()
    );
    assert_eq!(second.message_id, first.message_id);
    assert_eq!(second.receive_count, 2);
    assert_stale(
        "release through a spent receipt",
        q.release(&first.receipt, Duration::ZERO).await,
    );

    // Without a delay it is back at once.
    let released_at = Instant::now();
    q.release(&second.receipt, Duration::ZERO)
        .await
        .expect("release without delay");
    let third = receive_one_within(q, Duration::from_secs(3), HOLD).await;
    assert!(
        released_at.elapsed() < Duration::from_millis(1_500),
        "took {:?} to come back after a release without delay",
        released_at.elapsed()
    );
    assert_eq!(third.message_id, first.message_id);
    assert_eq!(third.receive_count, 3);
    q.delete(&third.receipt).await.expect("delete");
}

async fn extend_keeps_it_hidden_past_the_original_timeout(b: &Backend) {
    let q = b.queue.as_ref();
    q.send_batch(vec![message(1)]).await.expect("send");
    let d = receive_one_within(q, Duration::from_secs(5), SECOND).await;
    q.extend(&d.receipt, Duration::from_secs(2))
        .await
        .expect("extend");
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    assert_nothing_visible(q, "past the original 1 s timeout, after extending to 2 s").await;
    // The receipt still holds the message: heartbeats can go on.
    let extended_at = Instant::now();
    q.extend(&d.receipt, Duration::from_secs(2))
        .await
        .expect("second heartbeat");
    let again = receive_one_within(q, Duration::from_secs(6), HOLD).await;
    assert!(
        extended_at.elapsed() >= Duration::from_millis(1_800),
        "visible again after {:?}, before the second 2 s extension ran out",
        extended_at.elapsed()
    );
    assert_eq!(again.message_id, d.message_id);
    assert_eq!(again.receive_count, 2);
    q.delete(&again.receipt).await.expect("delete");
}

async fn stale_receipts_change_nothing(b: &Backend) {
    let q = b.queue.as_ref();
    q.send_batch(vec![message(1)]).await.expect("send");
    let lapsed = receive_one_within(q, Duration::from_secs(5), SECOND).await;
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let current = receive_one_within(q, Duration::from_secs(5), HOLD).await;
    assert_eq!(current.message_id, lapsed.message_id);
    assert_eq!(current.receive_count, 2);

    assert_stale(
        "delete through the lapsed receipt",
        q.delete(&lapsed.receipt).await,
    );
    assert_stale(
        "extend through the lapsed receipt",
        q.extend(&lapsed.receipt, HOLD).await,
    );
    assert_stale(
        "release through the lapsed receipt",
        q.release(&lapsed.receipt, Duration::ZERO).await,
    );
    assert_stale(
        "dead_letter through the lapsed receipt",
        q.dead_letter(&lapsed, "should not happen").await,
    );
    // The current holder is undisturbed: still hidden, no dead letter written.
    assert_nothing_visible(q, "after using the lapsed receipt").await;
    assert!(q.dead_letters(10).await.expect("dead_letters").is_empty());

    q.delete(&current.receipt)
        .await
        .expect("delete through the current receipt");
    assert_stale("delete twice", q.delete(&current.receipt).await);
    assert_stale(
        "extend after delete",
        q.extend(&current.receipt, HOLD).await,
    );
    assert_stale(
        "release after delete",
        q.release(&current.receipt, Duration::ZERO).await,
    );
    assert_depth(q, 0).await;
}

async fn dead_letter_moves_it_with_the_reason(b: &Backend) {
    let q = b.queue.as_ref();
    let sent = message(3).with_attribute("source", "s3://bucket/recipes/toast.json");
    q.send_batch(vec![sent.clone(), message(4)])
        .await
        .expect("send");
    let visibility = Duration::from_secs(2);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut got = Vec::new();
    while got.len() < 2 {
        assert!(Instant::now() < deadline, "received only {got:?}");
        got.extend(q.receive(10, SECOND, visibility).await.expect("receive"));
    }
    assert_eq!(got.len(), 2);
    assert_ne!(got[0].message_id, got[1].message_id);
    let d = got
        .iter()
        .find(|d| d.body == sent.body)
        .expect("the message to dead-letter");
    let other = got.iter().find(|d| d.body != sent.body).expect("the other");
    let reason = "recipe file is not valid JSON: expected value at line 1 column 1";
    q.dead_letter(d, reason).await.expect("dead_letter");
    q.delete(&other.receipt).await.expect("delete the other");
    assert_stale("delete after dead_letter", q.delete(&d.receipt).await);

    // The original is gone for good, also after its visibility timeout.
    tokio::time::sleep(visibility + Duration::from_millis(200)).await;
    assert_nothing_visible(q, "after dead_letter and the visibility timeout").await;
    assert_depth(q, 0).await;

    let dead = q.dead_letters(10).await.expect("dead_letters");
    assert_eq!(dead.len(), 1, "{dead:?}");
    let dl = &dead[0];
    assert_eq!(dl.message_id, d.message_id);
    assert_eq!(dl.body, sent.body);
    assert_eq!(dl.attributes, sent.attributes);
    assert_eq!(dl.reason, reason);
    assert_eq!(dl.receive_count, 1);
    assert!(
        dl.dead_at_ms >= d.sent_at_ms - 5_000 && dl.dead_at_ms <= now_ms() + 5_000,
        "dead_at_ms {} is not around now",
        dl.dead_at_ms
    );
    // Peeking does not consume.
    let again = q.dead_letters(10).await.expect("dead_letters again");
    assert_eq!(again, dead);
}

async fn two_concurrent_consumers_never_share_a_message(b: &Backend) {
    let sent: Vec<OutgoingMessage> = (0..50).map(message).collect();
    b.queue.send_batch(sent).await.expect("send_batch");
    let consumers = [b.queue.clone(), b.reopen().await];
    let tasks = consumers.map(|q| {
        tokio::spawn(async move {
            let mut bodies = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(20);
            // Everything stays held (HOLD), so an empty receive means nothing is left.
            loop {
                assert!(Instant::now() < deadline, "consuming took too long");
                let got = q.receive(10, SECOND, HOLD).await.expect("receive");
                if got.is_empty() {
                    return bodies;
                }
                bodies.extend(got.into_iter().map(|d| d.body));
            }
        })
    });
    let [a, b2] = tasks;
    let a = a.await.expect("consumer a");
    let b2 = b2.await.expect("consumer b");
    let mut all: Vec<&String> = a.iter().chain(b2.iter()).collect();
    all.sort();
    let unique: HashSet<&String> = all.iter().copied().collect();
    assert_eq!(
        unique.len(),
        all.len(),
        "a message was delivered to both consumers (a got {}, b got {})",
        a.len(),
        b2.len()
    );
    assert_eq!(all.len(), 50, "a got {}, b got {}", a.len(), b2.len());
}

async fn long_poll_returns_when_a_message_arrives(b: &Backend) {
    let sender = b.queue.clone();
    let send = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        sender.send_batch(vec![message(9)]).await.expect("send");
    });
    let started = Instant::now();
    let got = b
        .queue
        .receive(1, Duration::from_secs(5), HOLD)
        .await
        .expect("receive");
    let took = started.elapsed();
    send.await.expect("sender task");
    assert_eq!(got.len(), 1, "the long poll ended without the message");
    assert_eq!(got[0].body, message(9).body);
    assert!(
        took >= Duration::from_millis(250),
        "returned after {took:?}, before the message was sent"
    );
    assert!(
        took < Duration::from_secs(3),
        "returned after {took:?}: the long poll did not wake up when the message arrived"
    );
}

async fn approximate_depth_counts_visible_messages(b: &Backend) {
    let q = b.queue.as_ref();
    assert_depth(q, 0).await;
    q.send_batch((0..5).map(message).collect())
        .await
        .expect("send");
    assert_depth(q, 5).await;
    let mut held = Vec::new();
    while held.len() < 2 {
        held.extend(
            q.receive(2 - held.len() as u32, SECOND, HOLD)
                .await
                .expect("receive"),
        );
    }
    assert_depth(q, 3).await;
    q.release(&held[0].receipt, Duration::ZERO)
        .await
        .expect("release");
    assert_depth(q, 4).await;
    q.delete(&held[1].receipt).await.expect("delete");
    assert_depth(q, 4).await;
}

async fn bad_arguments_are_invalid_and_change_nothing(b: &Backend) {
    let q = b.queue.as_ref();
    assert_invalid("receive 0", q.receive(0, Duration::ZERO, HOLD).await);
    assert_invalid("receive 11", q.receive(11, Duration::ZERO, HOLD).await);
    assert_invalid(
        "wait over 20 s",
        q.receive(1, Duration::from_secs(21), HOLD).await,
    );
    assert_invalid(
        "visibility over 12 h",
        q.receive(1, Duration::ZERO, Duration::from_secs(12 * 3600 + 1))
            .await,
    );
    // One bad message refuses the whole batch.
    assert_invalid(
        "empty body",
        q.send_batch(vec![message(1), OutgoingMessage::new("")])
            .await,
    );
    assert_invalid(
        "reserved attribute",
        q.send_batch(vec![
            message(1).with_attribute("dead-letter-reason", "forged"),
        ])
        .await,
    );
    assert_invalid(
        "empty attribute value",
        q.send_batch(vec![message(1).with_attribute("empty", "")])
            .await,
    );
    q.send_batch(Vec::new())
        .await
        .expect("an empty batch is fine");
    assert_depth(q, 0).await;

    q.send_batch(vec![message(2)]).await.expect("send");
    let d = receive_one_within(q, Duration::from_secs(5), HOLD).await;
    assert_invalid("blank reason", q.dead_letter(&d, "  ").await);
    assert_invalid(
        "extend over 12 h",
        q.extend(&d.receipt, Duration::from_secs(12 * 3600 + 1))
            .await,
    );
    assert_invalid(
        "release delay over 12 h",
        q.release(&d.receipt, Duration::from_secs(12 * 3600 + 1))
            .await,
    );
    let too_long = q
        .extend_batch(
            std::slice::from_ref(&d.receipt),
            Duration::from_secs(12 * 3600 + 1),
        )
        .await;
    assert_eq!(too_long.len(), 1);
    assert_invalid(
        "extend_batch over 12 h",
        too_long.into_iter().next().expect("one result"),
    );
    // None of that touched the message: the receipt still holds it.
    q.delete(&d.receipt).await.expect("delete");
    assert!(q.dead_letters(10).await.expect("dead_letters").is_empty());
}

async fn delete_batch_removes_exactly_the_messages_named(b: &Backend) {
    let q = b.queue.as_ref();
    // More than one SQS batch request (10 entries each) in one call.
    q.send_batch((0..25).map(message).collect())
        .await
        .expect("send_batch");
    let visibility = Duration::from_secs(3);
    let held = receive_n(q, 25, Duration::from_secs(10), visibility).await;
    let kept: Vec<&Delivery> = held.iter().step_by(5).collect();
    let deleted: Vec<&Delivery> = held
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 5 != 0)
        .map(|(_, d)| d)
        .collect();
    let receipts: Vec<_> = deleted.iter().map(|d| d.receipt.clone()).collect();
    let results = q.delete_batch(&receipts).await;
    assert_all_ok("delete_batch of 20 held messages", &results, 20);

    // Once the visibility timeout is over, the five not named come back, and only they.
    let back = receive_n(q, kept.len(), Duration::from_secs(8), HOLD).await;
    let mut back_ids: Vec<&str> = back.iter().map(|d| d.message_id.as_str()).collect();
    let mut kept_ids: Vec<&str> = kept.iter().map(|d| d.message_id.as_str()).collect();
    back_ids.sort_unstable();
    kept_ids.sort_unstable();
    assert_eq!(back_ids, kept_ids, "the messages not deleted come back");
    assert!(back.iter().all(|d| d.receive_count == 2), "{back:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_nothing_visible(q, "after the deleted messages' visibility timeout").await;

    let receipts: Vec<_> = back.iter().map(|d| d.receipt.clone()).collect();
    assert_all_ok(
        "delete_batch of the rest",
        &q.delete_batch(&receipts).await,
        5,
    );
    assert_depth(q, 0).await;
    // Spent receipts: a second delete of each is stale.
    for (i, r) in q.delete_batch(&receipts).await.into_iter().enumerate() {
        assert_stale(&format!("second delete_batch, entry {i}"), r);
    }
}

async fn a_stale_receipt_fails_alone_in_a_batch(b: &Backend) {
    let q = b.queue.as_ref();
    q.send_batch(vec![message(1)]).await.expect("send");
    let lapsed = receive_one_within(q, Duration::from_secs(5), SECOND).await;
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let current = receive_one_within(q, Duration::from_secs(5), HOLD).await;
    assert_eq!(current.message_id, lapsed.message_id);
    q.send_batch(vec![message(2), message(3)])
        .await
        .expect("send");
    let others = receive_n(q, 2, Duration::from_secs(5), HOLD).await;

    let mixed = [
        others[0].receipt.clone(),
        lapsed.receipt.clone(),
        others[1].receipt.clone(),
    ];
    let extended = q.extend_batch(&mixed, HOLD).await;
    assert_eq!(extended.len(), 3, "{extended:?}");
    let mut extended = extended.into_iter();
    extended
        .next()
        .expect("0")
        .expect("extend of a held message");
    assert_stale(
        "extend through the lapsed receipt",
        extended.next().expect("1"),
    );
    extended
        .next()
        .expect("2")
        .expect("extend of a held message");

    let deleted = q.delete_batch(&mixed).await;
    assert_eq!(deleted.len(), 3, "{deleted:?}");
    let mut deleted = deleted.into_iter();
    deleted
        .next()
        .expect("0")
        .expect("delete of a held message");
    assert_stale(
        "delete through the lapsed receipt",
        deleted.next().expect("1"),
    );
    deleted
        .next()
        .expect("2")
        .expect("delete of a held message");
    // The current holder is undisturbed.
    assert_nothing_visible(q, "after the batch with the lapsed receipt").await;
    assert_depth(q, 0).await;

    // An already spent receipt, the current one, and the current one again: the second delete
    // through the same receipt finds it spent, as two calls in a row would.
    let again = q
        .delete_batch(&[
            others[0].receipt.clone(),
            current.receipt.clone(),
            current.receipt.clone(),
        ])
        .await;
    assert_eq!(again.len(), 3, "{again:?}");
    let mut again = again.into_iter();
    assert_stale(
        "delete_batch through a spent receipt",
        again.next().expect("0"),
    );
    again
        .next()
        .expect("1")
        .expect("delete through the current receipt");
    assert_stale(
        "the same receipt twice in a batch",
        again.next().expect("2"),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_nothing_visible(q, "after deleting everything").await;
    assert!(q.dead_letters(10).await.expect("dead_letters").is_empty());
}

async fn extend_batch_keeps_them_hidden_past_the_original_timeout(b: &Backend) {
    let q = b.queue.as_ref();
    q.send_batch((0..3).map(message).collect())
        .await
        .expect("send");
    let held = receive_n(q, 3, Duration::from_secs(5), Duration::from_secs(2)).await;
    let receipts: Vec<_> = held.iter().map(|d| d.receipt.clone()).collect();
    let extended_at = Instant::now();
    assert_all_ok(
        "extend_batch",
        &q.extend_batch(&receipts, Duration::from_secs(4)).await,
        3,
    );
    // Past the original 2 s (and then some), still hidden.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_nothing_visible(q, "past the original 2 s timeout, after extending to 4 s").await;

    let again = receive_n(q, 3, Duration::from_secs(8), HOLD).await;
    assert!(
        extended_at.elapsed() >= Duration::from_millis(3_800),
        "visible again after {:?}, before the 4 s extension ran out",
        extended_at.elapsed()
    );
    assert!(again.iter().all(|d| d.receive_count == 2), "{again:?}");
    let receipts: Vec<_> = again.iter().map(|d| d.receipt.clone()).collect();
    assert_all_ok("delete_batch", &q.delete_batch(&receipts).await, 3);
    assert_depth(q, 0).await;
}

async fn empty_batches_do_nothing(b: &Backend) {
    let q = b.queue.as_ref();
    q.send_batch(vec![message(1)]).await.expect("send");
    let d = receive_one_within(q, Duration::from_secs(5), Duration::from_secs(2)).await;
    assert!(q.delete_batch(&[]).await.is_empty());
    assert!(q.extend_batch(&[], HOLD).await.is_empty());
    // Neither touched the held message: it comes back after its own 2 s.
    let again = receive_one_within(q, Duration::from_secs(6), HOLD).await;
    assert_eq!(again.message_id, d.message_id);
    assert_eq!(again.receive_count, 2);
    q.delete(&again.receipt).await.expect("delete");
    assert_depth(q, 0).await;
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

// ---------------------------------------------------------------------------------------------
// The embedded queue only

mod sqlite_only {
    use super::*;

    /// Two `open()`s of one file behave like two processes: each has its own connection and
    /// learns about the other's messages only through the file.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn two_opens_of_the_same_file_share_the_queue() {
        let b = sqlite_backend().await;
        let watcher = b.reopen().await;
        let sender = b.reopen().await;

        // A long poll in one handle sees a message the other sends (by polling the file).
        let w = watcher.clone();
        let send = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            w.send_batch(vec![message(1), message(2)])
                .await
                .expect("send");
        });
        let started = Instant::now();
        let got = sender
            .receive(10, Duration::from_secs(5), HOLD)
            .await
            .expect("receive");
        send.await.expect("sender task");
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
        for d in &got {
            sender.delete(&d.receipt).await.expect("delete");
        }
        assert_depth(watcher.as_ref(), 0).await;

        // Messages outlive the handles that sent them.
        watcher.send_batch(vec![message(3)]).await.expect("send");
        drop(watcher);
        drop(sender);
        let later = b.reopen().await;
        let d = receive_one_within(later.as_ref(), Duration::from_secs(2), HOLD).await;
        assert_eq!(d.body, message(3).body);
        assert_eq!(d.attributes, message(3).attributes);

        // A named queue in the same file is separate.
        let other = open(&format!("{}?queue=s3-events", b.url))
            .await
            .expect("open named queue");
        assert_depth(other.as_ref(), 0).await;
        other.send_batch(vec![message(4)]).await.expect("send");
        assert_nothing_visible(
            later.as_ref(),
            "the default queue, after sending to another",
        )
        .await;
        let o = receive_one_within(other.as_ref(), Duration::from_secs(2), HOLD).await;
        assert_eq!(o.body, message(4).body);
        b.finish().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn redrive_after_max_receive_count() {
        let b = sqlite_backend().await;
        let q = open(&format!("{}?max_receive_count=2", b.url))
            .await
            .expect("open with redrive");
        q.send_batch(vec![message(5)]).await.expect("send");
        for expected in 1..=2 {
            let d = receive_one_within(q.as_ref(), Duration::from_secs(2), HOLD).await;
            assert_eq!(d.receive_count, expected);
            q.release(&d.receipt, Duration::ZERO)
                .await
                .expect("release");
        }
        let third = q.receive(10, Duration::ZERO, HOLD).await.expect("receive");
        assert!(third.is_empty(), "delivered a third time: {third:?}");
        let dead = q.dead_letters(10).await.expect("dead_letters");
        assert_eq!(dead.len(), 1, "{dead:?}");
        assert_eq!(dead[0].body, message(5).body);
        assert_eq!(dead[0].attributes, message(5).attributes);
        assert_eq!(dead[0].reason, "received 2 times without success");
        assert_eq!(dead[0].receive_count, 2);
        assert_depth(q.as_ref(), 0).await;
        b.finish().await;
    }

    #[tokio::test]
    async fn bad_urls_are_invalid() {
        for url in [
            "sqlite://",
            "sqlite://x.db?queue=a/b",
            "sqlite://x.db?nope=1",
            "redis://x",
        ] {
            assert_invalid(url, open(url).await.map(|_| ()));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// SQS only

mod sqs_only {
    use super::*;

    #[tokio::test]
    async fn a_missing_queue_is_not_ready_and_says_how_to_create_it() {
        require_emulator();
        let missing = unique_name();
        let err = open(&format!("sqs://{missing}")).await.map(|_| ()).err();
        match err {
            Some(QueueError::NotReady(m)) => {
                assert!(m.contains(&missing) && m.contains("create"), "{m}")
            }
            other => panic!("expected NotReady, got {other:?}"),
        }
        let b = sqs_backend().await;
        let name = &b.sqs_queues[0];
        let err = open(&format!("sqs://{name}?dlq={missing}"))
            .await
            .map(|_| ())
            .err();
        assert!(matches!(err, Some(QueueError::NotReady(_))), "{err:?}");
        b.finish().await;
    }

    #[tokio::test]
    async fn dead_letter_without_a_dlq_is_refused_and_keeps_the_message() {
        let b = sqs_backend().await;
        let name = &b.sqs_queues[0];
        let q = open(&format!("sqs://{name}"))
            .await
            .expect("open without dlq");
        q.send_batch(vec![message(1)]).await.expect("send");
        let d = receive_one_within(q.as_ref(), Duration::from_secs(5), HOLD).await;
        match q.dead_letter(&d, "bad recipe").await {
            Err(QueueError::Invalid(m)) => assert!(m.contains("dlq="), "{m}"),
            other => panic!("expected Invalid, got {other:?}"),
        }
        assert_invalid("dead_letters without dlq", q.dead_letters(10).await);
        q.delete(&d.receipt)
            .await
            .expect("the message is still held");
        b.finish().await;
    }

    /// The safety net: SQS itself moves a message received more than maxReceiveCount times, and
    /// it arrives without a reason of ours.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn the_redrive_policy_moves_messages_without_a_reason() {
        let b = sqs_backend().await;
        // Running the setup again is safe and updates the policy.
        create_sqs_queues(&b.sqs_queues[0], &b.sqs_queues[1], 1)
            .await
            .expect("update the redrive policy");
        let q = b.queue.as_ref();
        q.send_batch(vec![message(6)]).await.expect("send");
        let d = receive_one_within(q, Duration::from_secs(5), SECOND).await;
        tokio::time::sleep(Duration::from_millis(1_200)).await;
        let again = q.receive(10, SECOND, HOLD).await.expect("receive");
        assert!(
            again.is_empty(),
            "delivered past maxReceiveCount: {again:?}"
        );
        let dead = q.dead_letters(10).await.expect("dead_letters");
        assert_eq!(dead.len(), 1, "{dead:?}");
        assert_eq!(dead[0].message_id, d.message_id);
        assert_eq!(dead[0].body, message(6).body);
        assert_eq!(dead[0].attributes, message(6).attributes);
        assert!(
            dead[0].reason.contains("redrive policy"),
            "{}",
            dead[0].reason
        );
        b.finish().await;
    }

    #[tokio::test]
    async fn setup_refuses_bad_settings() {
        require_emulator();
        let name = unique_name();
        assert_invalid("same name", create_sqs_queues(&name, &name, 3).await);
        assert_invalid(
            "maxReceiveCount 0",
            create_sqs_queues(&name, &format!("{name}-dlq"), 0).await,
        );
        assert_invalid(
            "FIFO",
            create_sqs_queues("jobs.fifo", "jobs-dlq.fifo", 3).await,
        );
    }
}
