//! The client side of the comparison service: one lazily connected channel, the two writes the
//! sender makes (`UpdateRecipe`, `RecordMake`) with their deadline, each timed by method and
//! status code, and the health check the circuit breaker uses to learn that the service is back
//! without spending any job's attempts.

use crate::config::Settings;
use crate::stats::SenderStats;
use anyhow::Context;
use pipeline_job::Job;
use recipe_proto::recipe::v1 as pb;
use recipe_proto::recipe::v1::comparison_service_client::ComparisonServiceClient;
use recipe_proto::recipe::v1::comparison_service_server::SERVICE_NAME;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tracing::Instrument;

/// How often an HTTP/2 ping checks the connection, and how long its answer may take. A
/// connection that died without a FIN (a node gone, a NAT entry dropped) is noticed within
/// these instead of at the next call's deadline.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// A channel to the comparison service that connects on first use, so that the sender starts
/// (and keeps its jobs waiting in the queue) while the service is down.
pub fn channel(settings: &Settings) -> anyhow::Result<Channel> {
    let endpoint = Endpoint::from_shared(settings.comparison_url.clone())
        .with_context(|| {
            format!(
                "SENDER_COMPARISON_URL (--comparison-url) {:?} is not a URL",
                settings.comparison_url
            )
        })?
        .connect_timeout(settings.connect_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true);
    Ok(endpoint.connect_lazy())
}

/// What the comparison service answered to an accepted job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// `changed` is false when nothing was written: a replay, or equal to the latest version.
    Recipe { version: u32, changed: bool },
    /// `duplicate` is true when the idempotency key had been recorded before.
    Make {
        make_id: String,
        recipe_version: u32,
        duplicate: bool,
    },
}

impl Accepted {
    /// True when the call wrote nothing because it had been done before.
    pub fn wrote_nothing(&self) -> bool {
        match self {
            Accepted::Recipe { changed, .. } => !changed,
            Accepted::Make { duplicate, .. } => *duplicate,
        }
    }
}

/// The comparison service as the job tasks use it; cheap to clone (shares the channel).
#[derive(Debug, Clone)]
pub struct Comparison {
    client: ComparisonServiceClient<Channel>,
    health: HealthClient<Channel>,
    timeout: Duration,
    /// Where each call's duration and status go.
    stats: Arc<SenderStats>,
}

impl Comparison {
    pub fn new(channel: Channel, timeout: Duration, stats: Arc<SenderStats>) -> Self {
        Self {
            client: ComparisonServiceClient::new(channel.clone()),
            health: HealthClient::new(channel),
            timeout,
            stats,
        }
    }

    /// Creates or updates the recipe (version 1 if it is new). The key names the file version,
    /// so a replay returns the first result and writes nothing.
    pub async fn update_recipe(
        &self,
        recipe: pb::Recipe,
        idempotency_key: String,
    ) -> Result<Accepted, Status> {
        let request = pb::UpdateRecipeRequest {
            recipe: Some(recipe),
            expected_version: 0,
            allow_missing: true,
            idempotency_key,
        };
        let mut client = self.client.clone();
        let reply = self
            .traced("UpdateRecipe", request, |r| client.update_recipe(r))
            .await?;
        let version = reply.recipe.map(|r| r.version).unwrap_or_default();
        Ok(Accepted::Recipe {
            version,
            changed: reply.changed,
        })
    }

    /// Records the make once per idempotency key.
    pub async fn record_make(
        &self,
        make: pb::Recipe,
        idempotency_key: String,
        job: &Job,
    ) -> Result<Accepted, Status> {
        let request = pb::RecordMakeRequest {
            make: Some(make),
            idempotency_key,
            source: job.source(),
            recipe_version: 0,
        };
        let mut client = self.client.clone();
        let reply = self
            .traced("RecordMake", request, |r| client.record_make(r))
            .await?;
        let (make_id, recipe_version) = reply
            .make
            .map(|m| (m.make_id, m.recipe_version))
            .unwrap_or_default();
        Ok(Accepted::Make {
            make_id,
            recipe_version,
            duplicate: reply.duplicate,
        })
    }

    /// Whether the service says it is serving. `Ok(())` also when it has no health service
    /// (then only a real call can tell); `Err` says why it is not usable.
    pub async fn check_health(&self) -> Result<(), String> {
        let mut health = self.health.clone();
        let request = tonic_health::pb::HealthCheckRequest {
            service: SERVICE_NAME.into(),
        };
        match self.deadline(health.check(self.request(request))).await {
            Ok(reply) if reply.status == ServingStatus::Serving as i32 => Ok(()),
            Ok(reply) => Err(format!(
                "health check says {}",
                ServingStatus::try_from(reply.status)
                    .map(|s| s.as_str_name())
                    .unwrap_or("an unknown status")
            )),
            Err(status) if status.code() == Code::Unimplemented => Ok(()),
            Err(status) => Err(format!(
                "health check failed: {}",
                crate::outcome::describe(&status)
            )),
        }
    }

    /// One call of `method` in a client span whose trace context travels in the metadata, so the
    /// comparison service's spans join the job's trace; its duration and status are recorded.
    async fn traced<M, T, F>(
        &self,
        method: &'static str,
        message: M,
        call: impl FnOnce(Request<M>) -> F,
    ) -> Result<T, Status>
    where
        F: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let span = telemetry::grpc::client_span(SERVICE_NAME, method);
        let request = telemetry::grpc::with_context(&span, self.request(message));
        let started = Instant::now();
        let reply = self.deadline(call(request)).instrument(span.clone()).await;
        let code = reply.as_ref().map_or_else(Status::code, |_| Code::Ok);
        self.stats.rpc(method, code, started.elapsed());
        telemetry::grpc::record_status(&span, code);
        reply
    }

    /// A request carrying the deadline, so the server gives up when the sender does.
    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request.set_timeout(self.timeout);
        request
    }

    /// Enforces the deadline on this side too: a server that accepted the connection but never
    /// answers (hung, or a black-holed network path) must not hold the job forever.
    async fn deadline<T>(
        &self,
        call: impl Future<Output = Result<tonic::Response<T>, Status>>,
    ) -> Result<T, Status> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => Err(status),
            Err(_) => Err(Status::deadline_exceeded(format!(
                "no answer from the comparison service within {:?}",
                self.timeout
            ))),
        }
    }
}
