//! Both detection modes against the AWS APIs, on the emulator `AWS_ENDPOINT_URL` points at
//! (scripts/test.sh starts moto): polling S3 with the DynamoDB ledger, and S3 event
//! notifications delivered to SQS. Without `AWS_ENDPOINT_URL` these fail on purpose.

mod support;

use message_queue::{MessageQueue, OutgoingMessage};
use pipeline_job::{Detection, JobKind};
use std::time::Duration;
use support::*;
use watcher::config::{Mode, SetupSettings, WatchSettings};

const DEADLINE: Duration = Duration::from_secs(60);

fn require_emulator() {
    if std::env::var_os("AWS_ENDPOINT_URL").is_none_or(|v| v.is_empty()) {
        panic!(
            "AWS_ENDPOINT_URL is not set, so the AWS tests have nothing to run against. Run \
             scripts/test.sh (it starts moto)"
        );
    }
}

struct Names {
    bucket: String,
    jobs: String,
    events: String,
    table: String,
}

fn names() -> Names {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let id = &id[..12];
    Names {
        bucket: format!("watcher-{id}"),
        jobs: format!("sqs://jobs-{id}?dlq=jobs-{id}-dlq"),
        events: format!("sqs://events-{id}?dlq=events-{id}-dlq"),
        table: format!("dynamodb://ledger-{id}"),
    }
}

async fn set_up(settings: &WatchSettings) {
    watcher::setup::run(&SetupSettings::new(settings.clone()))
        .await
        .expect("watcher setup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_a_bucket_with_the_dynamodb_ledger() {
    require_emulator();
    let n = names();
    let source_url = format!("s3://{}", n.bucket);
    let mut settings = WatchSettings::new(&source_url, &n.jobs);
    settings.ledger = n.table.clone();
    settings.poll_interval = Some(Duration::from_millis(200));
    set_up(&settings).await;
    let source = object_source::open(&source_url).await.unwrap();
    for i in 0..12 {
        source
            .put(&format!("makes/m{i}.json"), document("1"))
            .await
            .unwrap();
    }
    source.put("recipes/r.json", document("1")).await.unwrap();
    source.put("other/x.json", document("1")).await.unwrap();
    let queue = message_queue::open(&n.jobs).await.unwrap();
    let w = spawn_watcher(settings.clone()).await;
    let jobs = wait_for_jobs(queue.as_ref(), 13, DEADLINE).await;
    w.stop().await;
    assert_eq!(jobs.len(), 13, "{jobs:?}");
    let recipe = jobs
        .iter()
        .find(|j| j.kind == JobKind::Recipe)
        .expect("the recipe");
    assert_eq!(recipe.scheme, "s3");
    assert_eq!(recipe.bucket, n.bucket);
    assert_eq!(
        recipe.etag,
        source.head("recipes/r.json").await.unwrap().etag
    );

    // A restart (a new replica id) remembers what was sent.
    let w = spawn_watcher(settings).await;
    source.put("makes/late.json", document("1")).await.unwrap();
    let jobs = wait_for_jobs(queue.as_ref(), 1, DEADLINE).await;
    w.stop().await;
    assert_eq!(
        jobs.iter().map(|j| j.key.as_str()).collect::<Vec<_>>(),
        ["makes/late.json"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_event_notifications_become_jobs_and_unreadable_ones_dead_letters() {
    require_emulator();
    let n = names();
    let source_url = format!("s3://{}", n.bucket);
    let mut settings = WatchSettings::new(&source_url, &n.jobs);
    settings.mode = Mode::Events;
    settings.events_queue = Some(n.events.clone());
    set_up(&settings).await;
    // Setup is safe to run twice (and keeps one configuration per prefix).
    set_up(&settings).await;

    let w = spawn_watcher(settings).await;
    let source = object_source::open(&source_url).await.unwrap();
    let events = message_queue::open(&n.events).await.unwrap();
    events
        .send_batch(vec![OutgoingMessage::new("this is not an S3 event")])
        .await
        .unwrap();
    source.put("recipes/r.json", document("1")).await.unwrap();
    source.put("makes/a b+c.json", document("1")).await.unwrap();
    source.put("makes/notes.txt", document("1")).await.unwrap();
    let queue = message_queue::open(&n.jobs).await.unwrap();
    let mut jobs = wait_for_jobs(queue.as_ref(), 2, DEADLINE).await;
    jobs.sort_by(|a, b| a.key.cmp(&b.key));
    let dead = poll_dead_letters(events.as_ref(), 1).await;
    w.stop().await;

    assert_eq!(
        jobs.iter()
            .map(|j| (j.key.as_str(), j.kind))
            .collect::<Vec<_>>(),
        [
            ("makes/a b+c.json", JobKind::Make),
            ("recipes/r.json", JobKind::Recipe)
        ]
    );
    assert!(jobs.iter().all(|j| j.detected_by == Detection::Event));
    let head = source.head("makes/a b+c.json").await.unwrap();
    assert_eq!(jobs[0].etag, head.etag);
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].body, "this is not an S3 event");
    assert!(
        dead[0].reason.contains("not an S3 event notification"),
        "{}",
        dead[0].reason
    );
}

async fn poll_dead_letters(queue: &dyn MessageQueue, n: usize) -> Vec<message_queue::DeadLetter> {
    let start = std::time::Instant::now();
    loop {
        let dead = queue.dead_letters(10).await.expect("dead letters");
        if dead.len() >= n || start.elapsed() > DEADLINE {
            return dead;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
