//! The comparison service's metrics (`recipe_mesh_comparison_…`, listed in `docs/metrics.md`)
//! and the two places that feed most of them without touching the handlers:
//!
//! - [`MetricsLayer`], a tower layer on the gRPC server beside the trace layer: requests by
//!   method and status code, and their latency by method;
//! - [`MeteredStore`], the store wrapped so that every operation's latency and every error (by
//!   operation and `StoreError` variant) is counted where it happens.
//!
//! The handlers add what only they know: diff durations and whether a make was new.

use admin_http::buckets;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use recipe_diff::RecipeStats;
use recipe_model::Recipe;
use recipe_store::{
    DiffBasis, NewMake, Page, RecipeStore, RecipeSummary, RecipeWrite, RecordOutcome, StoreError,
    StoredMake, StoredRecipe, WriteOptions,
};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

/// The methods of `recipe.v1.ComparisonService`, the only values of the `method` label besides
/// `other`: a label taken from the request path as it came would let any client create series.
pub const METHODS: &[&str] = &[
    "CreateRecipe",
    "GetRecipe",
    "UpdateRecipe",
    "ListRecipes",
    "RecordMake",
    "GetMake",
    "ListMakes",
    "CompareRecipes",
    "GetRecipeStats",
];

/// A diff takes ~50 µs for a typical recipe and ~4 ms for the largest allowed (benchmarks.md).
const DIFF_SECONDS: &[f64] = &[
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1,
];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodCode {
    pub method: &'static str,
    pub code: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Method {
    pub method: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Operation {
    pub operation: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationKind {
    pub operation: &'static str,
    pub kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    pub outcome: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn rpc_histogram() -> Histogram {
    Histogram::new(buckets::RPC_SECONDS.iter().copied())
}

/// Every metric of the service. Cheap to share: each field is a handle on the registered metric.
#[derive(Debug)]
pub struct ComparisonMetrics {
    pub requests: Family<MethodCode, Counter>,
    pub request_duration: HistogramFamily<Method>,
    pub diff_duration: Histogram,
    pub store_duration: HistogramFamily<Operation>,
    pub store_errors: Family<OperationKind, Counter>,
    pub makes_recorded: Family<Outcome, Counter>,
    pub store_up: Gauge,
}

impl ComparisonMetrics {
    /// Creates the metrics and registers them as `recipe_mesh_comparison_…` in `registry` (an
    /// [`admin_http::registry`]).
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            requests: Family::default(),
            request_duration: Family::new_with_constructor(rpc_histogram as fn() -> Histogram),
            diff_duration: Histogram::new(DIFF_SECONDS.iter().copied()),
            store_duration: Family::new_with_constructor(rpc_histogram as fn() -> Histogram),
            store_errors: Family::default(),
            makes_recorded: Family::default(),
            store_up: Gauge::default(),
        };
        // Both outcomes exist from the start at 0, so rates see them before the first make.
        for outcome in ["recorded", "duplicate"] {
            let _ = m.makes_recorded.get_or_create(&Outcome { outcome });
        }
        let r = registry.sub_registry_with_prefix("comparison");
        r.register(
            "requests",
            "gRPC requests answered, by method and status code (health and reflection excluded)",
            m.requests.clone(),
        );
        r.register_with_unit(
            "request_duration",
            "Time from a gRPC request's arrival to its answer, by method",
            Unit::Seconds,
            m.request_duration.clone(),
        );
        r.register_with_unit(
            "diff_duration",
            "Time to diff one make (or compared pair) against its recipe, on the blocking pool",
            Unit::Seconds,
            m.diff_duration.clone(),
        );
        r.register_with_unit(
            "store_duration",
            "Time of one store operation, failed ones included, by operation",
            Unit::Seconds,
            m.store_duration.clone(),
        );
        r.register(
            "store_errors",
            "Store operations that failed, by operation and kind (the StoreError variant); \
             unavailable, not_ready and internal are the store's own failures",
            m.store_errors.clone(),
        );
        r.register(
            "makes_recorded",
            "RecordMake calls that succeeded: outcome recorded (stored now) or duplicate (a \
             replay of an idempotency key, nothing written)",
            m.makes_recorded.clone(),
        );
        r.register(
            "store_up",
            "1 while the periodic store ping succeeds (the health service says SERVING), else 0",
            m.store_up.clone(),
        );
        m
    }

    /// Counts one successful RecordMake.
    pub fn make_recorded(&self, outcome: &RecordOutcome) {
        let outcome = match outcome {
            RecordOutcome::Recorded(_) => "recorded",
            RecordOutcome::Duplicate(_) => "duplicate",
        };
        self.makes_recorded
            .get_or_create(&Outcome { outcome })
            .inc();
    }
}

/// The `method` label for a request path `/recipe.v1.ComparisonService/RecordMake`.
pub fn method_label(path: &str) -> &'static str {
    path.strip_prefix('/')
        .and_then(|p| p.strip_prefix(crate::startup::SERVICE_NAME))
        .and_then(|p| p.strip_prefix('/'))
        .and_then(|m| METHODS.iter().find(|known| **known == m))
        .copied()
        .unwrap_or("other")
}

/// The `kind` label of a store error: its variant.
pub fn store_error_kind(e: &StoreError) -> &'static str {
    match e {
        StoreError::NotFound(_) => "not_found",
        StoreError::AlreadyExists(_) => "already_exists",
        StoreError::Conflict(_) => "conflict",
        StoreError::Stale(_) => "stale",
        StoreError::InvalidPageToken(_) => "invalid_page_token",
        StoreError::Unavailable(_) => "unavailable",
        StoreError::NotReady(_) => "not_ready",
        StoreError::Internal(_) => "internal",
    }
}

