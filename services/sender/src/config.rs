//! Command line and environment configuration of the sender. Every flag has an environment
//! variable. What the watcher and the sender both need (`--source`/`SOURCE_URL`,
//! `--queue`/`JOBS_QUEUE_URL`) comes from `service_runtime::PipelineArgs`, so one ConfigMap sets
//! it for both with the same defaults; the rest is `SENDER_*`.

use anyhow::bail;
use clap::{Args, Parser, Subcommand};
use service_runtime::parse_duration;
use std::net::SocketAddr;
use std::time::Duration;

pub use service_runtime::{DEFAULT_QUEUE_URL, DEFAULT_SOURCE_URL, PipelineArgs};

/// The comparison service as `comparison` serves it by default.
pub const DEFAULT_COMPARISON_URL: &str = "http://127.0.0.1:50051";
/// The admin port (metrics, probes): on every interface, for the kubelet and Prometheus; next
/// to the comparison service's 9091 and the watcher's 9093, so all three run on one machine.
pub const DEFAULT_ADMIN_LISTEN: &str = "0.0.0.0:9092";
/// Shortest visibility timeout accepted: the lease keeper looks at it every sixth of it, and SQS
/// counts in whole seconds.
pub const MIN_VISIBILITY: Duration = Duration::from_secs(1);
/// Longest `SENDER_DELETE_LINGER` and `SENDER_RECEIVE_LINGER`: they are meant to be
/// milliseconds; seconds would only hold jobs up (a typo like `20s` for `20ms` is refused).
pub const MAX_LINGER: Duration = Duration::from_secs(1);

#[derive(Debug, Parser)]
#[command(
    name = "sender",
    version,
    about = "recipe-mesh sender: queue -> comparison service"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Flags for `run`, also accepted without the subcommand.
    #[command(flatten)]
    pub run: Settings,
}

// Parsed once at start; boxing `Settings` would only add a dereference to every match on it.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Take jobs from the queue and submit them (the default).
    Run(Settings),
    /// Print the dead letters (one JSON object per line, oldest first where the queue can tell)
    /// without consuming them, then exit.
    DeadLetters(DeadLetterSettings),
}

#[derive(Debug, Clone, Args)]
pub struct DeadLetterSettings {
    /// The job queue: sqs://QUEUE?dlq=DLQ or sqlite://PATH?queue=NAME (as for `run`).
    #[arg(long = "queue", env = "JOBS_QUEUE_URL", default_value = DEFAULT_QUEUE_URL)]
    pub queue: String,
    /// Most dead letters to print (the queue returns at most 100).
    #[arg(
        long,
        env = "SENDER_DEAD_LETTERS_MAX",
        default_value_t = message_queue::MAX_DEAD_LETTER_PEEK,
        value_parser = clap::value_parser!(u32).range(1..=i64::from(message_queue::MAX_DEAD_LETTER_PEEK))
    )]
    pub max: u32,
}

