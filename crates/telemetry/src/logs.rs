//! Log lines on stderr that lead to their trace: every line logged inside a span ends with the
//! span's `trace_id` and `span_id` (text) or carries them as fields (JSON), the ids Jaeger
//! shows, so an operator can go from a log line to its trace and back.
//!
//! The lines themselves are `tracing-subscriber`'s: [`WithTraceIds`] formats the event with the
//! usual formatter and appends the ids. Logs go to stderr so that stdout stays free for a
//! command's own output (e.g. `sender dead-letters`).

use opentelemetry::trace::TraceContextExt;
use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};
use tracing::dispatcher::WeakDispatch;
use tracing::{Dispatch, Event, Subscriber};
use tracing_subscriber::Layer as _;
use tracing_subscriber::fmt::format::{Format, Full, Json, JsonFields, Writer};
use tracing_subscriber::fmt::{self, FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    /// Reads `LOG_FORMAT` (`text` or `json`; anything else falls back to text).
    pub fn from_env() -> Self {
        match std::env::var("LOG_FORMAT").as_deref() {
            Ok("json") => LogFormat::Json,
            _ => LogFormat::Text,
        }
    }
}

/// The formatting layer for `format`, writing to stderr.
pub fn layer<S>(format: LogFormat) -> Box<dyn tracing_subscriber::Layer<S> + Send + Sync>
where
    S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
{
    layer_to(format, std::io::stderr)
}

/// The formatting layer for `format`, writing to `writer`.
pub fn layer_to<S, W>(
    format: LogFormat,
    writer: W,
) -> Box<dyn tracing_subscriber::Layer<S> + Send + Sync>
where
    S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
    W: for<'w> fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    // The formatter finds a span's OpenTelemetry ids through the dispatcher it runs in, which
    // `tracing` does not hand to formatters: `DispatchHook` catches it when it is installed.
    let dispatch = Arc::new(OnceLock::new());
    let hook = DispatchHook(dispatch.clone());
    match format {
        LogFormat::Text => Box::new(
            fmt::layer()
                .with_writer(writer)
                .with_ansi(false)
                .event_format(WithTraceIds {
                    inner: Format::<Full>::default(),
                    dispatch,
                })
                .and_then(hook),
        ),
        LogFormat::Json => Box::new(
            fmt::layer()
                .with_writer(writer)
                .fmt_fields(JsonFields::new())
                .event_format(WithTraceIds {
                    inner: fmt::format().json(),
                    dispatch,
                })
                .and_then(hook),
        ),
    }
}

struct DispatchHook(Arc<OnceLock<WeakDispatch>>);

impl<S: Subscriber> tracing_subscriber::Layer<S> for DispatchHook {
    fn on_register_dispatch(&self, subscriber: &Dispatch) {
        let _ = self.0.set(subscriber.downgrade());
    }
}

/// Formats with the inner formatter, then adds the current span's trace and span ids.
pub struct WithTraceIds<F> {
    inner: F,
    dispatch: Arc<OnceLock<WeakDispatch>>,
}

/// How the inner formatter's line is extended: appended text, or two more JSON fields.
pub trait AppendIds {
    fn append(line: &mut String, trace_id: &str, span_id: &str);
}

impl AppendIds for Format<Full> {
    fn append(line: &mut String, trace_id: &str, span_id: &str) {
        let _ = write!(line, " trace_id={trace_id} span_id={span_id}");
    }
}

impl AppendIds for Format<Json> {
    fn append(line: &mut String, trace_id: &str, span_id: &str) {
        // The inner line is one JSON object; the ids are hex, so no escaping is needed.
        if line.ends_with('}') {
            line.pop();
            let _ = write!(line, r#","trace_id":"{trace_id}","span_id":"{span_id}"}}"#);
        }
    }
}

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N> + AppendIds,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let mut line = String::new();
        // Plain text: the line is re-written with the ids appended, colours would get in the way.
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        let ended = line.ends_with('\n');
        if ended {
            line.pop();
        }
        // Only lines logged inside a span that belongs to a trace carry ids.
        let context = ctx.lookup_current().and_then(|span| {
            let dispatch = self.dispatch.get()?.upgrade()?;
            tracing_opentelemetry::get_otel_context(&span.id(), &dispatch)
        });
        if let Some(context) = context {
            let span = context.span();
            let ids = span.span_context();
            if ids.is_valid() {
                F::append(
                    &mut line,
                    &ids.trace_id().to_string(),
                    &ids.span_id().to_string(),
                );
            }
        }
        writer.write_str(&line)?;
        if ended {
            writer.write_char('\n')?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::TracerProvider as _;
    use std::sync::Mutex;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    use tracing_subscriber::prelude::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Logs `inside` within a span and `outside` without one; returns the lines and the span's
    /// trace and span ids.
    fn log_lines(format: LogFormat) -> (Vec<String>, String, String) {
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")))
            .with(layer_to(format, move || writer.clone()));
        let ids = tracing::subscriber::with_default(subscriber, || {
            tracing::info!("outside");
            let span = tracing::info_span!("job", key = "makes/a.json");
            let _entered = span.enter();
            tracing::info!(attempt = 1, "inside");
            let context = span.context();
            let ids = context.span().span_context().clone();
            (ids.trace_id().to_string(), ids.span_id().to_string())
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        (text.lines().map(str::to_string).collect(), ids.0, ids.1)
    }

    #[test]
    fn json_lines_carry_the_ids_of_their_span() {
        let (lines, trace_id, span_id) = log_lines(LogFormat::Json);
        assert_eq!(lines.len(), 2, "{lines:?}");
        let outside: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        assert!(outside.get("trace_id").is_none(), "{outside}");
        let inside: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
        assert_eq!(inside["trace_id"], trace_id.as_str(), "{inside}");
        assert_eq!(inside["span_id"], span_id.as_str(), "{inside}");
        assert_eq!(inside["fields"]["message"], "inside");
        assert_eq!(inside["span"]["key"], "makes/a.json");
        assert_eq!(trace_id.len(), 32);
    }

    #[test]
    fn text_lines_end_with_the_ids_of_their_span() {
        let (lines, trace_id, span_id) = log_lines(LogFormat::Text);
        assert!(!lines[0].contains("trace_id="), "{}", lines[0]);
        assert!(
            lines[1].ends_with(&format!(" trace_id={trace_id} span_id={span_id}")),
            "{}",
            lines[1]
        );
        assert!(lines[1].contains("inside attempt=1"), "{}", lines[1]);
    }
}
