//! One delivery from start to finish: parse the job, read the file, validate it, submit it, and
//! settle the message with the queue (delete, release for a retry, or dead-letter with a
//! reason), while the lease keeper (`lease.rs`) keeps the message hidden from other senders.
//! Deletes go through the delete batcher (`deletes.rs`), which shares one queue call among jobs
//! that finish around the same time.
//!
//! The rule that keeps "nothing lost": a message is deleted only after the comparison service
//! accepted the job, and dead-lettered only for failures that cannot go away by themselves.
//! The rule that keeps "nothing counted twice": every submission carries an idempotency key
//! naming the file version actually read, so a redelivery or a duplicate job is a replay the
//! service recognises.

use crate::backoff::Backoff;
use crate::breaker::{Breaker, Suspect};
use crate::deletes::DeleteBatcher;
use crate::document;
use crate::lease::LeaseKeeper;
use crate::outcome::{self, Failure};
use crate::rpc::{Accepted, Comparison};
use crate::stats::{DeadReason, InFlight, QueueOp, RetryReason, SenderStats};
use message_queue::{Delivery, MessageQueue, QueueError};
use object_source::{ObjectError, ObjectSource};
use pipeline_job::{Job, JobKind};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;
use tracing::Instrument;

/// Tries of one queue call (delete, release, dead-letter) that fails transiently, before the
/// message is left to its visibility timeout.
const SETTLE_TRIES: u32 = 3;

/// What the job tasks share.
pub struct Worker {
    pub queue: Arc<dyn MessageQueue>,
    pub source: Arc<dyn ObjectSource>,
    /// How jobs name this sender's source: `s3`, or `dir` for a local folder (as the watcher
    /// writes them).
    pub scheme: &'static str,
    pub comparison: Comparison,
    pub breaker: Arc<Breaker>,
    pub stats: Arc<SenderStats>,
    pub backoff: Backoff,
    /// Keeps the messages of jobs in flight hidden.
    pub leases: LeaseKeeper,
    /// Deletes the messages of finished jobs, several per queue call.
    pub deletes: DeleteBatcher,
    pub max_file_bytes: u64,
    pub unknown_recipe_attempts: u32,
    /// The concurrency limit: a received job works only while it holds one of these.
    pub slots: Arc<Semaphore>,
    /// Turns true at shutdown: jobs still waiting for a slot are handed back, not started.
    pub draining: watch::Receiver<bool>,
}

/// What to do with a delivery once its job was tried.
#[derive(Debug)]
enum Verdict {
    /// Accepted by the comparison service: delete the message.
    Done { job: Box<Job>, accepted: Accepted },
    /// Can never succeed: move it to the dead letters with this reason.
    DeadLetter {
        reason: String,
        kind: Option<JobKind>,
        class: DeadReason,
    },
    /// Try again later: release it with this delay.
    Retry {
        delay: Duration,
        reason: String,
        class: RetryReason,
    },
}

/// How a job task ended before settling.
enum Ending {
    Worked(Verdict),
    /// The lease keeper found the receipt stale: another consumer holds the message now.
    LeaseLost(QueueError),
    /// Shutdown grace ran out.
    Abandoned,
}

