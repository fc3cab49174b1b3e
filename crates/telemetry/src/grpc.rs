//! Spans on both sides of a gRPC call, following the `rpc.*` semantic conventions.
//!
//! - Server: [`ServerTraceLayer`], a tower layer for `tonic::transport::Server::layer`, opens
//!   one `SERVER` span per request named `package.Service/Method` (except the `grpc.*` health
//!   and reflection services), continues the caller's trace
//!   from the `traceparent` header, and records the gRPC status code (trailers-only error
//!   responses carry it in the headers; a unary answer without one is OK).
//! - Client: [`client_span`] names the `CLIENT` span, [`with_context`] puts its trace context
//!   into the request metadata.
//!
//! [`code_name`] and [`response_code`] are shared with the services' gRPC metrics, so spans,
//! logs and metrics name a status the same way.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tracing::{Instrument, Span};

/// A `CLIENT` span for calling `/service/method`.
pub fn client_span(service: &str, method: &str) -> Span {
    tracing::info_span!(
        "grpc client",
        otel.name = %format_args!("{service}/{method}"),
        otel.kind = "client",
        rpc.system = "grpc",
        rpc.service = service,
        rpc.method = method,
        rpc.grpc.status_code = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    )
}

/// Records the outcome of a call on its span.
pub fn record_status(span: &Span, code: tonic::Code) {
    span.record("rpc.grpc.status_code", code as i32);
    if code != tonic::Code::Ok {
        span.record("otel.status_code", "ERROR");
    }
}

/// The canonical upper-case name of a gRPC code, as the gRPC spec, grpcurl and the metrics'
/// `code` labels spell it.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// The gRPC status a server response carries in its headers: set on trailers-only answers
/// (every error tonic returns from a unary handler); a unary answer without one is OK.
pub fn response_code<B>(response: &http::Response<B>) -> tonic::Code {
    let code = response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .unwrap_or(0);
    tonic::Code::from_i32(code)
}

/// `request` with the trace context of `span` in its metadata.
pub fn with_context<T>(span: &Span, mut request: tonic::Request<T>) -> tonic::Request<T> {
    crate::propagate::inject_metadata(span, request.metadata_mut());
    request
}

/// Whether a request path is gRPC's own health or reflection service (`/grpc.health.v1...`,
/// `/grpc.reflection...`): probes and tools call them every few seconds, so tracing or counting
/// them would bury the API's own calls.
pub fn is_infrastructure(path: &str) -> bool {
    path.starts_with("/grpc.")
}

/// Traces every request a tonic server handles.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServerTraceLayer;

impl<S> tower::Layer<S> for ServerTraceLayer {
    type Service = ServerTrace<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ServerTrace { inner }
    }
}

#[derive(Debug, Clone)]
pub struct ServerTrace<S> {
    inner: S,
}

impl<S, B, RB> tower::Service<http::Request<B>> for ServerTrace<S>
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
        let path = request.uri().path();
        if is_infrastructure(path) {
            return Box::pin(self.inner.call(request));
        }
        let (service, method) = path
            .trim_start_matches('/')
            .split_once('/')
            .unwrap_or((path, ""));
        let span = tracing::info_span!(
            "grpc server",
            otel.name = %path.trim_start_matches('/'),
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = service,
            rpc.method = method,
            rpc.grpc.status_code = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
            // Filled in by the handler (see `spans::record_subject`).
            recipe_mesh.recipe_id = tracing::field::Empty,
            recipe_mesh.make_id = tracing::field::Empty,
            recipe_mesh.object.uri = tracing::field::Empty,
        );
        crate::propagate::continue_from_headers(&span, request.headers());
        let future = span.in_scope(|| self.inner.call(request));
        let record = span.clone();
        Box::pin(
            async move {
                let result = future.await;
                if let Ok(response) = &result {
                    record_status(&record, response_code(response));
                }
                result
            }
            .instrument(span),
        )
    }
}