#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// Where the files are (`--source`; jobs for any other bucket are dead-lettered) and the job
    /// queue (`--queue`).
    #[command(flatten)]
    pub pipeline: PipelineArgs,
    /// gRPC endpoint of the comparison service.
    #[arg(long, env = "SENDER_COMPARISON_URL", default_value = DEFAULT_COMPARISON_URL)]
    pub comparison_url: String,
    /// Address of the admin HTTP port: /metrics (Prometheus), /livez and /readyz.
    #[arg(long, env = "SENDER_ADMIN_LISTEN", default_value = DEFAULT_ADMIN_LISTEN)]
    pub admin_listen: SocketAddr,
    /// Jobs worked on at once.
    #[arg(long, env = "SENDER_CONCURRENCY", default_value_t = 16)]
    pub concurrency: usize,
    /// How long a received job stays hidden from other senders; the lease keeper renews it
    /// while the job runs, once less than half of it is left.
    #[arg(long, env = "SENDER_VISIBILITY", default_value = "60s", value_parser = parse_duration)]
    pub visibility: Duration,
    /// Long-poll wait of one receive (at most 20s).
    #[arg(long, env = "SENDER_WAIT", default_value = "20s", value_parser = parse_duration)]
    pub wait: Duration,
    /// Deadline of one call to the comparison service (sent as the gRPC deadline).
    #[arg(long, env = "SENDER_RPC_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub rpc_timeout: Duration,
    /// How long to wait for a TCP connection to the comparison service.
    #[arg(long, env = "SENDER_CONNECT_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
    /// Largest file read; larger ones are dead-lettered without being downloaded.
    #[arg(
        long,
        env = "SENDER_MAX_FILE_BYTES",
        default_value_t = recipe_model::limits::MAX_DOCUMENT_BYTES as u64
    )]
    pub max_file_bytes: u64,
    /// Deliveries of a make whose recipe the comparison service does not know before the make is
    /// dead-lettered (recipe and make files may arrive in any order).
    #[arg(long, env = "SENDER_UNKNOWN_RECIPE_ATTEMPTS", default_value_t = 5)]
    pub unknown_recipe_attempts: u32,
    /// First retry delay; doubles with each delivery of the same job.
    #[arg(long, env = "SENDER_BACKOFF_BASE", default_value = "1s", value_parser = parse_duration)]
    pub backoff_base: Duration,
    /// Longest retry delay (before jitter).
    #[arg(long, env = "SENDER_BACKOFF_MAX", default_value = "60s", value_parser = parse_duration)]
    pub backoff_max: Duration,
    /// On SIGTERM, how long jobs in flight may take to finish before they are handed back.
    #[arg(long, env = "SENDER_SHUTDOWN_GRACE", default_value = "20s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
    /// How long a finished job's delete waits for others to share one batch call (up to 10
    /// messages per call); 0 sends whatever is pending at once.
    #[arg(long, env = "SENDER_DELETE_LINGER", default_value = "500ms", value_parser = parse_duration)]
    pub delete_linger: Duration,
    /// After room for a job frees up and no prefetched job is waiting for a slot, how long to
    /// wait for more room (up to 10 jobs, or the concurrency) before receiving, so that one
    /// receive fetches several jobs; 0 receives at once for the room free then.
    #[arg(long, env = "SENDER_RECEIVE_LINGER", default_value = "50ms", value_parser = parse_duration)]
    pub receive_linger: Duration,
}

impl Settings {
    /// Settings with these URLs, the admin port on an ephemeral loopback port (a program
    /// embedding the sender, or a test, must not collide with a fixed one), and every other
    /// value at its default (flags only: environment variables that are set still apply, as for
    /// any parse).
    pub fn new(
        source_url: impl Into<String>,
        queue_url: impl Into<String>,
        comparison_url: impl Into<String>,
    ) -> Self {
        let mut s = Cli::parse_from(["sender"]).run;
        s.pipeline.source = source_url.into();
        s.pipeline.queue = queue_url.into();
        s.comparison_url = comparison_url.into();
        s.admin_listen = SocketAddr::from(([127, 0, 0, 1], 0));
        s
    }

