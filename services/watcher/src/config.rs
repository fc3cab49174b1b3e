//! Command line and environment configuration of the watcher. Every flag has an environment
//! variable; `SOURCE_URL` and `JOBS_QUEUE_URL` are shared with the sender (`service-runtime`).

use clap::{Args, Parser, Subcommand, ValueEnum};
use pipeline_job::KeyLayout;
use service_runtime::{PipelineArgs, parse_duration};
use std::net::SocketAddr;
use std::time::Duration;

/// Ledger used when none is configured: an embedded SQLite file beside the embedded queue.
pub const DEFAULT_LEDGER_URL: &str = "sqlite://data/watcher.db";
/// The admin port (metrics, probes): on every interface, for the kubelet and Prometheus; after
/// the comparison service's 9091 and the sender's 9092, so all three run on one machine.
pub const DEFAULT_ADMIN_LISTEN: &str = "0.0.0.0:9093";

#[derive(Debug, Parser)]
#[command(name = "watcher", version, about = "recipe-mesh watcher")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Flags for `run`, also accepted without the subcommand.
    #[command(flatten)]
    pub run: WatchSettings,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Watch for new files and put jobs on the queue (the default).
    Run(WatchSettings),
    /// Create what the configuration needs (bucket or folder, queues, ledger, S3 event
    /// notifications), then exit. Safe to run again.
    Setup(SetupSettings),
}

/// How new files are noticed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// List the bucket or folder periodically; works everywhere.
    Poll,
    /// Consume S3 event notifications from an SQS queue; no listing (S3 only).
    Events,
}

/// Where a first start begins in poll mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StartFrom {
    /// Send jobs for every file already there.
    Beginning,
    /// Only files written after the watcher first started (remembered across restarts).
    Now,
}

#[derive(Debug, Clone, Args)]
pub struct LayoutArgs {
    /// Keys under this prefix are original recipes.
    #[arg(long, env = "WATCHER_RECIPES_PREFIX", default_value = "recipes/")]
    pub recipes_prefix: String,
    /// Keys under this prefix are makes.
    #[arg(long, env = "WATCHER_MAKES_PREFIX", default_value = "makes/")]
    pub makes_prefix: String,
    /// Only keys ending in this (ASCII case ignored) are files to send.
    #[arg(long, env = "WATCHER_SUFFIX", default_value = ".json")]
    pub suffix: String,
}

impl LayoutArgs {
    pub fn layout(&self) -> anyhow::Result<KeyLayout> {
        let layout = KeyLayout {
            recipes_prefix: self.recipes_prefix.clone(),
            makes_prefix: self.makes_prefix.clone(),
            suffix: self.suffix.clone(),
        };
        layout.validate().map_err(anyhow::Error::msg)?;
        Ok(layout)
    }
}

#[derive(Debug, Clone, Args)]
pub struct WatchSettings {
    #[command(flatten)]
    pub pipeline: PipelineArgs,
    #[command(flatten)]
    pub layout: LayoutArgs,
    #[arg(long, env = "WATCHER_MODE", value_enum, default_value = "poll")]
    pub mode: Mode,
    /// Address of the admin HTTP port: /metrics (Prometheus), /livez and /readyz.
    #[arg(long, env = "WATCHER_ADMIN_LISTEN", default_value = DEFAULT_ADMIN_LISTEN)]
    pub admin_listen: SocketAddr,
    /// Events mode: the SQS queue S3 sends notifications to, sqs://NAME[?dlq=DLQ]. Unreadable
    /// notifications go to its DLQ with the reason.
    #[arg(long, env = "WATCHER_EVENTS_QUEUE_URL")]
    pub events_queue: Option<String>,
    /// Poll mode: where the ledger of sent files lives, sqlite://PATH or dynamodb://TABLE.
    #[arg(long, env = "WATCHER_LEDGER_URL", default_value = DEFAULT_LEDGER_URL)]
    pub ledger: String,
    /// Poll mode: pause between listings. Default 1s for a folder, 10s for a bucket.
    #[arg(long, env = "WATCHER_POLL_INTERVAL", value_parser = parse_duration)]
    pub poll_interval: Option<Duration>,
    /// Poll mode: files changed more recently than this are left for the next listing, so a
    /// file still being copied into a folder is not sent half-written. Default 1s for a folder,
    /// 0 for a bucket (S3 objects appear whole).
    #[arg(long, env = "WATCHER_SETTLE", value_parser = parse_duration)]
    pub settle: Option<Duration>,
    #[arg(
        long,
        env = "WATCHER_START_FROM",
        value_enum,
        default_value = "beginning"
    )]
    pub start_from: StartFrom,
    /// Poll mode: this replica's name in the ledger's claims. Default: $HOSTNAME (the pod
    /// name) plus a random suffix.
    #[arg(long, env = "WATCHER_REPLICA_ID")]
    pub replica_id: Option<String>,
    /// Poll mode: how long a claim on a file keeps other replicas off it; a replica that dies
    /// between claiming and sending delays those files by at most this.
    #[arg(long, env = "WATCHER_CLAIM_LEASE", default_value = "60s", value_parser = parse_duration)]
    pub claim_lease: Duration,
    /// Poll mode: most file versions remembered in memory as sent (16 bytes each); beyond it
    /// the ledger is asked. Bounds memory for any bucket size.
    #[arg(long, env = "WATCHER_CACHE_ENTRIES", default_value_t = 1_000_000)]
    pub cache_entries: usize,
    /// Objects per listing page (at most 1000).
    #[arg(long, env = "WATCHER_PAGE_SIZE", default_value_t = 1000)]
    pub page_size: u32,
}

