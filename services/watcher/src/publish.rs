//! Jobs onto the queue, each starting the trace of its file.
//!
//! Every job gets a root producer span (`jobs create`) carrying the object's key and ETag; its
//! W3C trace context travels in the message's attributes, so the sender, the gRPC call and the
//! comparison service continue that one trace. The batch send is a span of its own (one
//! `SendMessageBatch` serves up to ten files) linked to the jobs it carried.

use message_queue::{MessageQueue, OutgoingMessage, QueueError};
use pipeline_job::Job;
use tracing::{Instrument, Span};

/// Sends `jobs` in batches; each job's span ends once the batch holding it was sent (or not).
pub async fn send_jobs(queue: &dyn MessageQueue, jobs: &[Job]) -> Result<(), QueueError> {
    let spans: Vec<Span> = jobs.iter().map(job_span).collect();
    let messages: Vec<OutgoingMessage> = jobs
        .iter()
        .zip(&spans)
        .map(|(job, span)| OutgoingMessage {
            body: job.to_json(),
            attributes: telemetry::propagate::context_of(span),
        })
        .collect();
    let send = tracing::info_span!(
        "jobs send",
        otel.kind = "producer",
        messaging.system = telemetry::spans::MESSAGING_QUEUE,
        messaging.operation.type = "send",
        messaging.operation.name = "send",
        messaging.batch.message_count = jobs.len(),
        otel.status_code = tracing::field::Empty,
    );
    for span in &spans {
        telemetry::propagate::link(&send, span);
    }
    let result = queue.send_batch(messages).instrument(send.clone()).await;
    if let Err(e) = &result {
        send.record("otel.status_code", "ERROR");
        for span in &spans {
            span.in_scope(|| tracing::warn!(error = %e, "job not sent"));
        }
    }
    result
}

/// The root span of one file's trace.
fn job_span(job: &Job) -> Span {
    tracing::info_span!(
        parent: None,
        "jobs create",
        otel.kind = "producer",
        messaging.system = telemetry::spans::MESSAGING_QUEUE,
        messaging.operation.type = "create",
        messaging.operation.name = "create",
        recipe_mesh.job.kind = job.kind.as_str(),
        recipe_mesh.object.key = %job.key,
        recipe_mesh.object.etag = %job.etag,
        recipe_mesh.object.uri = %job.object_uri(),
        recipe_mesh.detected_by = ?job.detected_by,
    )
}
