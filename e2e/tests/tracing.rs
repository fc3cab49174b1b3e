//! One make, one trace: the three services export to an OTLP receiver inside the test (a real
//! OTLP/gRPC endpoint, as Jaeger's port 4317 is) and the spans of one make share one trace id
//! and form the chain watcher → queue → sender → gRPC → comparison → diff and store.

use e2e::Backend;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_make_is_one_trace_across_the_three_services() {
    let trace = e2e::traces::trace_one_make(Backend::Embedded, "t", None).await;
    let services: std::collections::BTreeSet<&str> =
        trace.spans.iter().map(|s| s.service.as_str()).collect();
    assert_eq!(
        services.into_iter().collect::<Vec<_>>(),
        ["comparison", "sender", "watcher"]
    );
}