/// Counts and times every request the gRPC server answers.
#[derive(Debug, Clone)]
pub struct MetricsLayer {
    metrics: Arc<ComparisonMetrics>,
}

impl MetricsLayer {
    pub fn new(metrics: Arc<ComparisonMetrics>) -> Self {
        Self { metrics }
    }
}

impl<S> tower::Layer<S> for MetricsLayer {
    type Service = Metered<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Metered {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Metered<S> {
    inner: S,
    metrics: Arc<ComparisonMetrics>,
}

impl<S, B, RB> tower::Service<http::Request<B>> for Metered<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if telemetry::grpc::is_infrastructure(request.uri().path()) {
            return Box::pin(self.inner.call(request));
        }
        let timing = Timing {
            metrics: self.metrics.clone(),
            method: method_label(request.uri().path()),
            start: Instant::now(),
            done: false,
        };
        let future = self.inner.call(request);
        Box::pin(async move {
            let mut timing = timing;
            let result = future.await;
            let code = match &result {
                Ok(response) => telemetry::grpc::response_code(response),
                // The transport failed the request before any handler answered.
                Err(_) => tonic::Code::Unknown,
            };
            timing.finish(code);
            result
        })
    }
}

/// One request being timed; a request whose caller went away before the answer (its future
/// dropped) is counted as CANCELLED.
struct Timing {
    metrics: Arc<ComparisonMetrics>,
    method: &'static str,
    start: Instant,
    done: bool,
}

impl Timing {
    fn finish(&mut self, code: tonic::Code) {
        self.done = true;
        let method = self.method;
        self.metrics
            .requests
            .get_or_create(&MethodCode {
                method,
                code: telemetry::grpc::code_name(code),
            })
            .inc();
        self.metrics
            .request_duration
            .get_or_create(&Method { method })
            .observe(self.start.elapsed().as_secs_f64());
    }
}

impl Drop for Timing {
    fn drop(&mut self) {
        if !self.done {
            self.finish(tonic::Code::Cancelled);
        }
    }
}

/// A store that times every operation and counts its errors, then answers as the inner one.
pub struct MeteredStore {
    inner: Arc<dyn RecipeStore>,
    metrics: Arc<ComparisonMetrics>,
}

impl MeteredStore {
    pub fn wrap(inner: Arc<dyn RecipeStore>, metrics: Arc<ComparisonMetrics>) -> Arc<Self> {
        Arc::new(Self { inner, metrics })
    }

    async fn observe<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = recipe_store::Result<T>>,
    ) -> recipe_store::Result<T> {
        let start = Instant::now();
        let result = call.await;
        self.metrics
            .store_duration
            .get_or_create(&Operation { operation })
            .observe(start.elapsed().as_secs_f64());
        if let Err(e) = &result {
            self.metrics
                .store_errors
                .get_or_create(&OperationKind {
                    operation,
                    kind: store_error_kind(e),
                })
                .inc();
        }
        result
    }
}

