//! Command line and environment configuration of the comparison service. Every flag has an
//! environment variable, which is how the Helm chart and compose file configure it.

use clap::{Args, Parser, Subcommand};
use service_runtime::parse_duration;
use std::net::SocketAddr;
use std::time::Duration;

/// Store used when none is configured: an embedded SQLite file, so a fresh machine needs no AWS.
pub const DEFAULT_STORE_URL: &str = "sqlite://data/recipe-mesh.db";

#[derive(Debug, Parser)]
#[command(name = "comparison", version, about = "recipe-mesh comparison service")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Flags for `serve`, also accepted without the subcommand.
    #[command(flatten)]
    pub serve: ServeSettings,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the gRPC API (the default).
    Serve(ServeSettings),
    /// Create or upgrade the store's tables, then exit. Safe to run again.
    Migrate(StoreSettings),
}

#[derive(Debug, Clone, Args)]
pub struct StoreSettings {
    /// sqlite://PATH, sqlite::memory: or dynamodb://TABLE (AWS settings come from the standard
    /// AWS_* environment, AWS_ENDPOINT_URL included).
    #[arg(long = "store", env = "COMPARISON_STORE_URL", default_value = DEFAULT_STORE_URL)]
    pub url: String,
}

#[derive(Debug, Clone, Args)]
pub struct ServeSettings {
    /// Address of the gRPC listener.
    #[arg(long, env = "COMPARISON_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub store: StoreSettings,
    /// Longest a request may run before it fails with DEADLINE_EXCEEDED / CANCELLED.
    #[arg(long, env = "COMPARISON_REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// Largest accepted request message.
    #[arg(long, env = "COMPARISON_MAX_MESSAGE_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub max_message_bytes: usize,
    /// Most requests served at once per client connection; more wait.
    #[arg(
        long,
        env = "COMPARISON_CONCURRENCY_PER_CONNECTION",
        default_value_t = 256
    )]
    pub concurrency_per_connection: usize,
    /// How often the store is pinged to drive the health service.
    #[arg(long, env = "COMPARISON_HEALTH_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub health_interval: Duration,
}

impl ServeSettings {
    /// Settings for a server on `listen` with `store_url` and every other value at its default.
    pub fn new(listen: SocketAddr, store_url: impl Into<String>) -> Self {
        let mut s = Cli::parse_from(["comparison"]).serve;
        s.listen = listen;
        s.store.url = store_url.into();
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_work_with_and_without_the_serve_subcommand() {
        let bare = Cli::parse_from(["comparison", "--store", "sqlite::memory:"]);
        assert!(bare.command.is_none());
        assert_eq!(bare.serve.store.url, "sqlite::memory:");
        let sub = Cli::parse_from(["comparison", "migrate", "--store", "dynamodb://t"]);
        assert!(matches!(sub.command, Some(Command::Migrate(s)) if s.url == "dynamodb://t"));
    }
}
