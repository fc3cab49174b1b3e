//! What the sender did, as Prometheus metrics (`recipe_mesh_sender_…`, listed in
//! `docs/metrics.md`) served on the admin port. They are also the sender's only counters: tests
//! and the last log line read them back through [`SenderStats::snapshot`], so every event is
//! counted once, in one place.
//!
//! Labels come from the enums below, never from a job's key or id, so the number of series is
//! small and fixed.

use admin_http::buckets;
use pipeline_job::{Job, JobKind};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

admin_http::label_values! {
    /// What a job is about; `unknown` when the message is not a job at all.
    pub enum Kind { Recipe => "recipe", Make => "make", Unknown => "unknown" }
}

admin_http::label_values! {
    /// How the comparison service took an accepted job.
    pub enum Outcome {
        /// Written now: a new make, or a new recipe (version).
        Recorded => "recorded",
        /// A make whose idempotency key was recorded before: nothing written.
        Duplicate => "duplicate",
        /// A recipe equal to its latest version (or a replay): nothing written.
        Unchanged => "unchanged",
    }
}

admin_http::label_values! {
    /// Why a job was handed back for a later attempt.
    pub enum RetryReason {
        /// The comparison service failed or did not answer (UNAVAILABLE, deadline, …).
        ComparisonUnavailable => "comparison_unavailable",
        /// A make of a recipe the service does not know yet.
        UnknownRecipe => "unknown_recipe",
        /// The bucket or folder could not be read.
        SourceUnavailable => "source_unavailable",
    }
}

admin_http::label_values! {
    /// Why a job was moved to the dead letters.
    pub enum DeadReason {
        NotAJob => "not_a_job",
        ForeignBucket => "foreign_bucket",
        TooLarge => "too_large",
        ObjectMissing => "object_missing",
        InvalidKey => "invalid_key",
        InvalidDocument => "invalid_document",
        /// The comparison service refused it for good (INVALID_ARGUMENT, …).
        Refused => "refused",
        UnknownRecipe => "unknown_recipe",
    }
}

admin_http::label_values! {
    /// A queue call.
    pub enum QueueOp {
        Receive => "receive",
        Extend => "extend",
        Delete => "delete",
        Release => "release",
        DeadLetter => "dead_letter",
        Depth => "depth",
    }
}

