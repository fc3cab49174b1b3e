//! The admin port every service opens beside its real work: a small HTTP/1 server with
//!
//! - `GET /metrics`: the service's metrics in the Prometheus text exposition format (0.0.4);
//! - `GET /livez`: 200 while the process runs (the server answering is the proof);
//! - `GET /readyz`: 200, or 503 with a one-line reason, from a [`Readiness`] flag the service
//!   sets (the comparison service from its store health, the sender from its circuit breaker,
//!   the watcher from its last pass).
//!
//! Kubernetes probes must be `httpGet` probes on this port: Linkerd's default-deny policy
//! authorizes the kubelet only for those. Metric names start with [`METRIC_PREFIX`]; each service
//! registers its own metrics in the [`registry`] it hands to [`AdminServer::bind`].
//! [`scrape`] reads the port back, for tests and scripts. `docs/metrics.md` lists every metric.

pub mod scrape;

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use prometheus_client;

/// Every metric name starts with this (and an underscore).
pub const METRIC_PREFIX: &str = "recipe_mesh";

/// `Content-Type` of `/metrics`.
pub const METRICS_CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// How long a stopping admin server waits for open scrapes before it closes them.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// Bucket bounds shared by the histograms of one kind, so that client and server latencies can
/// be compared bucket by bucket.
pub mod buckets {
    /// A gRPC call or a store operation: 0.5 ms (a cached read on the embedded store) to 30 s
    /// (the longest deadline in the pipeline).
    pub const RPC_SECONDS: &[f64] = &[
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ];
}

/// Declares an enum whose variants are the only values a label can take, with its label
/// spelling, `as_str` and `ALL` (every variant, so totals can be summed over a family). Label
/// values from enums keep series few and known: never an id or a key.
///
/// ```
/// admin_http::label_values! {
///     /// What a job is about.
///     pub enum Kind { Recipe => "recipe", Make => "make" }
/// }
/// assert_eq!(Kind::ALL.iter().map(|k| k.as_str()).collect::<Vec<_>>(), ["recipe", "make"]);
/// ```
#[macro_export]
macro_rules! label_values {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $($(#[$vmeta:meta])* $variant:ident => $value:literal),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
        $vis enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The label's spelling.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $value),+ }
            }
        }

        impl $crate::prometheus_client::encoding::EncodeLabelValue for $name {
            fn encode(
                &self,
                encoder: &mut $crate::prometheus_client::encoding::LabelValueEncoder,
            ) -> ::std::result::Result<(), ::std::fmt::Error> {
                $crate::prometheus_client::encoding::EncodeLabelValue::encode(&self.as_str(), encoder)
            }
        }
    };
}

/// A registry whose metrics are all named `recipe_mesh_…`.
pub fn registry() -> Registry {
    Registry::with_prefix(METRIC_PREFIX)
}

/// Whether the service is ready for work, and if not, why. Cheap to clone; every clone is the
/// same flag.
#[derive(Debug, Clone)]
pub struct Readiness {
    /// `None` when ready, else the reason it is not.
    not_ready: Arc<RwLock<Option<String>>>,
}

impl Readiness {
    /// A flag that starts ready.
    pub fn ready() -> Self {
        Self {
            not_ready: Arc::new(RwLock::new(None)),
        }
    }

    /// A flag that starts not ready, for `reason`.
    pub fn not_ready(reason: impl Into<String>) -> Self {
        Self {
            not_ready: Arc::new(RwLock::new(Some(reason.into()))),
        }
    }

    pub fn set_ready(&self) {
        *self.write() = None;
    }

    /// Marks the service not ready. Only the first line of `reason` is kept: `/readyz` answers
    /// with one line.
    pub fn set_not_ready(&self, reason: impl Into<String>) {
        let reason = reason.into();
        let line = reason.lines().next().unwrap_or("").trim();
        let line = if line.is_empty() { "not ready" } else { line };
        *self.write() = Some(line.to_string());
    }

    /// `Ok` when ready, else the reason.
    pub fn status(&self) -> Result<(), String> {
        match &*self.not_ready.read().unwrap_or_else(|p| p.into_inner()) {
            None => Ok(()),
            Some(reason) => Err(reason.clone()),
        }
    }

    pub fn is_ready(&self) -> bool {
        self.status().is_ok()
    }

    /// The flag, even if a thread panicked while setting it: a plain value cannot be left
    /// half-written.
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Option<String>> {
        self.not_ready.write().unwrap_or_else(|p| p.into_inner())
    }
}

struct Shared {
    registry: Registry,
    readiness: Readiness,
}

/// A bound, not yet serving, admin server.
pub struct AdminServer {
    listener: TcpListener,
    shared: Arc<Shared>,
}

impl AdminServer {
    /// Binds `addr` (failing with the address in the message, e.g. when the port is taken).
    pub async fn bind(
        addr: SocketAddr,
        registry: Registry,
        readiness: Readiness,
    ) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the admin port {addr} (metrics and probes)"))?;
        Ok(Self {
            listener,
            shared: Arc::new(Shared {
                registry,
                readiness,
            }),
        })
    }

    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        self.listener
            .local_addr()
            .context("reading the admin port's address")
    }

    /// Serves until `shutdown` completes, then until open requests are answered.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let addr = self.local_addr()?;
        let router = Router::new()
            .route("/metrics", get(metrics))
            .route("/livez", get(livez))
            .route("/readyz", get(readyz))
            .with_state(self.shared);
        tracing::info!(%addr, "admin port listening: /metrics, /livez, /readyz");
        axum::serve(self.listener, router)
            .with_graceful_shutdown(shutdown)
            .await
            .with_context(|| format!("admin port {addr} failed"))
    }

    /// Serves in a task of its own until [`RunningAdmin::stop`].
    pub fn spawn(self) -> anyhow::Result<RunningAdmin> {
        let addr = self.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(self.serve(async {
            let _ = stopped.await;
        }));
        Ok(RunningAdmin {
            addr,
            stop: Some(stop),
            task,
        })
    }
}

