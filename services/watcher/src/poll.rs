//! Poll mode: list the recipes and makes prefixes page by page, and put a job on the queue for
//! every file version not sent before.
//!
//! Per page (at most 1000 objects, the only listing held in memory):
//! 1. classify keys by the layout, drop files too fresh to be whole (settle time) and, when
//!    starting from now, files older than the first start;
//! 2. drop versions the in-memory [`SeenCache`] knows are settled, then ask the ledger about
//!    the rest (one batched read);
//! 3. claim the unsettled versions in the ledger for this replica (a lease, so a second
//!    replica skips them and a dead replica's claims expire);
//! 4. send the jobs in batches, then mark them sent. If the send fails the claims are given
//!    back, so the next pass (here or in another replica) sends them.
//!
//! A crash after sending and before marking leaves the claims to expire and the files to be
//! sent again: a duplicate job, which the comparison service's idempotency keys absorb. A file
//! is therefore never lost and never recorded twice.

use crate::seen_cache::SeenCache;
use crate::stats::WatcherStats;
use message_queue::MessageQueue;
use object_source::{ObjectMeta, ObjectSource};
use pipeline_job::{Classified, Detection, JOB_FORMAT_VERSION, Job, JobKind, KeyLayout};
use seen_ledger::{ObjectVersion, SeenLedger};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Ledger marker holding when the watcher first started, for `--start-from now`.
pub const START_MARKER: &str = "start-from-ms";
/// With `--start-from now`, files modified up to this long before the first start are still
/// sent: modification times come from another clock (S3's, or the file system's coarse one)
/// and S3 listings round them down to the second, so a file written just after the start
/// could otherwise look older and be skipped. Sending a few extra is better than losing one.
pub const START_MARGIN_MS: i64 = 2_000;

pub struct Poller {
    pub source: Arc<dyn ObjectSource>,
    pub queue: Arc<dyn MessageQueue>,
    pub ledger: Arc<dyn SeenLedger>,
    pub layout: KeyLayout,
    /// `s3` or `dir`, for the jobs' object URIs.
    pub scheme: String,
    pub replica_id: String,
    pub lease: Duration,
    pub settle: Duration,
    /// Files last modified before this (ms since the epoch) are not sent.
    pub start_from_ms: Option<i64>,
    pub page_size: u32,
    pub cache: SeenCache,
    pub stats: Arc<WatcherStats>,
    /// When set and true, a pass ends after the page in hand (graceful shutdown).
    pub stop: Option<tokio::sync::watch::Receiver<bool>>,
}