impl Kind {
    pub fn of(kind: JobKind) -> Self {
        match kind {
            JobKind::Recipe => Kind::Recipe,
            JobKind::Make => Kind::Make,
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindOutcome {
    pub kind: Kind,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Retry {
    pub reason: RetryReason,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Dead {
    pub kind: Kind,
    pub reason: DeadReason,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Operation {
    pub operation: QueueOp,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodCode {
    pub method: &'static str,
    pub code: &'static str,
}

/// From a second to an hour: a job normally waits well under a second, an outage or a make
/// waiting for its recipe minutes.
const LAG_SECONDS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];

fn rpc_histogram() -> Histogram {
    Histogram::new(buckets::RPC_SECONDS.iter().copied())
}

/// Every metric of the sender; the fields are handles on the registered metrics. A delivery
/// normally ends in one of `processed`, `retried`, `dead_lettered`, `stale` or
/// `released_at_shutdown`. Exceptions: an accepted job whose delete then finds the receipt stale
/// counts as processed and stale; one whose release or dead-letter call failed is in none (it
/// comes back after its visibility timeout), but the failed call is in `queue_errors`.
#[derive(Debug)]
pub struct SenderStats {
    /// Deliveries taken from the queue (a redelivered message counts again).
    pub received: Counter,
    /// Jobs the comparison service accepted, by kind and outcome.
    pub processed: Family<KindOutcome, Counter>,
    /// Deliveries handed back to the queue for a later attempt, by reason.
    pub retried: Family<Retry, Counter>,
    /// Deliveries moved to the dead letters, by kind and reason.
    pub dead_lettered: Family<Dead, Counter>,
    /// Deliveries dropped because the queue said another consumer holds them now, by the call
    /// that found out.
    pub stale: Family<Operation, Counter>,
    /// Deliveries handed back unfinished when the shutdown grace period ran out.
    pub released_at_shutdown: Counter,
    /// Queue calls that failed (stale receipts excluded), by call.
    pub queue_errors: Family<Operation, Counter>,
    /// Seconds from a job's detection by the watcher to the moment this sender starts it.
    pub queue_lag: Histogram,
    /// Calls to the comparison service, by method and status code.
    pub rpc_duration: Family<MethodCode, Histogram, fn() -> Histogram>,
    /// Messages waiting in the queue, as last read (at most every 15 s).
    pub queue_depth: Gauge,
    /// Jobs being worked on now.
    pub in_flight: Gauge,
    /// 1 while receiving is paused by the circuit breaker.
    pub receiving_paused: Gauge,
}

impl Default for SenderStats {
    fn default() -> Self {
        let stats = Self {
            received: Counter::default(),
            processed: Family::default(),
            retried: Family::default(),
            dead_lettered: Family::default(),
            stale: Family::default(),
            released_at_shutdown: Counter::default(),
            queue_errors: Family::default(),
            queue_lag: Histogram::new(LAG_SECONDS.iter().copied()),
            rpc_duration: Family::new_with_constructor(rpc_histogram as fn() -> Histogram),
            queue_depth: Gauge::default(),
            in_flight: Gauge::default(),
            receiving_paused: Gauge::default(),
        };
        // The usual series exist from the start at 0, so rates and dashboards see them before
        // the first job.
        for (kind, outcome) in [
            (Kind::Recipe, Outcome::Recorded),
            (Kind::Recipe, Outcome::Unchanged),
            (Kind::Make, Outcome::Recorded),
            (Kind::Make, Outcome::Duplicate),
        ] {
            let _ = stats
                .processed
                .get_or_create(&KindOutcome { kind, outcome });
        }
        for &reason in RetryReason::ALL {
            let _ = stats.retried.get_or_create(&Retry { reason });
        }
        stats
    }
}

impl SenderStats {
    /// Registers every metric as `recipe_mesh_sender_…` in `registry` (an
    /// [`admin_http::registry`]).
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("sender");
        r.register(
            "jobs_received",
            "Deliveries taken from the job queue (a redelivered message counts again)",
            self.received.clone(),
        );
        r.register(
            "jobs_processed",
            "Jobs the comparison service accepted, by kind and outcome (recorded, duplicate, \
             unchanged)",
            self.processed.clone(),
        );
        r.register(
            "jobs_retried",
            "Deliveries handed back to the queue for a later attempt, by reason",
            self.retried.clone(),
        );
        r.register(
            "jobs_dead_lettered",
            "Deliveries moved to the dead letters, by kind and reason",
            self.dead_lettered.clone(),
        );
        r.register(
            "jobs_stale",
            "Deliveries dropped because another consumer holds the message now (lease lost), \
             by the queue call that found out",
            self.stale.clone(),
        );
        r.register(
            "jobs_released_at_shutdown",
            "Deliveries handed back unfinished when the shutdown grace period ran out",
            self.released_at_shutdown.clone(),
        );
        r.register(
            "queue_errors",
            "Queue calls that failed (stale receipts excluded), by operation",
            self.queue_errors.clone(),
        );
        r.register_with_unit(
            "queue_lag",
            "Time from a job's detection by the watcher (detectedAtMs) to the moment the sender \
             starts working on it; every delivery of a job counts",
            Unit::Seconds,
            self.queue_lag.clone(),
        );
        r.register_with_unit(
            "rpc_duration",
            "Calls to the comparison service, by method and gRPC status code",
            Unit::Seconds,
            self.rpc_duration.clone(),
        );
        r.register(
            "queue_depth_messages",
            "Messages ready in the job queue (approximate on SQS), read at most every 15 s",
            self.queue_depth.clone(),
        );
        r.register(
            "jobs_in_flight",
            "Jobs being worked on now",
            self.in_flight.clone(),
        );
        r.register(
            "receiving_paused",
            "1 while the circuit breaker pauses receiving (a dependency is failing), else 0",
            self.receiving_paused.clone(),
        );
    }

    /// Counts a job the comparison service accepted; `wrote_nothing` when it was a replay or
    /// an unchanged recipe.
    pub fn processed(&self, kind: JobKind, wrote_nothing: bool) {
        let outcome = match (kind, wrote_nothing) {
            (_, false) => Outcome::Recorded,
            (JobKind::Make, true) => Outcome::Duplicate,
            (JobKind::Recipe, true) => Outcome::Unchanged,
        };
        self.processed
            .get_or_create(&KindOutcome {
                kind: Kind::of(kind),
                outcome,
            })
            .inc();
    }

    pub fn retried(&self, reason: RetryReason) {
        self.retried.get_or_create(&Retry { reason }).inc();
    }

    pub fn dead_lettered(&self, kind: Option<JobKind>, reason: DeadReason) {
        let kind = kind.map_or(Kind::Unknown, Kind::of);
        self.dead_lettered
            .get_or_create(&Dead { kind, reason })
            .inc();
    }

    pub fn stale(&self, operation: QueueOp) {
        self.stale.get_or_create(&Operation { operation }).inc();
    }

    pub fn queue_error(&self, operation: QueueOp) {
        self.queue_errors
            .get_or_create(&Operation { operation })
            .inc();
    }

    /// Records how long ago `job` was detected. Jobs without a detection time (0, as some
    /// tools write) are left out; a watcher clock ahead of ours counts as no lag.
    pub fn queue_lag(&self, job: &Job) {
        if job.detected_at_ms <= 0 {
            return;
        }
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let lag_ms = now_ms.saturating_sub(job.detected_at_ms).max(0);
        self.queue_lag.observe(lag_ms as f64 / 1000.0);
    }

    /// Records one call to the comparison service.
    pub fn rpc(&self, method: &'static str, code: tonic::Code, took: Duration) {
        self.rpc_duration
            .get_or_create(&MethodCode {
                method,
                code: telemetry::grpc::code_name(code),
            })
            .observe(took.as_secs_f64());
    }

    /// The totals, summed over their labels.
    pub fn snapshot(&self) -> StatsSnapshot {
        let processed = |kind: Kind, outcomes: &[Outcome]| -> u64 {
            outcomes
                .iter()
                .map(|&outcome| counted(&self.processed, &KindOutcome { kind, outcome }))
                .sum()
        };
        let nothing_written = [Outcome::Duplicate, Outcome::Unchanged];
        StatsSnapshot {
            received: self.received.get(),
            recipes_processed: processed(Kind::Recipe, Outcome::ALL),
            makes_processed: processed(Kind::Make, Outcome::ALL),
            duplicates: processed(Kind::Recipe, &nothing_written)
                + processed(Kind::Make, &nothing_written),
            retried: RetryReason::ALL
                .iter()
                .map(|&reason| counted(&self.retried, &Retry { reason }))
                .sum(),
            dead_lettered: Kind::ALL
                .iter()
                .flat_map(|&kind| {
                    DeadReason::ALL
                        .iter()
                        .map(move |&reason| Dead { kind, reason })
                })
                .map(|labels| counted(&self.dead_lettered, &labels))
                .sum(),
            stale: QueueOp::ALL
                .iter()
                .map(|&operation| counted(&self.stale, &Operation { operation }))
                .sum(),
            released_at_shutdown: self.released_at_shutdown.get(),
        }
    }
}

/// The count of one series, 0 if it was never touched (reading does not create it).
fn counted<L: Clone + std::hash::Hash + Eq>(family: &Family<L, Counter>, labels: &L) -> u64 {
    family.get(labels).map_or(0, |c| c.get())
}

/// Totals of [`SenderStats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub received: u64,
    /// Recipe jobs accepted (unchanged ones included).
    pub recipes_processed: u64,
    /// Make jobs accepted (duplicates included).
    pub makes_processed: u64,
    /// Accepted jobs that wrote nothing: a replayed make, or a recipe equal to its latest version.
    pub duplicates: u64,
    pub retried: u64,
    pub dead_lettered: u64,
    pub stale: u64,
    pub released_at_shutdown: u64,
}

/// Counts a job as in flight while it lives, panics included.
pub(crate) struct InFlight(Gauge);

impl InFlight {
    pub(crate) fn enter(gauge: &Gauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_snapshot_sums_the_labelled_series() {
        let s = SenderStats::default();
        s.processed(JobKind::Make, false);
        s.processed(JobKind::Make, true);
        s.processed(JobKind::Recipe, true);
        s.retried(RetryReason::UnknownRecipe);
        s.retried(RetryReason::ComparisonUnavailable);
        s.dead_lettered(None, DeadReason::NotAJob);
        s.dead_lettered(Some(JobKind::Make), DeadReason::InvalidDocument);
        s.stale(QueueOp::Extend);
        s.received.inc_by(7);
        let snap = s.snapshot();
        assert_eq!(
            snap,
            StatsSnapshot {
                received: 7,
                recipes_processed: 1,
                makes_processed: 2,
                duplicates: 2,
                retried: 2,
                dead_lettered: 2,
                stale: 1,
                released_at_shutdown: 0,
            }
        );
    }

    #[test]
    fn registered_metrics_are_named_for_the_sender() {
        let s = SenderStats::default();
        let mut registry = admin_http::registry();
        s.register(&mut registry);
        s.processed(JobKind::Make, false);
        s.dead_lettered(None, DeadReason::NotAJob);
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &registry).expect("encode");
        assert!(
            text.contains(
                "recipe_mesh_sender_jobs_processed_total{kind=\"make\",outcome=\"recorded\"} 1\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "recipe_mesh_sender_jobs_processed_total{kind=\"make\",outcome=\"duplicate\"} 0\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "recipe_mesh_sender_jobs_dead_lettered_total{kind=\"unknown\",reason=\"not_a_job\"} 1\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("# TYPE recipe_mesh_sender_queue_lag_seconds histogram"),
            "{text}"
        );
    }

    #[test]
    fn jobs_without_a_detection_time_have_no_lag() {
        let s = SenderStats::default();
        let mut registry = admin_http::registry();
        s.register(&mut registry);
        let lag = |name: &str| {
            let mut text = String::new();
            prometheus_client::encoding::prometheus_text::encode(&mut text, &registry)
                .expect("encode");
            admin_http::scrape::value(&text, name, &[]).expect("the lag histogram")
        };
        let mut job = Job::from_json(
            r#"{"v":1,"kind":"make","scheme":"dir","bucket":"b","key":"makes/a.json","etag":"e","size":1,"detectedBy":"poll","detectedAtMs":0}"#,
        )
        .expect("a job");
        s.queue_lag(&job);
        assert_eq!(lag("recipe_mesh_sender_queue_lag_seconds_count"), 0.0);
        job.detected_at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64 - 2_000)
            .expect("clock");
        s.queue_lag(&job);
        assert_eq!(lag("recipe_mesh_sender_queue_lag_seconds_count"), 1.0);
        let sum = lag("recipe_mesh_sender_queue_lag_seconds_sum");
        assert!((1.9..5.0).contains(&sum), "{sum}");
    }
}
