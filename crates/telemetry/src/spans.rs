//! Names and attributes shared by the services' spans, following the OpenTelemetry semantic
//! conventions: `rpc.*` for gRPC and AWS calls, `messaging.*` for the job queue, `aws.*` for
//! S3 and DynamoDB specifics, and `recipe_mesh.*` for the domain (recipe id, make id, source
//! object key). `otel.name` and `otel.kind` are read by `tracing-opentelemetry` to name the
//! exported span and set its kind. AWS calls get their spans from `aws_setup::TraceCalls`.

/// `messaging.system` of the job queue. The same name on SQS and on the embedded queue, so
/// traces compare across deployments; the SQS calls themselves are `aws_call!` spans.
pub const MESSAGING_QUEUE: &str = "recipe_mesh.jobs";

/// Records what a request is about on the current span, where it declared these fields (the
/// gRPC server span does); empty values are left out.
pub fn record_subject(recipe_id: &str, make_id: &str, object_uri: &str) {
    let span = tracing::Span::current();
    for (name, value) in [
        ("recipe_mesh.recipe_id", recipe_id),
        ("recipe_mesh.make_id", make_id),
        ("recipe_mesh.object.uri", object_uri),
    ] {
        if !value.is_empty() {
            span.record(name, value);
        }
    }
}