impl WatchSettings {
    /// Settings for `source` and `queue`, the admin port on an ephemeral loopback port (a
    /// program embedding the watcher, or a test, must not collide with a fixed one), and every
    /// other value at its default.
    pub fn new(source: impl Into<String>, queue: impl Into<String>) -> Self {
        let mut s = Cli::parse_from(["watcher"]).run;
        s.pipeline.source = source.into();
        s.pipeline.queue = queue.into();
        s.admin_listen = SocketAddr::from(([127, 0, 0, 1], 0));
        s
    }

    fn is_bucket(&self) -> bool {
        self.pipeline.source.starts_with("s3://")
    }

    pub fn effective_poll_interval(&self) -> Duration {
        self.poll_interval.unwrap_or(if self.is_bucket() {
            Duration::from_secs(10)
        } else {
            Duration::from_secs(1)
        })
    }

    pub fn effective_settle(&self) -> Duration {
        self.settle.unwrap_or(if self.is_bucket() {
            Duration::ZERO
        } else {
            Duration::from_secs(1)
        })
    }

    pub fn effective_replica_id(&self) -> String {
        self.replica_id.clone().unwrap_or_else(|| {
            let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "watcher".into());
            format!("{host}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
        })
    }
}

#[derive(Debug, Clone, Args)]
pub struct SetupSettings {
    #[command(flatten)]
    pub watch: WatchSettings,
    /// Receives after which SQS moves a job to the DLQ by itself (the safety net for a sender
    /// that crashes on it); above the sender's own retry budget.
    #[arg(long, env = "WATCHER_MAX_RECEIVE_COUNT", default_value_t = 20)]
    pub max_receive_count: u32,
}

impl SetupSettings {
    /// Setup for `watch` with the other values at their defaults.
    pub fn new(watch: WatchSettings) -> Self {
        let Some(Command::Setup(mut s)) = Cli::parse_from(["watcher", "setup"]).command else {
            unreachable!("the setup subcommand parses without flags")
        };
        s.watch = watch;
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_run_on_the_embedded_backends() {
        let cli = Cli::parse_from(["watcher"]);
        let s = cli.run;
        assert_eq!(s.pipeline.source, service_runtime::DEFAULT_SOURCE_URL);
        assert!(s.pipeline.queue.starts_with("sqlite://"));
        assert_eq!(s.ledger, DEFAULT_LEDGER_URL);
        assert_eq!(s.mode, Mode::Poll);
        assert_eq!(s.start_from, StartFrom::Beginning);
        assert_eq!(s.effective_poll_interval(), Duration::from_secs(1));
        assert_eq!(s.effective_settle(), Duration::from_secs(1));
        assert_eq!(s.layout.layout().unwrap(), KeyLayout::default());
        assert_eq!(s.admin_listen.to_string(), "0.0.0.0:9093");
        let embedded = WatchSettings::new("dir://x", "sqlite::memory:");
        assert_eq!(embedded.admin_listen.to_string(), "127.0.0.1:0");
    }

    #[test]
    fn buckets_get_bucket_defaults_and_flags_override() {
        let cli = Cli::parse_from([
            "watcher",
            "run",
            "--source",
            "s3://recipes-in",
            "--mode",
            "events",
            "--events-queue",
            "sqs://recipe-events?dlq=recipe-events-dlq",
            "--start-from",
            "now",
            "--settle",
            "250ms",
            "--admin-listen",
            "127.0.0.1:7003",
        ]);
        let Some(Command::Run(s)) = cli.command else {
            panic!("run subcommand")
        };
        assert_eq!(s.mode, Mode::Events);
        assert_eq!(s.start_from, StartFrom::Now);
        assert_eq!(s.effective_poll_interval(), Duration::from_secs(10));
        assert_eq!(s.effective_settle(), Duration::from_millis(250));
        assert_eq!(s.admin_listen.to_string(), "127.0.0.1:7003");
        assert_ne!(
            s.effective_replica_id(),
            s.effective_replica_id(),
            "unique per start"
        );
    }

    #[test]
    fn overlapping_prefixes_are_refused() {
        let s = Cli::parse_from(["watcher", "--makes-prefix", "recipes/makes/"]).run;
        assert!(s.layout.layout().is_err());
    }
}
