//! Opens the backends a configuration names and runs the chosen detection mode until shutdown,
//! with the admin port beside it: metrics, and readiness following the last pass (not ready
//! until the first one succeeded, nor after one failed).

use crate::config::{Mode, StartFrom, WatchSettings};
use crate::events::EventConsumer;
use crate::poll::{Poller, START_MARKER, ScanError, now_ms};
use crate::seen_cache::SeenCache;
use crate::stats::WatcherStats;
use admin_http::{AdminServer, Readiness};
use anyhow::Context;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Longest pause after repeated failures (listing, ledger or queue unavailable).
const MAX_ERROR_BACKOFF: Duration = Duration::from_secs(30);

pub struct Application {
    stats: Arc<WatcherStats>,
    worker: Worker,
    admin: AdminServer,
    readiness: Readiness,
}

enum Worker {
    Poll {
        poller: Box<Poller>,
        interval: Duration,
    },
    Events(EventConsumer),
}

impl Application {
    /// Opens source, queue and ledger (or events queue), failing with a clear message when one
    /// is missing or misconfigured (`watcher setup` creates them).
    pub async fn build(settings: WatchSettings) -> anyhow::Result<Self> {
        let layout = settings.layout.layout()?;
        let source_url = &settings.pipeline.source;
        let source = object_source::open(source_url)
            .await
            .with_context(|| format!("opening the source {source_url}"))?;
        let queue = message_queue::open(&settings.pipeline.queue)
            .await
            .with_context(|| format!("opening the job queue {}", settings.pipeline.queue))?;
        let stats = Arc::new(WatcherStats::new(settings.mode.into()));
        let scheme = if source_url.starts_with("s3://") {
            "s3"
        } else {
            "dir"
        };
        let worker = match settings.mode {
            Mode::Poll => {
                // The source URL without options: one ledger can serve several watchers.
                let scope = source_url.split('?').next().unwrap_or(source_url);
                let ledger = seen_ledger::open(&settings.ledger, scope)
                    .await
                    .with_context(|| format!("opening the ledger {}", settings.ledger))?;
                let start_from_ms = match settings.start_from {
                    StartFrom::Beginning => None,
                    StartFrom::Now => {
                        // Kept in the ledger: a restart must not skip what arrived meanwhile.
                        let stored = ledger
                            .marker_or_insert(START_MARKER, &now_ms().to_string())
                            .await
                            .context("reading the start marker")?;
                        Some(stored.parse::<i64>().with_context(|| {
                            format!("the ledger's {START_MARKER} marker {stored:?} is not a time")
                        })?)
                    }
                };
                let replica_id = settings.effective_replica_id();
                tracing::info!(source = %source_url, replica = %replica_id, ?start_from_ms,
                    "watching by polling");
                Worker::Poll {
                    poller: Box::new(Poller {
                        source,
                        queue,
                        ledger,
                        layout,
                        scheme: scheme.into(),
                        replica_id,
                        lease: settings.claim_lease,
                        settle: settings.effective_settle(),
                        start_from_ms,
                        page_size: settings.page_size,
                        cache: SeenCache::new(settings.cache_entries),
                        stats: stats.clone(),
                        stop: None,
                    }),
                    interval: settings.effective_poll_interval(),
                }
            }
            Mode::Events => {
                anyhow::ensure!(
                    scheme == "s3",
                    "events mode needs an S3 bucket as the source (S3 sends the notifications); \
                     a folder is watched in poll mode"
                );
                let url = settings.events_queue.as_deref().context(
                    "events mode needs --events-queue / WATCHER_EVENTS_QUEUE_URL: the SQS queue \
                     S3 sends notifications to",
                )?;
                let events = message_queue::open(url)
                    .await
                    .with_context(|| format!("opening the events queue {url}"))?;
                tracing::info!(source = %source_url, events = %url, "watching S3 event notifications");
                let bucket = source.bucket().to_string();
                Worker::Events(EventConsumer::new(
                    events,
                    queue,
                    layout,
                    bucket,
                    stats.clone(),
                ))
            }
        };
        let mut registry = admin_http::registry();
        stats.register(&mut registry);
        let readiness = Readiness::not_ready("first pass pending");
        let admin = AdminServer::bind(settings.admin_listen, registry, readiness.clone()).await?;
        Ok(Self {
            stats,
            worker,
            admin,
            readiness,
        })
    }

