//! Checks on the spans one make leaves in an OTLP receiver: one trace, from the watcher's
//! `jobs create` through the queue, the sender, the gRPC call and the comparison service, each
//! span parented on the one before it.

use crate::workload::{makes, recipes};
use crate::{Backend, Pipeline};
use otlp_sink::{KIND_CLIENT, KIND_CONSUMER, KIND_PRODUCER, KIND_SERVER, Sink, Span};
use std::time::Duration;

/// Runs the pipeline on `backend` exporting to a receiver inside the test, stores one recipe
/// and one make of it (ids starting with `tag`), and returns the make's trace once its chain
/// (see [`MakeTrace::check_chain`]) is complete; panics with the spans if it does not become so.
pub async fn trace_one_make(backend: Backend, tag: &str, store_call: Option<&str>) -> MakeTrace {
    const DEADLINE: Duration = Duration::from_secs(120);
    let sink = Sink::start().await.expect("OTLP receiver");
    let endpoint = sink.endpoint();
    let mut p = Pipeline::new(
        backend,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
        ],
    )
    .await;
    p.start_all().await;
    p.upload_recipes(&recipes(tag, 1), DEADLINE).await;
    p.upload_all(&makes(tag, 1, 0, 1)).await;
    let stored = p.wait_for_makes(&format!("{tag}-r000"), 1, DEADLINE).await;
    let make = &stored[0];
    let complete = |spans: &[Span]| {
        MakeTrace::find(spans, &make.source)
            .is_some_and(|t| t.check_chain(&make.make_id, store_call).is_ok())
    };
    let spans = sink.wait_for(DEADLINE, complete).await;
    let trace = MakeTrace::find(&spans, &make.source)
        .unwrap_or_else(|| panic!("no watcher span for {}: {spans:#?}", make.source));
    if let Err(e) = trace.check_chain(&make.make_id, store_call) {
        panic!("{e}; the trace: {:#?}", trace.spans);
    }
    trace
}

/// The spans of one make's trace, found from the object it came from.
pub struct MakeTrace {
    pub spans: Vec<Span>,
    pub create: Span,
}

impl MakeTrace {
    /// The trace whose watcher span names `object_uri`, if its root has arrived.
    pub fn find(all: &[Span], object_uri: &str) -> Option<Self> {
        let create = all.iter().find(|s| {
            s.service == "watcher"
                && s.name == "jobs create"
                && s.attribute("recipe_mesh.object.uri") == Some(object_uri)
        })?;
        Some(Self {
            spans: all
                .iter()
                .filter(|s| s.trace_id == create.trace_id)
                .cloned()
                .collect(),
            create: create.clone(),
        })
    }

    /// The one span of `service` named `name`, with the parent it must have.
    fn child(&self, service: &str, name: &str, parent: &Span) -> Result<&Span, String> {
        let found: Vec<&Span> = self
            .spans
            .iter()
            .filter(|s| s.service == service && s.name == name)
            .collect();
        match found.as_slice() {
            [one] if one.parent_span_id.as_deref() == Some(parent.span_id.as_str()) => Ok(one),
            [one] => Err(format!(
                "{service} span {name:?} has parent {:?}, expected {:?} ({})",
                one.parent_span_id, parent.span_id, parent.name
            )),
            [] => Err(format!("no {service} span {name:?} in the trace yet")),
            many => Err(format!("{} {service} spans {name:?}", many.len())),
        }
    }

    /// Checks the chain watcher → sender → gRPC client → comparison server → diff and store,
    /// and returns the server span. `store_call`, when given, is the AWS call expected under
    /// the store span (e.g. `DynamoDB.TransactWriteItems`).
    pub fn check_chain(&self, make_id: &str, store_call: Option<&str>) -> Result<&Span, String> {
        let create = &self.create;
        expect(
            create.parent_span_id.is_none(),
            "the watcher span starts the trace",
        )?;
        expect(
            create.kind == KIND_PRODUCER,
            "jobs create is a producer span",
        )?;
        let process = self.child("sender", "job process", create)?;
        expect(
            process.kind == KIND_CONSUMER,
            "job process is a consumer span",
        )?;
        let call = self.child("sender", "recipe.v1.ComparisonService/RecordMake", process)?;
        expect(
            call.kind == KIND_CLIENT,
            "the sender's gRPC span is a client span",
        )?;
        expect(
            call.attribute("rpc.system") == Some("grpc"),
            "rpc.system on the client span",
        )?;
        let server = self.child("comparison", "recipe.v1.ComparisonService/RecordMake", call)?;
        expect(
            server.kind == KIND_SERVER,
            "the comparison span is a server span",
        )?;
        expect(
            server.attribute("recipe_mesh.make_id") == Some(make_id),
            "the server span names the make",
        )?;
        expect(
            server.attribute("rpc.grpc.status_code") == Some("0"),
            "the server span records OK",
        )?;
        self.child("comparison", "diff", server)?;
        let store = self.child("comparison", "store.record_make", server)?;
        if let Some(call) = store_call {
            let aws = self.child("comparison", call, store)?;
            expect(aws.kind == KIND_CLIENT, "AWS calls are client spans")?;
            expect(
                aws.attribute("rpc.system") == Some("aws-api"),
                "rpc.system on the AWS span",
            )?;
        }
        Ok(server)
    }
}

fn expect(ok: bool, what: &str) -> Result<(), String> {
    if ok { Ok(()) } else { Err(what.to_string()) }
}