#[async_trait::async_trait]
impl RecipeStore for MeteredStore {
    async fn create_recipe(
        &self,
        recipe: Recipe,
        opts: WriteOptions,
    ) -> recipe_store::Result<RecipeWrite> {
        self.observe("create_recipe", self.inner.create_recipe(recipe, opts))
            .await
    }

    async fn update_recipe(
        &self,
        recipe: Recipe,
        expected_version: Option<u32>,
        allow_missing: bool,
        opts: WriteOptions,
    ) -> recipe_store::Result<RecipeWrite> {
        self.observe(
            "update_recipe",
            self.inner
                .update_recipe(recipe, expected_version, allow_missing, opts),
        )
        .await
    }

    async fn get_recipe(
        &self,
        recipe_id: &str,
        version: Option<u32>,
    ) -> recipe_store::Result<StoredRecipe> {
        self.observe("get_recipe", self.inner.get_recipe(recipe_id, version))
            .await
    }

    async fn recipe_for_make(
        &self,
        recipe_id: &str,
        version: Option<u32>,
    ) -> recipe_store::Result<StoredRecipe> {
        self.observe(
            "recipe_for_make",
            self.inner.recipe_for_make(recipe_id, version),
        )
        .await
    }

    async fn list_recipes(
        &self,
        page_size: u32,
        page_token: Option<&str>,
    ) -> recipe_store::Result<Page<RecipeSummary>> {
        self.observe(
            "list_recipes",
            self.inner.list_recipes(page_size, page_token),
        )
        .await
    }

    async fn record_make_on(
        &self,
        make: NewMake,
        basis: DiffBasis,
    ) -> recipe_store::Result<RecordOutcome> {
        self.observe("record_make", self.inner.record_make_on(make, basis))
            .await
    }

    async fn get_make(&self, make_id: &str) -> recipe_store::Result<StoredMake> {
        self.observe("get_make", self.inner.get_make(make_id)).await
    }

    async fn list_makes(
        &self,
        recipe_id: &str,
        page_size: u32,
        page_token: Option<&str>,
    ) -> recipe_store::Result<Page<StoredMake>> {
        self.observe(
            "list_makes",
            self.inner.list_makes(recipe_id, page_size, page_token),
        )
        .await
    }

    async fn get_stats(&self, recipe_id: &str) -> recipe_store::Result<RecipeStats> {
        self.observe("get_stats", self.inner.get_stats(recipe_id))
            .await
    }

    async fn ping(&self) -> recipe_store::Result<()> {
        self.observe("ping", self.inner.ping()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn method_labels_are_the_api_methods_or_other() {
        assert_eq!(
            method_label("/recipe.v1.ComparisonService/RecordMake"),
            "RecordMake"
        );
        assert_eq!(
            method_label("/recipe.v1.ComparisonService/DropTables"),
            "other"
        );
        assert_eq!(method_label("/evil.Service/RecordMake"), "other");
        assert_eq!(method_label("/"), "other");
    }

    /// The fixed list must follow the contract: a method added to the proto and not here would
    /// be counted as `other`.
    #[test]
    fn the_method_list_is_the_services() {
        let set = prost_types::FileDescriptorSet::decode(recipe_proto::FILE_DESCRIPTOR_SET)
            .expect("descriptor set");
        let mut in_proto: Vec<String> = set
            .file
            .iter()
            .flat_map(|f| f.service.iter())
            .filter(|s| s.name() == "ComparisonService")
            .flat_map(|s| s.method.iter().map(|m| m.name().to_string()))
            .collect();
        in_proto.sort();
        let mut listed: Vec<String> = METHODS.iter().map(|m| (*m).to_string()).collect();
        listed.sort();
        assert_eq!(listed, in_proto);
    }

    #[test]
    fn store_error_kinds_are_snake_case_variant_names() {
        assert_eq!(
            store_error_kind(&StoreError::NotReady("table missing".into())),
            "not_ready"
        );
        assert_eq!(
            store_error_kind(&StoreError::InvalidPageToken("x".into())),
            "invalid_page_token"
        );
    }
}