    /// The metrics, live while the watcher runs.
    pub fn stats(&self) -> Arc<WatcherStats> {
        self.stats.clone()
    }

    /// Where /metrics, /livez and /readyz are served.
    pub fn admin_addr(&self) -> anyhow::Result<SocketAddr> {
        self.admin.local_addr()
    }

    /// Watches until `shutdown` completes. A pass or batch under way when it does is finished
    /// page by page up to the current page, so no claim is left to expire needlessly.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
        let admin = self.admin.spawn()?;
        let (stop_tx, stop) = tokio::sync::watch::channel(false);
        let readiness = self.readiness.clone();
        let work = async move {
            match self.worker {
                Worker::Poll { poller, interval } => {
                    poll_loop(*poller, interval, readiness, stop).await
                }
                Worker::Events(consumer) => events_loop(consumer, readiness, stop).await,
            }
        };
        let mut work = std::pin::pin!(work);
        tokio::select! {
            () = &mut work => {
                admin.stop().await;
                return Ok(());
            }
            () = shutdown => {}
        }
        let _ = stop_tx.send(true);
        self.readiness.set_not_ready("shutting down");
        work.await;
        // The pass that finished during shutdown may have said ready again.
        self.readiness.set_not_ready("shutting down");
        admin.stop().await;
        tracing::info!("watcher stopped");
        Ok(())
    }
}

async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Sleeps for `d` unless told to stop first; returns false when stopping.
async fn pause(d: Duration, stop: &mut tokio::sync::watch::Receiver<bool>) -> bool {
    tokio::select! {
        () = tokio::time::sleep(d) => true,
        () = stopped(stop) => false,
    }
}

fn error_backoff(failures: u32) -> Duration {
    let secs = 1u64 << failures.min(5);
    Duration::from_secs(secs).min(MAX_ERROR_BACKOFF)
}

async fn poll_loop(
    mut poller: Poller,
    interval: Duration,
    readiness: Readiness,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut failures = 0u32;
    poller.stop = Some(stop.clone());
    loop {
        let wait = match poller.scan().await {
            Ok(sent) => {
                failures = 0;
                readiness.set_ready();
                if sent > 0 {
                    tracing::debug!(sent, "pass done");
                }
                interval
            }
            Err(e) => {
                failures += 1;
                poller.stats.pass_failed();
                readiness.set_not_ready(format!("last pass failed: {e}"));
                log_scan_error(&e, failures);
                interval.max(error_backoff(failures))
            }
        };
        if *stop.borrow() || !pause(wait, &mut stop).await {
            return;
        }
    }
}

fn log_scan_error(e: &ScanError, failures: u32) {
    if e.is_transient() {
        tracing::warn!(error = %e, failures, "pass failed; retrying");
    } else {
        tracing::error!(error = %e, failures, "pass failed; retrying, but this needs attention");
    }
}

async fn events_loop(
    consumer: EventConsumer,
    readiness: Readiness,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut failures = 0u32;
    loop {
        // Only the wait for notifications is cut short by a shutdown; a batch in hand is
        // finished, so its notifications are deleted once their jobs are sent.
        let received = tokio::select! {
            r = consumer.receive() => r,
            () = stopped(&mut stop) => return,
        };
        let outcome = match received {
            Ok(deliveries) => consumer.handle(deliveries).await,
            Err(e) => Err(e),
        };
        match outcome {
            Ok(_) => {
                failures = 0;
                consumer.stats.pass_done();
                readiness.set_ready();
            }
            Err(e) => {
                failures += 1;
                consumer.stats.pass_failed();
                readiness.set_not_ready(format!("last batch of notifications failed: {e}"));
                tracing::warn!(error = %e, failures, "handling notifications failed; retrying");
                if !pause(error_backoff(failures), &mut stop).await {
                    return;
                }
            }
        }
    }
}
