//! Logging, tracing and trace export, set up once for every service.
//!
//! [`init`] installs one `tracing` subscriber with three parts:
//!
//! - an `EnvFilter` (`RUST_LOG`, default `info`);
//! - log lines on stderr, readable text or JSON (`LOG_FORMAT=json`), each carrying the
//!   `trace_id` and `span_id` of the span it was logged in ([`logs`]);
//! - `tracing-opentelemetry`, turning spans into OpenTelemetry spans that are exported in
//!   batches over OTLP/gRPC when an endpoint is configured ([`otlp`]).
//!
//! Configuration is the standard OpenTelemetry environment: `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`), `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
//! `OTEL_TRACES_SAMPLER`/`_ARG`, `OTEL_SDK_DISABLED`, `OTEL_BSP_*`. Without an endpoint nothing
//! is exported and nothing complains; spans still get ids, so logs stay correlated.
//!
//! [`propagate`] carries W3C trace context across the asynchronous and remote hops (SQS message
//! attributes, gRPC metadata), so one make is one trace from watcher to store; [`grpc`] opens
//! the client and server spans of gRPC calls; [`spans`] holds the shared attribute names.

pub mod grpc;
pub mod logs;
pub mod otlp;
pub mod propagate;
pub mod spans;

pub use logs::LogFormat;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_subscriber::{EnvFilter, prelude::*};

/// Keeps the exporter alive; [`Telemetry::shutdown`] flushes what is still buffered.
#[must_use = "dropping the guard without shutdown() may lose the last spans"]
pub struct Telemetry {
    pipeline: Option<otlp::Pipeline>,
}

impl Telemetry {
    /// Whether spans leave the process (an OTLP endpoint is configured and the SDK enabled).
    pub fn exporting(&self) -> bool {
        self.pipeline
            .as_ref()
            .is_some_and(otlp::Pipeline::exporting)
    }

    /// Flushes buffered spans (bounded by the export timeout) and stops the exporter. Blocking:
    /// from async code use [`Telemetry::shutdown_async`].
    pub fn shutdown(self) {
        if let Some(pipeline) = self.pipeline {
            pipeline.shutdown();
        }
    }

    /// [`Telemetry::shutdown`] on a blocking thread, for the end of an async `main`.
    pub async fn shutdown_async(self) {
        if self.pipeline.is_some() {
            let _ = tokio::task::spawn_blocking(move || self.shutdown()).await;
        }
    }
}

/// Installs the global subscriber and propagator for `service` (the default
/// `service.name`; `OTEL_SERVICE_NAME` overrides it). Later calls in the same process install
/// nothing and return a guard that exports nothing, which keeps tests that start several
/// services in one process simple.
pub fn init(service: &str, format: LogFormat) -> Telemetry {
    init_with(otlp::Settings::from_env(service), format)
}

/// [`init`] with explicit settings instead of the `OTEL_*` variables they are read from.
pub fn init_with(settings: otlp::Settings, format: LogFormat) -> Telemetry {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let pipeline = (!settings.sdk_disabled).then(|| otlp::Pipeline::start(&settings));
    let otel_layer = pipeline.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.provider().tracer("recipe-mesh"))
            .with_error_records_to_exceptions(true)
    });
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(otel_layer)
        .with(logs::layer(format))
        .try_init()
        .is_ok();
    if !installed {
        if let Some(p) = pipeline {
            p.shutdown();
        }
        return Telemetry { pipeline: None };
    }
    // The global propagator is a no-op until one is set.
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    if let Some(p) = &pipeline {
        tracing::info!(
            service = %settings.service_name,
            exporting = p.exporting(),
            endpoint = settings.endpoint.as_deref().unwrap_or("none"),
            "telemetry started"
        );
    }
    Telemetry { pipeline }
}