impl Worker {
    /// Works on one delivery. `intake` is its place among the jobs received (working, or
    /// prefetched and waiting for a slot); the job waits for one of `slots` (the concurrency
    /// limit) with its lease kept, then works. `received` is when its visibility timeout
    /// started (`lease::lease_start`). Returns when the message was settled, dropped as stale,
    /// or handed back: at shutdown before it got a slot, or because `abandon` turned true.
    pub async fn handle(
        self: Arc<Self>,
        delivery: Delivery,
        received: Instant,
        mut abandon: watch::Receiver<bool>,
        intake: OwnedSemaphorePermit,
    ) {
        // Kept until this function returns: waiting for a slot and settling may take a while,
        // and the message must stay hidden meanwhile.
        let mut lease = self.leases.hold(&delivery, received);
        // The job continues the trace its watcher started (the context came with the message).
        let span = job_span(&delivery);
        telemetry::propagate::continue_from(&span, &delivery.attributes);
        let mut draining = self.draining.clone();
        let slot = tokio::select! {
            biased;
            _ = draining.wait_for(|draining| *draining) => Err(None),
            lost = lease.lost() => Err(Some(lost)),
            slot = self.slots.clone().acquire_owned() => slot.map_err(|_| None),
        };
        let slot = match slot {
            Ok(slot) => slot,
            Err(lost) => {
                async {
                    match lost {
                        Some(e) => self.dropped_as_stale(&delivery, QueueOp::Extend, &e),
                        None => self.hand_back(&delivery).await,
                    }
                }
                .instrument(span)
                .await;
                return;
            }
        };
        let permits = (slot, intake);
        let _in_flight = InFlight::enter(&self.stats.in_flight);
        let ending = tokio::select! {
            verdict = self.process(&delivery).instrument(span.clone()) => Ending::Worked(verdict),
            lost = lease.lost() => Ending::LeaseLost(lost),
            _ = abandon.wait_for(|abandon| *abandon) => Ending::Abandoned,
        };
        async {
            match ending {
                Ending::Worked(verdict) => {
                    // The work is done; waiting for the (batched) delete needs no slot, and
                    // keeping it would make the delete linger cost throughput.
                    if matches!(verdict, Verdict::Done { .. }) {
                        drop(permits);
                    }
                    self.settle(&delivery, verdict).await
                }
                Ending::LeaseLost(e) => self.dropped_as_stale(&delivery, QueueOp::Extend, &e),
                Ending::Abandoned => self.hand_back(&delivery).await,
            }
        }
        .instrument(span)
        .await
    }

