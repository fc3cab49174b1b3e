//! Builds the sender (queue, object source, comparison channel, admin port) and runs its receive
//! loop: bounded concurrency, the circuit breaker in front of `receive`, full receives (up to
//! one receive's worth of jobs is prefetched, so while they wait for a slot the loop waits for
//! room for ten more; otherwise for up to `receive_linger`), the lease keeper and the delete
//! batcher shared by all jobs, and graceful shutdown. Beside it, the admin port serves
//! the metrics and says ready while the breaker is closed, and the queue depth is read every
//! 15 s for its gauge.
//!
//! Shutdown, in order: report not ready, stop receiving at once (an ongoing long poll is
//! cancelled), stop lingering over deletes and hand back prefetched jobs that have no slot yet;
//! let the jobs in flight finish for up to the grace
//! period; hand back the unfinished ones with delay 0 so another sender takes them immediately;
//! wait for the last deletes to be answered; close the admin port; return.

use crate::backoff::Backoff;
use crate::breaker::{Breaker, Prober};
use crate::config::Settings;
use crate::deletes::DeleteBatcher;
use crate::lease::{self, LeaseKeeper};
use crate::rpc::{self, Comparison};
use crate::stats::{QueueOp, SenderStats};
use crate::worker::Worker;
use admin_http::{AdminServer, Readiness};
use anyhow::Context;
use message_queue::{MAX_RECEIVE_MESSAGES, MessageQueue, QueueError};
use object_source::{ObjectError, ObjectSource};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::Instrument;

