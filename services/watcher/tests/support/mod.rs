//! Runs a real watcher in-process for a test, on a temporary folder, embedded queue and ledger
//! (or on the emulator's S3/SQS/DynamoDB), and reads back the jobs it queued.
#![allow(dead_code)] // each test binary uses a different part of this helper

use message_queue::MessageQueue;
use object_source::ObjectSource;
use pipeline_job::Job;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use watcher::config::WatchSettings;
use watcher::startup::Application;
use watcher::stats::WatcherStats;

pub struct RunningWatcher {
    pub stats: Arc<WatcherStats>,
    /// The admin port: /metrics, /livez, /readyz.
    pub admin: std::net::SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl RunningWatcher {
    /// The admin port's answer to `path`: status and body.
    pub async fn get(&self, path: &str) -> (u16, String) {
        let got = admin_http::scrape::get(self.admin, path)
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e:#}"));
        (got.status, got.body)
    }

    /// Stops it gracefully and waits for it to end.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await
                .expect("watcher task")
                .expect("watcher ends cleanly");
        }
    }
}

pub async fn spawn_watcher(settings: WatchSettings) -> RunningWatcher {
    let app = Application::build(settings).await.expect("watcher starts");
    let stats = app.stats();
    let admin = app.admin_addr().expect("admin address");
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    RunningWatcher {
        stats,
        admin,
        stop: Some(stop),
        task: Some(task),
    }
}

/// A folder bucket, an embedded queue and ledger in a temporary directory.
pub struct LocalPipeline {
    pub dir: tempfile::TempDir,
    pub source_url: String,
    pub queue_url: String,
    pub ledger_url: String,
    pub source: Arc<dyn ObjectSource>,
    pub queue: Arc<dyn MessageQueue>,
}

impl LocalPipeline {
    pub async fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let source_url = format!("dir://{}/inbox", dir.path().display());
        let queue_url = format!("sqlite://{}/queue.db?queue=jobs", dir.path().display());
        let ledger_url = format!("sqlite://{}/watcher.db", dir.path().display());
        object_source::create_bucket(&source_url)
            .await
            .expect("create folder");
        Self {
            source: object_source::open(&source_url).await.expect("open folder"),
            queue: message_queue::open(&queue_url).await.expect("open queue"),
            dir,
            source_url,
            queue_url,
            ledger_url,
        }
    }

    /// Fast settings for tests: poll every 100 ms, no settle time (puts are atomic renames).
    pub fn settings(&self) -> WatchSettings {
        let mut s = WatchSettings::new(&self.source_url, &self.queue_url);
        s.ledger = self.ledger_url.clone();
        s.poll_interval = Some(Duration::from_millis(100));
        s.settle = Some(Duration::ZERO);
        s
    }
}

/// A small valid document; what is in it does not matter to the watcher.
pub fn document(id: &str) -> Vec<u8> {
    format!(r#"{{"recipeName":"R{id}","recipeId":"{id}","ingredients":[],"steps":[]}}"#)
        .into_bytes()
}

/// Receives and deletes every job on the queue until it has been empty for `quiet`.
pub async fn drain_jobs(queue: &dyn MessageQueue, quiet: Duration) -> Vec<Job> {
    let mut jobs = Vec::new();
    let mut last = Instant::now();
    while last.elapsed() < quiet {
        let batch = queue
            .receive(10, Duration::from_millis(200), Duration::from_secs(60))
            .await
            .expect("receive jobs");
        if !batch.is_empty() {
            last = Instant::now();
        }
        for d in batch {
            jobs.push(Job::from_json(&d.body).expect("a job"));
            queue.delete(&d.receipt).await.expect("delete job");
        }
    }
    jobs
}

/// Drains jobs until `n` arrived (or the deadline passes), then for `quiet` more.
pub async fn wait_for_jobs(queue: &dyn MessageQueue, n: usize, deadline: Duration) -> Vec<Job> {
    let start = Instant::now();
    let mut jobs = Vec::new();
    while jobs.len() < n && start.elapsed() < deadline {
        jobs.extend(drain_jobs(queue, Duration::from_millis(300)).await);
    }
    jobs.extend(drain_jobs(queue, Duration::from_secs(1)).await);
    jobs
}