/// An admin server serving in its own task.
pub struct RunningAdmin {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl RunningAdmin {
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets open requests finish for a few seconds, then closes the rest.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match tokio::time::timeout(STOP_TIMEOUT, &mut self.task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!(error = %format!("{e:#}"), "admin port failed"),
            Ok(Err(e)) => tracing::warn!(error = %e, "admin port task failed"),
            Err(_) => {
                // A scraper holding its connection open must not hold up the service's exit.
                self.task.abort();
                tracing::debug!("admin port closed with requests still open");
            }
        }
    }
}

impl Drop for RunningAdmin {
    /// A service that fails before stopping its admin port must not leave it serving.
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn metrics(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let mut body = String::new();
    match prometheus_client::encoding::prometheus_text::encode(&mut body, &shared.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)],
            body,
        ),
        Err(e) => {
            tracing::error!(error = %e, "encoding the metrics failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                [(header::CONTENT_TYPE, TEXT)],
                "encoding the metrics failed\n".to_string(),
            )
        }
    }
}

const TEXT: &str = "text/plain; charset=utf-8";

async fn livez() -> impl IntoResponse {
    (StatusCode::OK, [(header::CONTENT_TYPE, TEXT)], "ok\n")
}

async fn readyz(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    match shared.readiness.status() {
        Ok(()) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, TEXT)],
            "ready\n".to_string(),
        ),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, TEXT)],
            format!("not ready: {reason}\n"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::family::Family;

    async fn serve(registry: Registry, readiness: Readiness) -> RunningAdmin {
        AdminServer::bind("127.0.0.1:0".parse().unwrap(), registry, readiness)
            .await
            .expect("bind")
            .spawn()
            .expect("serve")
    }

    #[tokio::test]
    async fn metrics_are_served_in_the_prometheus_text_format() {
        let mut registry = registry();
        let jobs = Family::<Vec<(&'static str, &'static str)>, Counter>::default();
        registry
            .sub_registry_with_prefix("test")
            .register("jobs", "Jobs done", jobs.clone());
        jobs.get_or_create(&vec![("kind", "make")]).inc_by(3);
        let admin = serve(registry, Readiness::ready()).await;

        let got = scrape::get(admin.local_addr(), "/metrics")
            .await
            .expect("GET");
        assert_eq!(got.status, 200);
        assert_eq!(
            got.content_type.as_deref(),
            Some("text/plain; version=0.0.4; charset=utf-8")
        );
        assert!(
            got.body
                .contains("# TYPE recipe_mesh_test_jobs_total counter\n"),
            "{}",
            got.body
        );
        assert!(
            got.body
                .contains("recipe_mesh_test_jobs_total{kind=\"make\"} 3\n"),
            "{}",
            got.body
        );
        assert_eq!(
            scrape::value(
                &got.body,
                "recipe_mesh_test_jobs_total",
                &[("kind", "make")]
            ),
            Some(3.0)
        );
        admin.stop().await;
    }

    #[tokio::test]
    async fn readiness_follows_the_flag_and_liveness_does_not() {
        let readiness = Readiness::not_ready("first pass pending");
        let admin = serve(registry(), readiness.clone()).await;
        let addr = admin.local_addr();

        let got = scrape::get(addr, "/readyz").await.expect("GET");
        assert_eq!(
            (got.status, got.body.as_str()),
            (503, "not ready: first pass pending\n")
        );
        assert_eq!(scrape::get(addr, "/livez").await.expect("GET").status, 200);

        readiness.set_ready();
        let got = scrape::get(addr, "/readyz").await.expect("GET");
        assert_eq!((got.status, got.body.as_str()), (200, "ready\n"));

        readiness.set_not_ready("store unavailable: timeout\nsecond line");
        let got = scrape::get(addr, "/readyz").await.expect("GET");
        assert_eq!(
            (got.status, got.body.as_str()),
            (503, "not ready: store unavailable: timeout\n")
        );
        assert_eq!(scrape::get(addr, "/livez").await.expect("GET").status, 200);
        assert_eq!(
            scrape::get(addr, "/nothing").await.expect("GET").status,
            404
        );
        admin.stop().await;
    }

    #[tokio::test]
    async fn stopping_closes_the_port() {
        let admin = serve(registry(), Readiness::ready()).await;
        let addr = admin.local_addr();
        assert_eq!(scrape::get(addr, "/livez").await.expect("GET").status, 200);
        admin.stop().await;
        assert!(scrape::get(addr, "/livez").await.is_err());
    }

    #[tokio::test]
    async fn a_taken_port_is_named_in_the_error() {
        let first = serve(registry(), Readiness::ready()).await;
        let err = AdminServer::bind(first.local_addr(), registry(), Readiness::ready())
            .await
            .err()
            .expect("the port is taken");
        assert!(
            format!("{err:#}").contains(&first.local_addr().to_string()),
            "{err:#}"
        );
        first.stop().await;
    }
}