/// After the grace period, how long handing back the unfinished jobs may take before the
/// process stops anyway (those messages then come back after their visibility timeout).
const HAND_BACK_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the queue depth gauge is refreshed: each read is a queue call (on SQS, a paid
/// request), and a scrape every 15 s or more needs no fresher value.
const DEPTH_INTERVAL: Duration = Duration::from_secs(15);

/// A sender whose queue and source are open, not yet receiving.
pub struct Application {
    settings: Settings,
    queue: Arc<dyn MessageQueue>,
    source: Arc<dyn ObjectSource>,
    comparison: Comparison,
    stats: Arc<SenderStats>,
    admin: AdminServer,
    readiness: Readiness,
}

impl Application {
    /// Checks the settings, opens the queue (failing if it is not ready, e.g. an SQS queue that
    /// does not exist) and the object source (failing if the bucket or folder is missing), and
    /// sets up a lazily connecting channel: the comparison service need not be up.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        settings.validate()?;
        let queue = message_queue::open(&settings.pipeline.queue)
            .await
            .with_context(|| format!("opening queue {}", settings.pipeline.queue))?;
        Self::build_with_queue(settings, queue).await
    }

    /// As [`build`](Self::build), with a queue opened by the caller instead of the one
    /// `settings.pipeline.queue` names (for example a wrapper that counts the calls, in tests).
    pub async fn build_with_queue(
        settings: Settings,
        queue: Arc<dyn MessageQueue>,
    ) -> anyhow::Result<Self> {
        settings.validate()?;
        let source = object_source::open(&settings.pipeline.source)
            .await
            .with_context(|| format!("opening object source {}", settings.pipeline.source))?;
        match source.list("", None, 1).await {
            Ok(_) => {}
            Err(e @ (ObjectError::NotReady(_) | ObjectError::Invalid(_))) => {
                return Err(e).with_context(|| {
                    format!("object source {} is not usable", settings.pipeline.source)
                });
            }
            // A passing problem, or one a job's own read will report: the jobs wait meanwhile.
            Err(e) => {
                tracing::warn!(source = %settings.pipeline.source, error = %e, "object source does not answer yet")
            }
        }
        let stats = Arc::new(SenderStats::default());
        let mut registry = admin_http::registry();
        stats.register(&mut registry);
        let readiness = Readiness::ready();
        let admin = AdminServer::bind(settings.admin_listen, registry, readiness.clone()).await?;
        let channel = rpc::channel(&settings)?;
        let comparison = Comparison::new(channel, settings.rpc_timeout, stats.clone());
        Ok(Self {
            settings,
            queue,
            source,
            comparison,
            stats,
            admin,
            readiness,
        })
    }

    /// The metrics, live while the sender runs.
    pub fn stats(&self) -> Arc<SenderStats> {
        self.stats.clone()
    }

    /// Where /metrics, /livez and /readyz are served.
    pub fn admin_addr(&self) -> anyhow::Result<SocketAddr> {
        self.admin.local_addr()
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Receives and works on jobs until `shutdown` completes, then shuts down gracefully (see
    /// the module docs). Queue and source failures are logged and waited out, never returned.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
        let admin = self.admin.spawn()?;
        let s = &self.settings;
        let backoff = Backoff::new(s.backoff_base, s.backoff_max);
        let breaker = Arc::new(Breaker::new(backoff));
        let follower = tokio::spawn(follow_breaker(
            breaker.watch(),
            self.readiness.clone(),
            self.stats.clone(),
        ));
        let depth = tokio::spawn(refresh_depth(self.queue.clone(), self.stats.clone()));
        let prober = Prober {
            comparison: self.comparison.clone(),
            source: self.source.clone(),
        };
        let (deletes, deleting) = DeleteBatcher::start(self.queue.clone(), s.delete_linger);
        // One receive takes at most this many jobs, so it is what a full receive waits for.
        let full = s.concurrency.min(MAX_RECEIVE_MESSAGES as usize);
        let slots = Arc::new(Semaphore::new(s.concurrency));
        // Received jobs: those working plus up to one full receive prefetched, waiting for a
        // slot. While some wait, the slots stay busy, so the loop can wait for room for a full
        // receive instead of receiving for each slot that frees up.
        let intake_size = s.concurrency + full;
        let intake = Arc::new(Semaphore::new(intake_size));
        let (start_draining, draining) = watch::channel(false);
        let worker = Arc::new(Worker {
            queue: self.queue.clone(),
            source: self.source.clone(),
            scheme: source_scheme(&s.pipeline.source),
            comparison: self.comparison.clone(),
            breaker: breaker.clone(),
            stats: self.stats.clone(),
            backoff,
            leases: LeaseKeeper::start(self.queue.clone(), s.visibility),
            deletes,
            max_file_bytes: s.max_file_bytes,
            unknown_recipe_attempts: s.unknown_recipe_attempts,
            slots: slots.clone(),
            draining,
        });
        // Jobs received and not yet working (`held`: intake taken by this loop for a receive).
        let waiting = |held: usize| {
            let received = (intake_size - intake.available_permits()).saturating_sub(held);
            let working = s.concurrency - slots.available_permits();
            received.saturating_sub(working)
        };
        let (abandon, abandoned) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let mut queue_failures: u32 = 0;
        tracing::info!(
            queue = %s.pipeline.queue,
            source = %s.pipeline.source,
            bucket = %self.source.bucket(),
            comparison = %s.comparison_url,
            concurrency = s.concurrency,
            "sender started"
        );

        let readiness = self.readiness.clone();
        let shutdown = async move {
            shutdown.await;
            // The breaker must not report ready again while the sender drains.
            follower.abort();
            readiness.set_not_ready("shutting down");
        };
        tokio::pin!(shutdown);
        'receiving: loop {
            reap(&mut tasks);
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                () = breaker.wait_until_closed(&prober) => {}
            }
            // Wait for room for one job, then for more, up to a full receive: for as long as
            // prefetched jobs keep the slots busy, then for at most the linger. A busy sender
            // so receives ten jobs per call instead of one each time a job finishes. Room
            // already free is taken without waiting.
            let first = tokio::select! {
                biased;
                () = &mut shutdown => break,
                permit = intake.clone().acquire_owned() => match permit {
                    Ok(p) => p,
                    Err(_) => break, // closed: never happens, the semaphore is ours
                },
            };
            let mut held = vec![first];
            let linger = tokio::time::sleep(s.receive_linger);
            tokio::pin!(linger);
            while held.len() < full {
                if let Ok(p) = intake.clone().try_acquire_owned() {
                    held.push(p);
                    continue;
                }
                if waiting(held.len()) > 0 {
                    // Prefetched jobs keep every slot busy, so nothing idles while the loop
                    // waits for room. Every change in what waits frees room too (a job that
                    // ends gives back both), so this wakes whenever it must look again; the
                    // linger then starts afresh. (A timer here would spin with a zero linger.)
                    tokio::select! {
                        biased;
                        () = &mut shutdown => break 'receiving,
                        permit = intake.clone().acquire_owned() => match permit {
                            Ok(p) => held.push(p),
                            Err(_) => break,
                        },
                    }
                    linger.as_mut().reset(Instant::now() + s.receive_linger);
                    continue;
                }
                tokio::select! {
                    biased;
                    () = &mut shutdown => break 'receiving,
                    permit = intake.clone().acquire_owned() => match permit {
                        Ok(p) => held.push(p),
                        Err(_) => break,
                    },
                    () = &mut linger => break,
                }
            }
            // A job failing during the long poll opens the breaker: stop polling then, or the
            // poll would pick up the very jobs just handed back, spending their attempts.
            let started = Instant::now();
            let received = tokio::select! {
                biased;
                () = &mut shutdown => break,
                () = breaker.opened() => continue,
                r = self
                    .queue
                    .receive(held.len() as u32, s.wait, s.visibility)
                    .instrument(receive_span(held.len())) => r,
            };
            match received {
                Ok(deliveries) => {
                    queue_failures = 0;
                    let since = lease::lease_start(started);
                    for (delivery, permit) in deliveries.into_iter().zip(held) {
                        self.stats.received.inc();
                        let job = worker
                            .clone()
                            .handle(delivery, since, abandoned.clone(), permit);
                        tasks.spawn(job);
                    }
                }
                Err(e) => {
                    self.stats.queue_error(QueueOp::Receive);
                    queue_failures = queue_failures.saturating_add(1);
                    let pause = backoff.jittered(queue_failures);
                    log_queue_failure(&e, pause);
                    tokio::select! {
                        biased;
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(pause) => {}
                    }
                }
            }
        }

        // Nothing is worth waiting for company any more, and prefetched jobs go back.
        worker.deletes.flush_now();
        start_draining.send_replace(true);
        let in_flight = tasks.len();
        tracing::info!(
            in_flight,
            grace = ?s.shutdown_grace,
            "shutting down: stopped receiving; letting jobs in flight finish"
        );
        let finished = tokio::time::timeout(s.shutdown_grace, drain(&mut tasks))
            .await
            .is_ok();
        if !finished {
            tracing::info!(
                unfinished = tasks.len(),
                "grace period over; handing back unfinished jobs"
            );
            let _ = abandon.send(true);
            if tokio::time::timeout(HAND_BACK_TIMEOUT, drain(&mut tasks))
                .await
                .is_err()
            {
                tracing::warn!(
                    left = tasks.len(),
                    "could not hand back every job in time; they come back after their visibility timeout"
                );
                tasks.abort_all();
                drain(&mut tasks).await;
            }
        }
        // The jobs are gone, and with them every other handle of the delete batcher: it ends
        // once the deletes still in flight are answered.
        drop(worker);
        if tokio::time::timeout(HAND_BACK_TIMEOUT, deleting)
            .await
            .is_err()
        {
            tracing::warn!(
                "the last deletes did not finish in time; those messages come back after their \
                 visibility timeout, as duplicates the comparison service recognises"
            );
        }
        depth.abort();
        admin.stop().await;
        tracing::info!(stats = ?self.stats.snapshot(), "sender stopped");
        Ok(())
    }
}