    /// Decides what the delivery deserves. Never touches the queue.
    async fn process(&self, delivery: &Delivery) -> Verdict {
        let attempt = delivery.receive_count;
        // 1. The message must be a job.
        let job = match Job::from_json(&delivery.body) {
            Ok(job) => job,
            Err(e) => {
                return Verdict::DeadLetter {
                    reason: e.to_string(),
                    kind: None,
                    class: DeadReason::NotAJob,
                };
            }
        };
        self.stats.queue_lag(&job);
        let dead = |class: DeadReason, reason: String| Verdict::DeadLetter {
            reason,
            kind: Some(job.kind),
            class,
        };
        let uri = job.object_uri();
        let span = tracing::Span::current();
        span.record("recipe_mesh.object.uri", uri.as_str());
        span.record("recipe_mesh.job.kind", job.kind.as_str());
        // 2. ... about this sender's bucket (a job for another bucket would read the wrong file).
        if job.bucket != self.source.bucket() || job.scheme != self.scheme {
            return dead(
                DeadReason::ForeignBucket,
                format!(
                    "job is for bucket {:?} ({}), but this sender reads bucket {:?} ({})",
                    job.bucket,
                    job.scheme,
                    self.source.bucket(),
                    self.scheme
                ),
            );
        }
        // 3. Read the file, never more than the limit.
        let read = tracing::info_span!("object read", recipe_mesh.object.key = %job.key);
        let object = match self
            .source
            .get(&job.key, self.max_file_bytes)
            .instrument(read)
            .await
        {
            Ok(object) => object,
            Err(ObjectError::TooLarge { size, limit }) => {
                return dead(
                    DeadReason::TooLarge,
                    format!("{uri}: file is {size} bytes, over the {limit}-byte limit"),
                );
            }
            Err(ObjectError::NotFound(_)) => {
                return dead(
                    DeadReason::ObjectMissing,
                    format!("{uri}: object no longer exists"),
                );
            }
            Err(e @ ObjectError::InvalidKey(_)) => {
                return dead(DeadReason::InvalidKey, format!("{uri}: {e}"));
            }
            // Unavailable, and also NotReady/Internal/Invalid: a missing bucket, wrong
            // credentials or region are the deployment's problem, not the file's; the job waits
            // (with receiving paused) until they are fixed rather than being dead-lettered.
            Err(e) => {
                let reason = format!("reading {uri}: {e}");
                if e.is_retryable() {
                    tracing::warn!(key = %job.key, error = %e, "object source unavailable");
                } else {
                    tracing::error!(key = %job.key, error = %e, "object source fails; check its configuration");
                }
                self.breaker.trip(
                    Suspect::Source {
                        key: job.key.clone(),
                    },
                    None,
                    &reason,
                );
                return Verdict::Retry {
                    delay: self.backoff.jittered(attempt),
                    reason,
                    class: RetryReason::SourceUnavailable,
                };
            }
        };
        if object.meta.etag != job.etag {
            tracing::info!(
                key = %job.key,
                job_etag = %job.etag,
                read_etag = %object.meta.etag,
                "file changed since it was detected; submitting the version read"
            );
        }
        // 4. Parse and validate.
        let doc = match document::parse(&object.bytes) {
            Ok(doc) => doc,
            Err(why) => {
                return dead(
                    DeadReason::InvalidDocument,
                    format!("{uri}: not a valid {} document: {why}", job.kind.as_str()),
                );
            }
        };
        // 5. Submit, keyed by the version actually read.
        let key = job.idempotency_key(&object.meta.etag);
        let wire = recipe_proto::convert::recipe_to_pb(&doc);
        let result = match job.kind {
            JobKind::Recipe => self.comparison.update_recipe(wire, key).await,
            JobKind::Make => self.comparison.record_make(wire, key, &job).await,
        };
        // 6. Classify.
        let status = match result {
            Ok(accepted) => {
                self.breaker.record_success();
                return Verdict::Done {
                    job: Box::new(job),
                    accepted,
                };
            }
            Err(status) => status,
        };
        match outcome::classify(job.kind, &status) {
            Failure::Permanent(reason) => {
                // The service answered, so it is up.
                self.breaker.record_success();
                dead(
                    DeadReason::Refused,
                    format!(
                        "{uri}: the comparison service refused the {}: {reason}",
                        job.kind.as_str()
                    ),
                )
            }
            Failure::UnknownRecipe(reason) => {
                self.breaker.record_success();
                if attempt >= self.unknown_recipe_attempts {
                    dead(
                        DeadReason::UnknownRecipe,
                        format!(
                            "{uri}: make of unknown recipe {:?} after {attempt} attempts ({reason})",
                            doc.recipe_id
                        ),
                    )
                } else {
                    Verdict::Retry {
                        delay: self.backoff.jittered(attempt),
                        reason: format!(
                            "recipe {:?} is not known yet (attempt {attempt} of {}): {reason}",
                            doc.recipe_id, self.unknown_recipe_attempts
                        ),
                        class: RetryReason::UnknownRecipe,
                    }
                }
            }
            Failure::Transient {
                reason,
                retry_after,
            } => {
                self.breaker.trip(Suspect::Comparison, retry_after, &reason);
                let delay = match retry_after {
                    Some(hint) => self.backoff.server_hint(hint),
                    None => self.backoff.jittered(attempt),
                };
                Verdict::Retry {
                    delay,
                    reason,
                    class: RetryReason::ComparisonUnavailable,
                }
            }
        }
    }

