//! What the watcher did, as Prometheus metrics (`recipe_mesh_watcher_…`, listed in
//! `docs/metrics.md`) served on the admin port. They are also the watcher's only counters: tests
//! read them back through the totals below, so every event is counted once.

use pipeline_job::JobKind;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::time::{SystemTime, UNIX_EPOCH};

admin_http::label_values! {
    /// How files are noticed (`WATCHER_MODE`).
    pub enum Mode { Poll => "poll", Events => "events" }
}

admin_http::label_values! {
    /// What a job is about.
    pub enum Kind { Recipe => "recipe", Make => "make" }
}

impl Kind {
    pub fn of(kind: JobKind) -> Self {
        match kind {
            JobKind::Recipe => Kind::Recipe,
            JobKind::Make => Kind::Make,
        }
    }
}

impl From<crate::config::Mode> for Mode {
    fn from(mode: crate::config::Mode) -> Self {
        match mode {
            crate::config::Mode::Poll => Mode::Poll,
            crate::config::Mode::Events => Mode::Events,
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModeLabel {
    pub mode: Mode,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: Kind,
}

/// Every metric of the watcher; the fields are handles on the registered metrics.
#[derive(Debug)]
pub struct WatcherStats {
    /// The mode this watcher runs in: the `mode` label of its series.
    mode: Mode,
    /// Poll mode: complete passes over the prefixes; events mode: batches of notifications
    /// received and handled (empty long polls included).
    pub passes: Family<ModeLabel, Counter>,
    /// Passes or batches that failed (retried after a pause).
    pub pass_failures: Family<ModeLabel, Counter>,
    /// Objects seen in listings, or created-object records in notifications.
    pub objects_seen: Family<ModeLabel, Counter>,
    /// Keys outside the layout (poll mode: once per file version and process).
    pub objects_ignored: Family<ModeLabel, Counter>,
    /// Jobs put on the queue.
    pub jobs_sent: Family<KindLabel, Counter>,
    /// Calls sending jobs to the queue that failed (their files are sent again later).
    pub send_failures: Counter,
    /// Poll mode: file versions another replica held a live claim on.
    pub claimed_elsewhere: Counter,
    /// Events mode: notification messages consumed.
    pub events_received: Counter,
    /// Events mode: notifications that could not be read, moved to the events DLQ.
    pub events_rejected: Counter,
    /// When the last pass or batch succeeded, seconds since the Unix epoch.
    pub last_success: Gauge<f64, AtomicU64>,
}

impl WatcherStats {
    /// Metrics for a watcher in `mode`, not yet registered.
    pub fn new(mode: Mode) -> Self {
        let stats = Self {
            mode,
            passes: Family::default(),
            pass_failures: Family::default(),
            objects_seen: Family::default(),
            objects_ignored: Family::default(),
            jobs_sent: Family::default(),
            send_failures: Counter::default(),
            claimed_elsewhere: Counter::default(),
            events_received: Counter::default(),
            events_rejected: Counter::default(),
            last_success: Gauge::default(),
        };
        // This watcher's series exist from the start at 0, so rates see them before any file.
        let label = stats.label();
        for family in [
            &stats.passes,
            &stats.pass_failures,
            &stats.objects_seen,
            &stats.objects_ignored,
        ] {
            let _ = family.get_or_create(&label);
        }
        for &kind in Kind::ALL {
            let _ = stats.jobs_sent.get_or_create(&KindLabel { kind });
        }
        stats
    }

    /// Registers every metric as `recipe_mesh_watcher_…` in `registry` (an
    /// [`admin_http::registry`]).
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("watcher");
        r.register(
            "passes",
            "Poll mode: complete passes over the prefixes; events mode: batches of \
             notifications received and handled",
            self.passes.clone(),
        );
        r.register(
            "pass_failures",
            "Passes or notification batches that failed (listing, ledger or queue); retried",
            self.pass_failures.clone(),
        );
        r.register(
            "objects_seen",
            "Objects seen in listings (every pass counts them again) or in notifications",
            self.objects_seen.clone(),
        );
        r.register(
            "objects_ignored",
            "Keys outside the layout (other suffix, hidden, other bucket), not sent",
            self.objects_ignored.clone(),
        );
        r.register(
            "jobs_sent",
            "Jobs put on the job queue, by kind",
            self.jobs_sent.clone(),
        );
        r.register(
            "job_send_failures",
            "Calls putting jobs on the queue that failed; their files are sent again later",
            self.send_failures.clone(),
        );
        r.register(
            "claimed_elsewhere",
            "Poll mode: new file versions skipped because another replica claimed them",
            self.claimed_elsewhere.clone(),
        );
        r.register(
            "events_received",
            "Events mode: S3 notification messages consumed",
            self.events_received.clone(),
        );
        r.register(
            "events_rejected",
            "Events mode: notifications that could not be read, moved to the events DLQ",
            self.events_rejected.clone(),
        );
        r.register(
            "last_success_timestamp_seconds",
            "When the last pass or notification batch succeeded (Unix time); 0 before the first",
            self.last_success.clone(),
        );
    }

    fn label(&self) -> ModeLabel {
        ModeLabel { mode: self.mode }
    }

    pub fn seen(&self, n: u64) {
        self.objects_seen.get_or_create(&self.label()).inc_by(n);
    }

    pub fn ignored_one(&self) {
        self.objects_ignored.get_or_create(&self.label()).inc();
    }

    pub fn sent(&self, kind: JobKind) {
        self.jobs_sent
            .get_or_create(&KindLabel {
                kind: Kind::of(kind),
            })
            .inc();
    }

    /// A pass (or batch) that succeeded.
    pub fn pass_done(&self) {
        self.passes.get_or_create(&self.label()).inc();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.last_success.set(now);
    }

    pub fn pass_failed(&self) {
        self.pass_failures.get_or_create(&self.label()).inc();
    }

    fn total(family: &Family<ModeLabel, Counter>) -> u64 {
        Mode::ALL
            .iter()
            .map(|&mode| family.get(&ModeLabel { mode }).map_or(0, |c| c.get()))
            .sum()
    }

    /// Jobs put on the queue so far.
    pub fn jobs(&self) -> u64 {
        Kind::ALL
            .iter()
            .map(|&kind| {
                self.jobs_sent
                    .get(&KindLabel { kind })
                    .map_or(0, |c| c.get())
            })
            .sum()
    }

    /// Successful passes (or batches) so far.
    pub fn passes(&self) -> u64 {
        Self::total(&self.passes)
    }

    /// Keys outside the layout so far.
    pub fn ignored(&self) -> u64 {
        Self::total(&self.objects_ignored)
    }

    /// Failed passes (or batches) so far.
    pub fn failures(&self) -> u64 {
        Self::total(&self.pass_failures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_are_read_back_from_the_metrics() {
        let s = WatcherStats::new(Mode::Poll);
        let mut registry = admin_http::registry();
        s.register(&mut registry);
        s.sent(JobKind::Make);
        s.sent(JobKind::Make);
        s.sent(JobKind::Recipe);
        s.ignored_one();
        s.seen(5);
        s.pass_done();
        assert_eq!(
            (s.jobs(), s.ignored(), s.passes(), s.failures()),
            (3, 1, 1, 0)
        );
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &registry).expect("encode");
        let value = |name: &str, labels: &[(&str, &str)]| {
            admin_http::scrape::value(&text, name, labels)
                .unwrap_or_else(|| panic!("no {name} in\n{text}"))
        };
        assert_eq!(
            value("recipe_mesh_watcher_jobs_sent_total", &[("kind", "make")]),
            2.0
        );
        assert_eq!(
            value(
                "recipe_mesh_watcher_objects_seen_total",
                &[("mode", "poll")]
            ),
            5.0
        );
        assert_eq!(
            value(
                "recipe_mesh_watcher_pass_failures_total",
                &[("mode", "poll")]
            ),
            0.0
        );
        assert!(value("recipe_mesh_watcher_last_success_timestamp_seconds", &[]) > 1.7e9);
    }
}
