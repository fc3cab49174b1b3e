//! The OpenTelemetry tracer provider and its OTLP/gRPC exporter.
//!
//! The SDK's batch processor exports from its own OS thread, while the tonic exporter needs a
//! Tokio reactor; [`OnRuntime`] runs every export on a small runtime owned by the pipeline, so
//! exporting never borrows the service's runtime and works wherever the processor calls it.
//! The batch queue is bounded (`OTEL_BSP_MAX_QUEUE_SIZE`, default 2048): when the collector is
//! down spans are dropped, never waited for, so a dead collector cannot slow the pipeline.

use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider, SpanData, SpanExporter,
};
use std::sync::Arc;
use std::time::Duration;

/// What the environment asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub service_name: String,
    /// The traces endpoint, when one is configured.
    pub endpoint: Option<String>,
    /// `OTEL_SDK_DISABLED=true`: no OpenTelemetry at all (logs carry no trace ids).
    pub sdk_disabled: bool,
    /// `OTEL_BSP_SCHEDULE_DELAY` (milliseconds): how long spans wait to be exported in a batch.
    pub schedule_delay: Option<Duration>,
}

impl Settings {
    pub fn from_env(default_service: &str) -> Self {
        Self::from_lookup(default_service, |name| std::env::var(name).ok())
    }

    /// As [`Settings::from_env`], reading variables through `get` (for tests).
    pub fn from_lookup(default_service: &str, get: impl Fn(&str) -> Option<String>) -> Self {
        let non_empty = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        let exporter_off = non_empty("OTEL_TRACES_EXPORTER").is_some_and(|v| v.trim() == "none");
        Self {
            service_name: non_empty("OTEL_SERVICE_NAME")
                .unwrap_or_else(|| default_service.to_string()),
            endpoint: (!exporter_off)
                .then(|| {
                    non_empty("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
                        .or_else(|| non_empty("OTEL_EXPORTER_OTLP_ENDPOINT"))
                })
                .flatten(),
            sdk_disabled: non_empty("OTEL_SDK_DISABLED")
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("true")),
            schedule_delay: non_empty("OTEL_BSP_SCHEDULE_DELAY")
                .and_then(|v| v.trim().parse().ok())
                .map(Duration::from_millis),
        }
    }
}

/// A running tracer provider, exporting or not.
pub struct Pipeline {
    provider: SdkTracerProvider,
    /// Present when exporting; shut down after the provider has flushed through it.
    runtime: Option<tokio::runtime::Runtime>,
}

impl Pipeline {
    /// Builds the provider. An exporter that cannot be built (e.g. a malformed endpoint) is
    /// reported on stderr and tracing goes on without export: telemetry must not stop a service.
    pub fn start(settings: &Settings) -> Self {
        let resource = Resource::builder()
            .with_service_name(settings.service_name.clone())
            .build();
        // Sampler: the SDK reads OTEL_TRACES_SAMPLER/_ARG (default parent-based always-on).
        let builder = SdkTracerProvider::builder().with_resource(resource);
        let Some(endpoint) = &settings.endpoint else {
            return Self {
                provider: builder.build(),
                runtime: None,
            };
        };
        match OnRuntime::build(endpoint) {
            Ok((exporter, runtime)) => {
                let mut batch = BatchConfigBuilder::default();
                if let Some(delay) = settings.schedule_delay {
                    batch = batch.with_scheduled_delay(delay);
                }
                let processor = BatchSpanProcessor::builder(exporter)
                    .with_batch_config(batch.build())
                    .build();
                Self {
                    provider: builder.with_span_processor(processor).build(),
                    runtime: Some(runtime),
                }
            }
            Err(e) => {
                eprintln!("telemetry: not exporting traces to {endpoint}: {e}");
                Self {
                    provider: builder.build(),
                    runtime: None,
                }
            }
        }
    }

    pub fn provider(&self) -> &SdkTracerProvider {
        &self.provider
    }

    pub fn exporting(&self) -> bool {
        self.runtime.is_some()
    }

    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown() {
            // Already shut down, or the last export timed out: nothing left to do about it.
            if !matches!(e, OTelSdkError::AlreadyShutdown) {
                eprintln!("telemetry: flushing spans at shutdown: {e}");
            }
        }
        if let Some(runtime) = self.runtime {
            runtime.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

/// The OTLP exporter, run on a runtime of its own.
#[derive(Debug)]
struct OnRuntime {
    inner: Arc<opentelemetry_otlp::SpanExporter>,
    handle: tokio::runtime::Handle,
}

impl OnRuntime {
    fn build(endpoint: &str) -> Result<(Self, tokio::runtime::Runtime), String> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("otlp-export")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the export runtime: {e}"))?;
        // The exporter reads the other OTEL_EXPORTER_OTLP_* variables (timeout, headers,
        // compression) itself; its channel needs a runtime to exist.
        let exporter = {
            let _entered = runtime.enter();
            opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .build()
                .map_err(|e| e.to_string())?
        };
        let handle = runtime.handle().clone();
        Ok((
            Self {
                inner: Arc::new(exporter),
                handle,
            },
            runtime,
        ))
    }
}

impl SpanExporter for OnRuntime {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let inner = self.inner.clone();
        match self
            .handle
            .spawn(async move { inner.export(batch).await })
            .await
        {
            Ok(result) => result,
            Err(e) => Err(OTelSdkError::InternalFailure(format!(
                "export task failed: {e}"
            ))),
        }
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.set_resource(resource);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)]) -> Settings {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup("watcher", |k| vars.get(k).cloned())
    }

    #[test]
    fn no_endpoint_means_no_export() {
        let s = settings(&[]);
        assert_eq!(s.endpoint, None);
        assert_eq!(s.service_name, "watcher");
        assert!(!s.sdk_disabled);
        assert_eq!(
            settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")]).endpoint,
            None
        );
    }

    #[test]
    fn the_traces_endpoint_wins_and_none_turns_export_off() {
        let both = settings(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://jaeger:4317"),
        ]);
        assert_eq!(both.endpoint.as_deref(), Some("http://jaeger:4317"));
        let off = settings(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
            ("OTEL_TRACES_EXPORTER", "none"),
        ]);
        assert_eq!(off.endpoint, None);
    }

    #[test]
    fn service_name_and_disabling_come_from_the_environment() {
        let s = settings(&[("OTEL_SERVICE_NAME", "w-1"), ("OTEL_SDK_DISABLED", "TRUE")]);
        assert_eq!(s.service_name, "w-1");
        assert!(s.sdk_disabled);
        assert!(!settings(&[("OTEL_SDK_DISABLED", "false")]).sdk_disabled);
    }
}
