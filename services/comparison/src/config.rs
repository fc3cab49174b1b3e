//! Command line and environment configuration of the comparison service. Every flag has an
//! environment variable, which is how the Helm chart and compose file configure it.

use clap::{Args, Parser, Subcommand};
use service_runtime::parse_duration;
use std::net::SocketAddr;
use std::time::Duration;

/// Store used when none is configured: an embedded SQLite file, so a fresh machine needs no AWS.
pub const DEFAULT_STORE_URL: &str = "sqlite://data/recipe-mesh.db";
/// The admin port: on every interface, for the kubelet's probes and Prometheus; the sender
/// (9092) and watcher (9093) use the next ports, so all three run side by side on one machine.
pub const DEFAULT_ADMIN_LISTEN: &str = "0.0.0.0:9091";

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
    /// Address of the admin HTTP port: /metrics (Prometheus), /livez and /readyz.
    #[arg(long, env = "COMPARISON_ADMIN_LISTEN", default_value = DEFAULT_ADMIN_LISTEN)]
    pub admin_listen: SocketAddr,
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
    /// Settings for a server on `listen` with `store_url`, the admin port on an ephemeral
    /// loopback port (a program embedding the service, or a test, must not collide with a fixed
    /// one), and every other value at its default.
    pub fn new(listen: SocketAddr, store_url: impl Into<String>) -> Self {
        let mut s = Cli::parse_from(["comparison"]).serve;
        s.listen = listen;
        s.admin_listen = SocketAddr::from(([127, 0, 0, 1], 0));
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

    #[test]
    fn the_admin_port_has_its_own_flag_and_default() {
        let default = Cli::parse_from(["comparison"]).serve;
        assert_eq!(default.admin_listen.to_string(), "0.0.0.0:9091");
        let set = Cli::parse_from(["comparison", "serve", "--admin-listen", "127.0.0.1:7000"]);
        assert!(
            matches!(set.command, Some(Command::Serve(s)) if s.admin_listen.to_string() == "127.0.0.1:7000")
        );
        let embedded = ServeSettings::new(SocketAddr::from(([127, 0, 0, 1], 0)), "sqlite::memory:");
        assert_eq!(embedded.admin_listen.to_string(), "127.0.0.1:0");
    }
}
