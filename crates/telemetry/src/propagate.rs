//! W3C trace context (`traceparent`, `tracestate`) across the hops that are not function
//! calls: message attributes on the job queue (watcher → sender) and gRPC metadata
//! (sender → comparison). Uses the global propagator that [`crate::init`] sets.

use opentelemetry::propagation::{Extractor, Injector};
use std::collections::BTreeMap;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The trace context of `span` as message attributes. Empty when the span is not traced (no
/// OpenTelemetry layer, or `OTEL_SDK_DISABLED`).
pub fn context_of(span: &Span) -> BTreeMap<String, String> {
    let mut carrier = MapCarrier(BTreeMap::new());
    let context = span.context();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&context, &mut carrier));
    carrier.0
}

/// Makes `span` a child of the trace context in `attributes` (as written by [`context_of`]),
/// if there is one. Returns whether a context was found. Call it before the span is entered.
pub fn continue_from(span: &Span, attributes: &BTreeMap<String, String>) -> bool {
    let carrier = MapRef(attributes);
    let context = opentelemetry::global::get_text_map_propagator(|p| p.extract(&carrier));
    use opentelemetry::trace::TraceContextExt as _;
    if !context.span().span_context().is_valid() {
        return false;
    }
    span.set_parent(context).is_ok()
}

/// Records on `span` a link to `other` (e.g. a batch operation to the items it carried, which
/// each belong to their own trace).
pub fn link(span: &Span, other: &Span) {
    use opentelemetry::trace::TraceContextExt as _;
    let context = other.context();
    let target = context.span().span_context().clone();
    if target.is_valid() {
        span.add_link(target);
    }
}

/// Writes the trace context of `span` into gRPC request metadata.
pub fn inject_metadata(span: &Span, metadata: &mut tonic::metadata::MetadataMap) {
    let context = span.context();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&context, &mut MetadataCarrier(metadata))
    });
}

/// Makes `span` a child of the trace context in incoming HTTP/2 (gRPC) headers, if any.
pub fn continue_from_headers(span: &Span, headers: &http::HeaderMap) -> bool {
    let context =
        opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderCarrier(headers)));
    use opentelemetry::trace::TraceContextExt as _;
    if !context.span().span_context().is_valid() {
        return false;
    }
    span.set_parent(context).is_ok()
}

struct MapCarrier(BTreeMap<String, String>);

impl Injector for MapCarrier {
    fn set(&mut self, key: &str, value: String) {
        // An empty `tracestate` is what the propagator writes when there is none; queues refuse
        // empty attribute values (SQS does), and leaving it out means the same.
        if !value.is_empty() {
            self.0.insert(key.to_string(), value);
        }
    }
}

struct MapRef<'a>(&'a BTreeMap<String, String>);

impl Extractor for MapRef<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

struct MetadataCarrier<'a>(&'a mut tonic::metadata::MetadataMap);

impl Injector for MetadataCarrier<'_> {
    fn set(&mut self, key: &str, value: String) {
        // traceparent/tracestate are valid ASCII metadata; anything else is skipped.
        if let (Ok(key), Ok(value)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            tonic::metadata::MetadataValue::try_from(value.as_str()),
        ) {
            self.0.insert(key, value);
        }
    }
}

struct HeaderCarrier<'a>(&'a http::HeaderMap);

impl Extractor for HeaderCarrier<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}
