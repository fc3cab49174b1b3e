//! What every service shares around its main loop, so that watcher, sender and comparison parse
//! their settings and stop the same way:
//!
//! - [`PipelineArgs`]: where the files and the job queue are, read by watcher and sender from the
//!   same environment variables so that one ConfigMap (or compose file) sets them for both;
//! - [`parse_duration`] reads durations such as `500ms`, `30s`, `2m` from flags and environment;
//! - [`shutdown_signal`] resolves on SIGTERM (what Kubernetes and Docker send) or Ctrl-C.
//!
//! Telemetry lives in the `telemetry` crate and AWS configuration in `aws-setup`.

use std::time::Duration;

/// Files are read from here when nothing else is configured: a local folder, no AWS.
pub const DEFAULT_SOURCE_URL: &str = "dir://data/inbox";
/// The embedded job queue used when nothing else is configured. Receives are counted so that a
/// job that crashes its consumer again and again ends in the dead letters (see docs/queue.md).
pub const DEFAULT_QUEUE_URL: &str = "sqlite://data/queue.db?queue=jobs&max_receive_count=20";

/// The two places watcher and sender share.
#[derive(Debug, Clone, clap::Args)]
pub struct PipelineArgs {
    /// The bucket or folder with the recipe files: s3://BUCKET or dir://PATH.
    #[arg(long = "source", env = "SOURCE_URL", default_value = DEFAULT_SOURCE_URL)]
    pub source: String,
    /// The job queue: sqs://QUEUE?dlq=DLQ or sqlite://PATH?queue=NAME.
    #[arg(long = "queue", env = "JOBS_QUEUE_URL", default_value = DEFAULT_QUEUE_URL)]
    pub queue: String,
}

/// Parses `500ms`, `30s`, `2m` or a bare number of seconds. For clap's `value_parser`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit) = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((s, "s"), |i| s.split_at(i));
    let n: f64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 500ms, 30s or 2m"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(format!("{s:?}: unit must be ms, s or m")),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{s:?}: {e}"))
}

/// Resolves when the process is asked to stop: SIGTERM or Ctrl-C (SIGINT).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown requested");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5h").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}
