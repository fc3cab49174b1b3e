//! Builds and runs the gRPC server: the API behind its limits, the standard health service
//! (driven by a periodic store ping) and reflection in both versions grpcurl may ask for; and
//! beside it the admin port (metrics, liveness, readiness following the same store ping).

use crate::api::ComparisonApi;
use crate::config::ServeSettings;
use crate::metrics::{ComparisonMetrics, MeteredStore, MetricsLayer};
use admin_http::{AdminServer, Readiness};
use anyhow::Context;
use prometheus_client::metrics::gauge::Gauge;
use recipe_proto::recipe::v1::comparison_service_server::ComparisonServiceServer;
use recipe_store::RecipeStore;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

/// The service name the health service reports for the API.
pub const SERVICE_NAME: &str = "recipe.v1.ComparisonService";

/// A bound, not yet running, comparison server.
pub struct Application {
    listener: TcpListener,
    /// The store, metered: every operation is timed and its errors counted.
    store: Arc<dyn RecipeStore>,
    settings: ServeSettings,
    metrics: Arc<ComparisonMetrics>,
    admin: AdminServer,
    readiness: Readiness,
}

impl Application {
    /// Opens the store (failing fast if it is not ready) and binds the gRPC and admin listeners.
    pub async fn build(settings: ServeSettings) -> anyhow::Result<Self> {
        let mut registry = admin_http::registry();
        let metrics = Arc::new(ComparisonMetrics::register(&mut registry));
        let store = recipe_store::open(&settings.store.url)
            .await
            .with_context(|| format!("opening store {}", settings.store.url))?;
        let store: Arc<dyn RecipeStore> = MeteredStore::wrap(store, metrics.clone());
        store
            .ping()
            .await
            .with_context(|| format!("store {} does not answer", settings.store.url))?;
        let listener = TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("binding {}", settings.listen))?;
        // Ready once the watchdog's first ping (just before serving) says so.
        let readiness = Readiness::not_ready("starting");
        let admin = AdminServer::bind(settings.admin_listen, registry, readiness.clone()).await?;
        Ok(Self {
            listener,
            store,
            settings,
            metrics,
            admin,
            readiness,
        })
    }

    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// Where /metrics, /livez and /readyz are served.
    pub fn admin_addr(&self) -> anyhow::Result<SocketAddr> {
        self.admin.local_addr()
    }

    /// Serves until `shutdown` completes, then lets in-flight requests finish. The admin port
    /// says not ready from the moment `shutdown` completes and closes last.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
        let admin = self.admin.spawn()?;
        let (reporter, health_service) = tonic_health::server::health_reporter();
        let health = StoreHealth {
            reporter,
            readiness: self.readiness.clone(),
            up: self.metrics.store_up.clone(),
        };
        // The first status is reported before the server accepts connections, so a probe that
        // arrives at once never finds the API's service name unknown.
        let first = health.report(self.store.as_ref(), None).await;
        let watchdog = tokio::spawn(watch_store(
            health,
            self.store.clone(),
            self.settings.health_interval,
            first,
        ));
        let stop_watching = watchdog.abort_handle();
        let readiness = self.readiness.clone();
        let shutdown = async move {
            shutdown.await;
            // No ping may report ready again while the server drains.
            stop_watching.abort();
            readiness.set_not_ready("shutting down");
        };

        // Each version lists the other too, so that grpcurl 1.8 (which only asks v1alpha) shows
        // every service the server really offers.
        let reflection_v1 = reflection(tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET)
            .build_v1()
            .context("building reflection v1")?;
        let reflection_v1alpha = reflection(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
            .build_v1alpha()
            .context("building reflection v1alpha")?;

        let api =
            ComparisonServiceServer::new(ComparisonApi::new(self.store, self.metrics.clone()))
                .max_decoding_message_size(self.settings.max_message_bytes);

        tracing::info!(addr = %self.listener.local_addr()?, store = %self.settings.store.url, "comparison service listening");
        let incoming = incoming(self.listener);
        let result = Server::builder()
            .timeout(self.settings.request_timeout)
            .concurrency_limit_per_connection(self.settings.concurrency_per_connection)
            .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
            .layer(telemetry::grpc::ServerTraceLayer)
            .layer(MetricsLayer::new(self.metrics.clone()))
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(api)
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await
            .context("gRPC server failed");
        watchdog.abort();
        admin.stop().await;
        tracing::info!("comparison service stopped");
        result
    }
}

/// Connections accepted from `listener`, with Nagle's algorithm off. `Server::tcp_nodelay` only
/// reaches sockets tonic binds itself; without this, small replies on our own listener wait for
/// delayed ACKs (the empty RPC's p99 was ~42 ms instead of ~1 ms).
pub fn incoming(listener: TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// Reflection over the API, health, the google.rpc error details (so clients decode them) and
/// `also`; the builder adds its own reflection version.
fn reflection(also: &'static [u8]) -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(recipe_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(also)
}

/// Where the store's health is published: the gRPC health service, the admin port's
/// readiness and the `store_up` gauge.
struct StoreHealth {
    reporter: HealthReporter,
    readiness: Readiness,
    up: Gauge,
}

impl StoreHealth {
    /// Pings the store and publishes the result for the whole server and for the API, when it
    /// differs from `last`. Returns the status now reported.
    async fn report(&self, store: &dyn RecipeStore, last: Option<ServingStatus>) -> ServingStatus {
        let (status, why) = match store.ping().await {
            Ok(()) => (ServingStatus::Serving, None),
            Err(e) => {
                tracing::warn!(error = %e, "store ping failed; reporting NOT_SERVING");
                (ServingStatus::NotServing, Some(e.to_string()))
            }
        };
        if last != Some(status) {
            self.reporter.set_service_status("", status).await;
            self.reporter.set_service_status(SERVICE_NAME, status).await;
            match why {
                None => self.readiness.set_ready(),
                Some(why) => self
                    .readiness
                    .set_not_ready(format!("store ping failed: {why}")),
            }
            self.up.set(i64::from(status == ServingStatus::Serving));
        }
        status
    }
}

/// Reports SERVING while the store answers and NOT_SERVING while it does not, so readiness
/// probes (gRPC health and the admin port's /readyz alike) take a replica with a broken store
/// out of rotation.
async fn watch_store(
    health: StoreHealth,
    store: Arc<dyn RecipeStore>,
    interval: std::time::Duration,
    mut last: ServingStatus,
) {
    loop {
        tokio::time::sleep(interval).await;
        last = health.report(store.as_ref(), Some(last)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_stream::StreamExt;

    #[tokio::test]
    async fn accepted_connections_have_nagle_disabled() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let mut accepted = incoming(listener);
        let _client = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let stream = accepted
            .next()
            .await
            .expect("a connection")
            .expect("accepted");
        assert!(stream.nodelay().expect("read TCP_NODELAY"));
    }
}
