//! One make, one trace: the three services export to an OTLP receiver inside the test (a real
//! OTLP/gRPC endpoint, as Jaeger's port 4317 is) and the spans of one make share one trace id
//! and form the chain watcher → queue → sender → gRPC → comparison → diff and store.

use e2e::traces::MakeTrace;
use e2e::workload::{makes, recipes};
use e2e::{Backend, Pipeline};
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_make_is_one_trace_across_the_three_services() {
    let sink = otlp_sink::Sink::start().await.expect("OTLP receiver");
    let endpoint = sink.endpoint();
    let mut p = Pipeline::new(
        Backend::Embedded,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
        ],
    )
    .await;
    p.start_all().await;
    p.upload_recipes(&recipes("t", 1), DEADLINE).await;
    p.upload_all(&makes("t", 1, 0, 1)).await;
    let stored = p.wait_for_makes("t-r000", 1, DEADLINE).await;
    let make = &stored[0];

    let spans = sink
        .wait_for(DEADLINE, |spans| {
            MakeTrace::find(spans, &make.source)
                .is_some_and(|t| t.check_chain(&make.make_id, None).is_ok())
        })
        .await;
    let trace = MakeTrace::find(&spans, &make.source)
        .unwrap_or_else(|| panic!("no watcher span for {}: {spans:#?}", make.source));
    if let Err(e) = trace.check_chain(&make.make_id, None) {
        panic!("{e}; the trace: {:#?}", trace.spans);
    }
    let services: std::collections::BTreeSet<&str> =
        trace.spans.iter().map(|s| s.service.as_str()).collect();
    assert_eq!(
        services.into_iter().collect::<Vec<_>>(),
        ["comparison", "sender", "watcher"]
    );
}