    /// Refuses values that cannot work, naming the setting and its environment variable.
    pub fn validate(&self) -> anyhow::Result<()> {
        let max_doc = recipe_model::limits::MAX_DOCUMENT_BYTES as u64;
        if self.concurrency == 0 {
            bail!("SENDER_CONCURRENCY (--concurrency) must be at least 1");
        }
        if self.visibility < MIN_VISIBILITY || self.visibility > message_queue::MAX_VISIBILITY {
            bail!(
                "SENDER_VISIBILITY (--visibility) must be between {MIN_VISIBILITY:?} and {:?}, \
                 got {:?}",
                message_queue::MAX_VISIBILITY,
                self.visibility
            );
        }
        if self.wait > message_queue::MAX_WAIT {
            bail!(
                "SENDER_WAIT (--wait) must be at most {:?}, got {:?}",
                message_queue::MAX_WAIT,
                self.wait
            );
        }
        if self.rpc_timeout.is_zero() {
            bail!("SENDER_RPC_TIMEOUT (--rpc-timeout) must be more than 0");
        }
        if self.connect_timeout.is_zero() {
            bail!("SENDER_CONNECT_TIMEOUT (--connect-timeout) must be more than 0");
        }
        if self.max_file_bytes == 0 || self.max_file_bytes > max_doc {
            bail!(
                "SENDER_MAX_FILE_BYTES (--max-file-bytes) must be between 1 and {max_doc} (larger \
                 documents are refused by the document parser anyway), got {}",
                self.max_file_bytes
            );
        }
        if self.unknown_recipe_attempts == 0 {
            bail!("SENDER_UNKNOWN_RECIPE_ATTEMPTS (--unknown-recipe-attempts) must be at least 1");
        }
        if self.backoff_base.is_zero() || self.backoff_base > self.backoff_max {
            bail!(
                "SENDER_BACKOFF_BASE (--backoff-base) must be more than 0 and at most \
                 SENDER_BACKOFF_MAX ({:?}), got {:?}",
                self.backoff_max,
                self.backoff_base
            );
        }
        // A retry delay is a queue `release` delay, which the queues cap at 12 h.
        if self.backoff_max > message_queue::MAX_VISIBILITY / 2 {
            bail!(
                "SENDER_BACKOFF_MAX (--backoff-max) must be at most {:?}, got {:?}",
                message_queue::MAX_VISIBILITY / 2,
                self.backoff_max
            );
        }
        for (name, linger) in [
            ("SENDER_DELETE_LINGER (--delete-linger)", self.delete_linger),
            (
                "SENDER_RECEIVE_LINGER (--receive-linger)",
                self.receive_linger,
            ),
        ] {
            if linger > MAX_LINGER {
                bail!("{name} must be at most {MAX_LINGER:?}, got {linger:?}");
            }
        }
        object_source::parse_url(&self.pipeline.source)
            .map_err(|e| anyhow::anyhow!("SOURCE_URL (--source): {e}"))?;
        if self.pipeline.queue.starts_with("sqs:") {
            let parsed = message_queue::sqs::SqsUrl::parse(&self.pipeline.queue)
                .map_err(|e| anyhow::anyhow!("JOBS_QUEUE_URL (--queue): {e}"))?;
            // Without a DLQ every permanent failure would fail to dead-letter and come back until
            // SQS's redrive policy (if any) moved it, without its reason.
            if parsed.dlq.is_none() {
                bail!(
                    "JOBS_QUEUE_URL (--queue) {:?} names no dead-letter queue; the sender needs \
                     one: sqs://QUEUE?dlq=DLQ",
                    self.pipeline.queue
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn flags_work_with_and_without_the_run_subcommand() {
        let bare = Cli::parse_from(["sender", "--concurrency", "3"]);
        assert!(bare.command.is_none());
        assert_eq!(bare.run.concurrency, 3);
        let sub = Cli::parse_from(["sender", "run", "--visibility", "90s"]);
        assert!(
            matches!(sub.command, Some(Command::Run(s)) if s.visibility == Duration::from_secs(90))
        );
        let dl = Cli::parse_from([
            "sender",
            "dead-letters",
            "--queue",
            "sqlite://q.db",
            "--max",
            "7",
        ]);
        assert!(
            matches!(dl.command, Some(Command::DeadLetters(d)) if d.max == 7 && d.queue == "sqlite://q.db")
        );
    }

    #[test]
    fn every_flag_has_an_environment_variable() {
        let cmd = Cli::command();
        let subs = cmd.get_subcommands().collect::<Vec<_>>();
        for c in std::iter::once(&cmd).chain(subs) {
            for arg in c.get_arguments() {
                let id = arg.get_id().as_str();
                if matches!(id, "help" | "version") {
                    continue;
                }
                assert!(
                    arg.get_env().is_some(),
                    "{} --{id} has no environment variable",
                    c.get_name()
                );
            }
        }
    }

    #[test]
    fn dead_letter_max_is_bounded() {
        assert!(Cli::try_parse_from(["sender", "dead-letters", "--max", "0"]).is_err());
        assert!(Cli::try_parse_from(["sender", "dead-letters", "--max", "101"]).is_err());
    }
}
