//! Spans reach an OTLP/gRPC receiver in batches, parented across a propagated hop, and are
//! flushed at shutdown. One test per binary: `init` installs a process-wide subscriber.

use std::time::{Duration, Instant};
use tracing::info_span;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_are_exported_parented_across_a_hop_and_flushed_at_shutdown() {
    let sink = otlp_sink::Sink::start().await.expect("start the receiver");
    let settings = telemetry::otlp::Settings {
        service_name: "telemetry-test".into(),
        endpoint: Some(sink.endpoint()),
        sdk_disabled: false,
        // Longer than the test: only the shutdown flush can deliver the spans.
        schedule_delay: Some(Duration::from_secs(600)),
    };
    let guard = telemetry::init_with(settings, telemetry::LogFormat::Json);
    assert!(guard.exporting());

    // A producer span whose context travels as message attributes, and a consumer span on
    // the other side of the "queue" that continues it.
    let attributes = {
        let producer = info_span!(
            "publish",
            otel.kind = "producer",
            recipe_mesh.key = "makes/a.json"
        );
        telemetry::propagate::context_of(&producer)
    };
    assert!(attributes.contains_key("traceparent"), "{attributes:?}");
    // Queues refuse empty attribute values: no empty `tracestate`.
    assert!(attributes.values().all(|v| !v.is_empty()), "{attributes:?}");
    {
        let consumer = info_span!("process", otel.kind = "consumer");
        assert!(telemetry::propagate::continue_from(&consumer, &attributes));
        let _entered = consumer.enter();
        // Shaped like the spans `aws_setup::TraceCalls` opens for AWS calls.
        let _call = info_span!(
            "aws call",
            otel.name = "DynamoDB.TransactWriteItems",
            otel.kind = "client",
            rpc.system = "aws-api",
            rpc.service = "DynamoDB",
            rpc.method = "TransactWriteItems",
        )
        .entered();
    }
    assert_eq!(sink.exports(), 0, "batched: nothing sent before the flush");

    let started = Instant::now();
    tokio::task::spawn_blocking(move || guard.shutdown())
        .await
        .expect("shutdown");
    assert!(started.elapsed() < Duration::from_secs(10));
    let spans = sink.spans();
    let by_name = |name: &str| {
        spans
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no span {name:?} in {spans:#?}"))
    };
    let publish = by_name("publish");
    let process = by_name("process");
    let call = by_name("DynamoDB.TransactWriteItems");
    assert_eq!(publish.service, "telemetry-test");
    assert_eq!(publish.kind, otlp_sink::KIND_PRODUCER);
    assert_eq!(publish.attribute("recipe_mesh.key"), Some("makes/a.json"));
    assert_eq!(publish.parent_span_id, None);
    assert_eq!(process.kind, otlp_sink::KIND_CONSUMER);
    assert_eq!(process.trace_id, publish.trace_id);
    assert_eq!(
        process.parent_span_id.as_deref(),
        Some(publish.span_id.as_str())
    );
    assert_eq!(call.kind, otlp_sink::KIND_CLIENT);
    assert_eq!(call.trace_id, publish.trace_id);
    assert_eq!(
        call.parent_span_id.as_deref(),
        Some(process.span_id.as_str())
    );
    assert_eq!(call.attribute("rpc.system"), Some("aws-api"));
    assert_eq!(call.attribute("rpc.method"), Some("TransactWriteItems"));
}