/// Keeps readiness and the `receiving_paused` gauge in step with the circuit breaker: a sender
/// that cannot reach a dependency is not ready, with the breaker's reason.
async fn follow_breaker(
    mut open: watch::Receiver<Option<String>>,
    readiness: Readiness,
    stats: Arc<SenderStats>,
) {
    loop {
        let why = open.borrow_and_update().clone();
        match why {
            None => {
                readiness.set_ready();
                stats.receiving_paused.set(0);
            }
            Some(why) => {
                readiness.set_not_ready(format!("receiving paused: {why}"));
                stats.receiving_paused.set(1);
            }
        }
        if open.changed().await.is_err() {
            return; // the breaker is gone: the sender is stopping
        }
    }
}

/// Reads the queue depth for its gauge every [`DEPTH_INTERVAL`]; a failed read keeps the last
/// value and is counted.
async fn refresh_depth(queue: Arc<dyn MessageQueue>, stats: Arc<SenderStats>) {
    loop {
        match queue.approximate_depth().await {
            Ok(n) => {
                stats.queue_depth.set(i64::try_from(n).unwrap_or(i64::MAX));
            }
            Err(e) => {
                stats.queue_error(QueueOp::Depth);
                tracing::debug!(error = %e, "reading the queue depth failed");
            }
        }
        tokio::time::sleep(DEPTH_INTERVAL).await;
    }
}

/// The scheme jobs use for this source: `s3` for a bucket, `dir` for a folder (`dir://` and
/// `file://` alike), as the watcher writes them.
fn source_scheme(url: &str) -> &'static str {
    match object_source::parse_url(url) {
        Ok(object_source::Location::S3 { .. }) => "s3",
        _ => "dir",
    }
}

/// Collects finished tasks so the set does not grow, logging any that panicked.
fn reap(tasks: &mut JoinSet<()>) {
    while let Some(result) = tasks.try_join_next() {
        log_join(result);
    }
}

async fn drain(tasks: &mut JoinSet<()>) {
    while let Some(result) = tasks.join_next().await {
        log_join(result);
    }
}

fn log_join(result: Result<(), tokio::task::JoinError>) {
    if let Err(e) = result
        && e.is_panic()
    {
        // The message comes back after its visibility timeout; nothing is lost.
        tracing::error!(error = %e, "a job task panicked");
    }
}

fn log_queue_failure(e: &QueueError, pause: Duration) {
    if e.is_transient() {
        tracing::warn!(error = %e, retry_in = ?pause, "receiving failed; trying again");
    } else {
        // Not transient by its kind, but stopping would not fix it either: keep trying, loudly,
        // so the process stays up for whoever repairs the queue.
        tracing::error!(error = %e, retry_in = ?pause, "receiving failed; trying again");
    }
}

/// One receive call: its own short trace (each job it brings continues its file's trace).
fn receive_span(max: usize) -> tracing::Span {
    tracing::info_span!(
        "jobs receive",
        otel.kind = "consumer",
        messaging.system = telemetry::spans::MESSAGING_QUEUE,
        messaging.operation.type = "receive",
        messaging.operation.name = "receive",
        messaging.batch.message_count = max,
    )
}
