//! Events mode: S3 sends an `ObjectCreated` notification to an SQS queue for every upload; this
//! consumes them and puts a job on the job queue for each file of the layout. Nothing is listed.
//!
//! A batch of notifications is deleted only after its jobs are on the job queue, so a crash in
//! between sends those jobs again (duplicates the comparison service absorbs), and nothing is
//! lost. A notification that cannot be read goes to the events queue's DLQ with the reason.

use crate::stats::WatcherStats;
use message_queue::{Delivery, MessageQueue, QueueError};
use pipeline_job::{Classified, Detection, JOB_FORMAT_VERSION, Job, KeyLayout, s3_event};
use std::sync::Arc;
use std::time::Duration;

/// Longest long poll (SQS's maximum).
const WAIT: Duration = Duration::from_secs(20);
/// How long a received notification stays hidden; far more than one batch takes.
const VISIBILITY: Duration = Duration::from_secs(60);

pub struct EventConsumer {
    pub events: Arc<dyn MessageQueue>,
    pub jobs: Arc<dyn MessageQueue>,
    pub layout: KeyLayout,
    /// Only notifications for this bucket are turned into jobs (the sender reads only it).
    pub bucket: String,
    pub stats: Arc<WatcherStats>,
    /// Long-poll wait; shorter in tests.
    pub wait: Duration,
}

impl EventConsumer {
    pub fn new(
        events: Arc<dyn MessageQueue>,
        jobs: Arc<dyn MessageQueue>,
        layout: KeyLayout,
        bucket: String,
        stats: Arc<WatcherStats>,
    ) -> Self {
        Self {
            events,
            jobs,
            layout,
            bucket,
            stats,
            wait: WAIT,
        }
    }

    /// Receives one batch of notifications and handles it. Returns the number of jobs sent.
    pub async fn poll_once(&self) -> Result<u64, QueueError> {
        let deliveries = self.receive().await?;
        self.handle(deliveries).await
    }

    /// Waits up to the long-poll time for a batch of notifications.
    pub async fn receive(&self) -> Result<Vec<Delivery>, QueueError> {
        self.events
            .receive(message_queue::MAX_RECEIVE_MESSAGES, self.wait, VISIBILITY)
            .await
    }

    /// Turns a batch of notifications into jobs, sends them, then deletes the notifications.
    pub async fn handle(&self, deliveries: Vec<Delivery>) -> Result<u64, QueueError> {
        if deliveries.is_empty() {
            return Ok(0);
        }
        self.stats.events_received.inc_by(deliveries.len() as u64);
        let detected_at_ms = crate::poll::now_ms();
        let mut jobs = Vec::new();
        let mut done = Vec::new();
        for delivery in deliveries {
            match s3_event::parse(&delivery.body) {
                Ok(notification) => {
                    if notification.test_event {
                        tracing::info!("S3 test event received: notifications are configured");
                    }
                    for created in notification.created {
                        if let Some(job) = self.job(created, detected_at_ms) {
                            jobs.push(job);
                        }
                    }
                    done.push(delivery);
                }
                Err(e) => self.reject(&delivery, &e.to_string()).await,
            }
        }
        let sent = jobs.len() as u64;
        // On failure the notifications are not deleted: they come back after the visibility
        // timeout and are turned into jobs then.
        if let Err(e) = crate::publish::send_jobs(self.jobs.as_ref(), &jobs).await {
            self.stats.send_failures.inc();
            return Err(e);
        }
        for job in &jobs {
            tracing::info!(key = %job.key, etag = %job.etag, kind = job.kind.as_str(), "job queued");
            self.stats.sent(job.kind);
        }
        // One call for the whole receive (up to 10 notifications), not one per notification.
        let receipts: Vec<_> = done.iter().map(|d| d.receipt.clone()).collect();
        for result in self.events.delete_batch(&receipts).await {
            match result {
                Ok(()) | Err(QueueError::StaleReceipt(_)) => {}
                // Comes back and is sent again: a duplicate job, never a lost one.
                Err(e) => tracing::warn!(error = %e, "could not delete a handled notification"),
            }
        }
        Ok(sent)
    }

    fn job(&self, created: s3_event::ObjectCreated, detected_at_ms: i64) -> Option<Job> {
        self.stats.seen(1);
        if created.bucket != self.bucket {
            tracing::warn!(
                bucket = %created.bucket, key = %created.key, watched = %self.bucket,
                "ignoring a notification for another bucket"
            );
            self.stats.ignored_one();
            return None;
        }
        let kind = match self.layout.classify(&created.key) {
            Classified::Job(kind) => kind,
            Classified::Ignored(why) => {
                tracing::info!(key = %created.key, why, "ignoring a file outside the layout");
                self.stats.ignored_one();
                return None;
            }
        };
        Some(Job {
            v: JOB_FORMAT_VERSION,
            kind,
            scheme: "s3".into(),
            bucket: created.bucket,
            key: created.key,
            etag: created.etag,
            size: created.size,
            version_id: created.version_id,
            detected_by: Detection::Event,
            detected_at_ms,
        })
    }

    /// Moves an unreadable notification to the events DLQ. Without a DLQ it stays in the queue
    /// (SQS's redrive policy moves it after its receive count), so it is never dropped.
    async fn reject(&self, delivery: &Delivery, reason: &str) {
        self.stats.events_rejected.inc();
        tracing::error!(message_id = %delivery.message_id, reason, "unreadable S3 notification");
        if let Err(e) = self.events.dead_letter(delivery, reason).await {
            tracing::error!(error = %e, message_id = %delivery.message_id,
                "could not move an unreadable notification to the dead letters");
        }
    }
}
