//! A client span per AWS API call, for every SDK client (S3, SQS, DynamoDB) alike.
//!
//! [`TraceCalls`] is an SDK interceptor: when an operation starts it opens an `INFO` span named
//! `Service.Operation` (e.g. `DynamoDB.TransactWriteItems`) under whatever span the caller is
//! in, with the `rpc.*` attributes of the OpenTelemetry conventions for AWS SDK calls, and
//! closes it when the operation finishes (after the SDK's own retries), marking failures. The
//! SDK's own spans are at `DEBUG`, below the default filter.

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeSerializationInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::{ConfigBag, Storable, StoreReplace};

/// Add to a client's configuration: `.interceptor(aws_setup::TraceCalls)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct TraceCalls;

/// The open span of one operation, kept in the operation's configuration bag.
#[derive(Debug, Clone)]
struct CallSpan(tracing::Span);

impl Storable for CallSpan {
    type Storer = StoreReplace<Self>;
}

impl Intercept for TraceCalls {
    fn name(&self) -> &'static str {
        "recipe-mesh.trace-calls"
    }

    // Not `read_before_execution`: a client's interceptors run that before the operation's
    // configuration, which names the operation, is applied.
    fn read_before_serialization(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let (service, operation) = cfg
            .load::<Metadata>()
            .map(|m| (m.service().to_string(), m.name().to_string()))
            .unwrap_or_default();
        let span = tracing::info_span!(
            "aws call",
            otel.name = %format_args!("{service}.{operation}"),
            otel.kind = "client",
            rpc.system = "aws-api",
            rpc.service = %service,
            rpc.method = %operation,
            otel.status_code = tracing::field::Empty,
            error.type = tracing::field::Empty,
        );
        cfg.interceptor_state().store_put(CallSpan(span));
        Ok(())
    }

    fn read_after_execution(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(CallSpan(span)) = cfg.load::<CallSpan>()
            && let Some(Err(e)) = context.output_or_error()
        {
            span.record("otel.status_code", "ERROR");
            let kind = if e.is_operation_error() {
                "operation"
            } else if e.is_timeout_error() {
                "timeout"
            } else {
                "transport"
            };
            span.record("error.type", kind);
        }
        // The bag (and with it the span) is dropped when the operation returns: the span ends.
        cfg.interceptor_state().unset::<CallSpan>();
        Ok(())
    }
}