/// What went wrong in a pass; the pass is retried after the poll interval either way.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("listing {prefix:?}: {source}")]
    List {
        prefix: String,
        source: object_source::ObjectError,
    },
    #[error("ledger: {0}")]
    Ledger(#[from] seen_ledger::LedgerError),
    #[error("sending jobs: {0}")]
    Queue(#[from] message_queue::QueueError),
}

impl ScanError {
    /// True when waiting and trying again is all there is to do.
    pub fn is_transient(&self) -> bool {
        match self {
            ScanError::List { source, .. } => source.is_retryable(),
            ScanError::Ledger(e) => e.is_transient(),
            ScanError::Queue(e) => e.is_transient(),
        }
    }
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Poller {
    /// One pass over both prefixes. Returns the number of jobs sent.
    pub async fn scan(&mut self) -> Result<u64, ScanError> {
        let mut sent = 0;
        let prefixes: Vec<String> = self
            .layout
            .prefixes()
            .into_iter()
            .map(str::to_string)
            .collect();
        for prefix in prefixes {
            let mut continuation: Option<String> = None;
            loop {
                let page = self
                    .source
                    .list(&prefix, continuation.as_deref(), self.page_size)
                    .await
                    .map_err(|source| ScanError::List {
                        prefix: prefix.clone(),
                        source,
                    })?;
                sent += self.handle_page(page.objects).await?;
                if self.stop.as_ref().is_some_and(|s| *s.borrow()) {
                    return Ok(sent);
                }
                match page.next {
                    Some(next) => continuation = Some(next),
                    None => break,
                }
            }
        }
        self.stats.pass_done();
        Ok(sent)
    }

    async fn handle_page(&mut self, objects: Vec<ObjectMeta>) -> Result<u64, ScanError> {
        self.stats.seen(objects.len() as u64);
        let now = now_ms();
        let settle_ms = i64::try_from(self.settle.as_millis()).unwrap_or(i64::MAX);
        let mut candidates: Vec<(JobKind, ObjectMeta)> = Vec::new();
        for object in objects {
            if self.cache.contains(&object.key, &object.etag) {
                continue;
            }
            let kind = match self.layout.classify(&object.key) {
                Classified::Job(kind) => kind,
                Classified::Ignored(why) => {
                    tracing::info!(key = %object.key, why, "ignoring a file outside the layout");
                    self.stats.ignored_one();
                    // Remembered so the line is logged once per version, not once per pass.
                    self.cache.insert(&object.key, &object.etag);
                    continue;
                }
            };
            if self
                .start_from_ms
                .is_some_and(|start| object.last_modified_ms < start - START_MARGIN_MS)
            {
                self.cache.insert(&object.key, &object.etag);
                continue;
            }
            if now.saturating_sub(object.last_modified_ms) < settle_ms {
                // Possibly still being written; the next pass looks again.
                continue;
            }
            candidates.push((kind, object));
        }
        if candidates.is_empty() {
            return Ok(0);
        }

        let versions: Vec<ObjectVersion> = candidates.iter().map(|(_, o)| version(o)).collect();
        let settled = self.ledger.settled(&versions).await?;
        let mut open = Vec::new();
        for ((kind, object), settled) in candidates.into_iter().zip(settled) {
            if settled {
                self.cache.insert(&object.key, &object.etag);
            } else {
                open.push((kind, object));
            }
        }
        if open.is_empty() {
            return Ok(0);
        }

        let versions: Vec<ObjectVersion> = open.iter().map(|(_, o)| version(o)).collect();
        let won = self
            .ledger
            .claim(&versions, &self.replica_id, self.lease)
            .await?;
        let mut mine = Vec::new();
        let mut claimed = Vec::new();
        for (((kind, object), v), won) in open.into_iter().zip(versions).zip(won) {
            if won {
                mine.push((kind, object));
                claimed.push(v);
            } else {
                self.stats.claimed_elsewhere.inc();
            }
        }
        if mine.is_empty() {
            return Ok(0);
        }

        let detected_at_ms = now_ms();
        let jobs: Vec<Job> = mine
            .iter()
            .map(|(kind, object)| self.job(*kind, object, detected_at_ms))
            .collect();
        if let Err(e) = crate::publish::send_jobs(self.queue.as_ref(), &jobs).await {
            self.stats.send_failures.inc();
            if let Err(release) = self.ledger.release(&claimed, &self.replica_id).await {
                // The claims expire after the lease instead; the files are only delayed.
                tracing::warn!(error = %release, "could not give back claims after a failed send");
            }
            return Err(e.into());
        }
        if let Err(e) = self.ledger.mark_sent(&claimed).await {
            // The jobs are on the queue. Unmarked claims expire and the files are sent once
            // more; the comparison service recognises the repeat by its idempotency key.
            tracing::warn!(error = %e, jobs = claimed.len(), "jobs sent but not marked in the ledger");
            return Err(e.into());
        }
        for (kind, object) in &mine {
            self.cache.insert(&object.key, &object.etag);
            tracing::info!(key = %object.key, etag = %object.etag, kind = kind.as_str(), "job queued");
            self.stats.sent(*kind);
        }
        Ok(mine.len() as u64)
    }

    fn job(&self, kind: JobKind, object: &ObjectMeta, detected_at_ms: i64) -> Job {
        Job {
            v: JOB_FORMAT_VERSION,
            kind,
            scheme: self.scheme.clone(),
            bucket: self.source.bucket().to_string(),
            key: object.key.clone(),
            etag: object.etag.clone(),
            size: object.size,
            version_id: object.version_id.clone(),
            detected_by: Detection::Poll,
            detected_at_ms,
        }
    }
}

fn version(object: &ObjectMeta) -> ObjectVersion {
    ObjectVersion {
        key: object.key.clone(),
        etag: object.etag.clone(),
    }
}