    /// Tells the queue the verdict, counts and logs it.
    async fn settle(&self, delivery: &Delivery, verdict: Verdict) {
        let attempt = delivery.receive_count;
        match verdict {
            Verdict::Done { job, accepted } => {
                self.stats.processed(job.kind, accepted.wrote_nothing());
                match &accepted {
                    Accepted::Recipe { version, changed } => tracing::info!(
                        key = %job.key,
                        kind = "recipe",
                        outcome = if *changed { "written" } else { "unchanged" },
                        recipe_version = version,
                        attempt,
                        "job done"
                    ),
                    Accepted::Make {
                        make_id,
                        recipe_version,
                        duplicate,
                    } => tracing::info!(
                        key = %job.key,
                        kind = "make",
                        outcome = if *duplicate { "duplicate" } else { "recorded" },
                        make_id = %make_id,
                        recipe_version,
                        attempt,
                        "job done"
                    ),
                }
                if let Err(Some(_)) = self
                    .with_tries(QueueOp::Delete, delivery, || {
                        self.deletes.delete(&delivery.receipt)
                    })
                    .await
                {
                    // The job is done; the redelivery will be a replay the service recognises.
                    tracing::warn!(key = %job.key, "a finished job could not be deleted; its redelivery will be a duplicate");
                }
            }
            Verdict::DeadLetter {
                reason,
                kind,
                class,
            } => {
                match self
                    .with_tries(QueueOp::DeadLetter, delivery, || {
                        self.queue.dead_letter(delivery, &reason)
                    })
                    .await
                {
                    Ok(()) => {
                        self.stats.dead_lettered(kind, class);
                        tracing::error!(
                            message_id = %delivery.message_id,
                            kind = kind.map(JobKind::as_str).unwrap_or("not a job"),
                            attempt,
                            reason = %reason,
                            "job dead-lettered"
                        );
                    }
                    Err(Some(e)) => {
                        // Not lost: it comes back after its visibility timeout (or, with the
                        // queue's redrive policy, ends in the dead letters without our reason).
                        tracing::error!(
                            message_id = %delivery.message_id,
                            reason = %reason,
                            error = %e,
                            "could not dead-letter a job; it will be delivered again"
                        );
                    }
                    Err(None) => {}
                }
            }
            Verdict::Retry {
                delay,
                reason,
                class,
            } => {
                if self
                    .with_tries(QueueOp::Release, delivery, || {
                        self.queue.release(&delivery.receipt, delay)
                    })
                    .await
                    .is_ok()
                {
                    self.stats.retried(class);
                    tracing::warn!(
                        message_id = %delivery.message_id,
                        attempt,
                        retry_in = ?delay,
                        reason = %reason,
                        "job will be retried"
                    );
                }
            }
        }
    }

    /// Hands an unfinished job back at shutdown, visible at once for another sender.
    async fn hand_back(&self, delivery: &Delivery) {
        if self
            .with_tries(QueueOp::Release, delivery, || {
                self.queue.release(&delivery.receipt, Duration::ZERO)
            })
            .await
            .is_ok()
        {
            self.stats.released_at_shutdown.inc();
            tracing::info!(message_id = %delivery.message_id, "unfinished job handed back at shutdown");
        }
    }

    /// Runs one queue call, trying again after a short pause while it fails transiently. A stale
    /// receipt is counted and logged here and comes back as `Err(None)`; every other failed call
    /// is counted here, and the last one logged by the caller (`Err(Some(e))`).
    async fn with_tries<F, Fut>(
        &self,
        what: QueueOp,
        delivery: &Delivery,
        mut call: F,
    ) -> Result<(), Option<QueueError>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<(), QueueError>>,
    {
        let mut tries = 0;
        loop {
            tries += 1;
            match call().await {
                Ok(()) => return Ok(()),
                Err(e @ QueueError::StaleReceipt(_)) => {
                    self.dropped_as_stale(delivery, what, &e);
                    return Err(None);
                }
                Err(e) if e.is_transient() && tries < SETTLE_TRIES => {
                    self.stats.queue_error(what);
                    tracing::warn!(message_id = %delivery.message_id, error = %e, "queue {} failed; trying again", what.as_str());
                    tokio::time::sleep(self.backoff.jittered(tries)).await;
                }
                Err(e) => {
                    self.stats.queue_error(what);
                    tracing::error!(message_id = %delivery.message_id, error = %e, "queue {} failed; the message comes back after its visibility timeout", what.as_str());
                    return Err(Some(e));
                }
            }
        }
    }

    fn dropped_as_stale(&self, delivery: &Delivery, what: QueueOp, e: &QueueError) {
        self.stats.stale(what);
        tracing::warn!(
            message_id = %delivery.message_id,
            attempt = delivery.receive_count,
            error = %e,
            "{}: another consumer holds this job now; dropping it",
            what.as_str()
        );
    }
}

/// The consumer span of one delivery, under the trace of the file it names.
fn job_span(delivery: &Delivery) -> tracing::Span {
    tracing::info_span!(
        "job process",
        otel.kind = "consumer",
        messaging.system = telemetry::spans::MESSAGING_QUEUE,
        messaging.operation.type = "process",
        messaging.operation.name = "process",
        messaging.message.id = %delivery.message_id,
        recipe_mesh.receive_count = delivery.receive_count,
        recipe_mesh.job.kind = tracing::field::Empty,
        recipe_mesh.object.uri = tracing::field::Empty,
    )
}
