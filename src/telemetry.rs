//! Structured logging and traces.
//!
//! Logs: text for people, JSON lines for pipelines (`--log-format`). Every formatted record
//! passes the redaction filter ([`scaff_core::redact::global`]: every stored secret value and
//! the patterns: tokens, keys, e-mail addresses, phone numbers, SSNs, card numbers) before it
//! reaches stderr; see [`RedactingMakeWriter`].
//!
//! Traces: when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set,
//! the spans of runs, steps and AI/HTTP calls (`scaff_actors::trace`) are exported over OTLP —
//! `http/protobuf` (the default), `http/json` or `grpc`, as `OTEL_EXPORTER_OTLP_PROTOCOL` says —
//! through a batch processor: spans queue in memory (bounded; the excess is dropped) and a
//! background thread exports them, so a slow or dead collector never slows a run. Every
//! string attribute, event and status message passes the same redaction filter first
//! ([`RedactingExporter`]). The trace id of a run is its run id (see [`RunTraceLinker`]).

use std::cell::Cell;
use std::collections::HashMap;
use std::io::{self, Write};
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry::{Array, KeyValue, StringValue, Value};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchSpanProcessor, IdGenerator, RandomIdGenerator, SdkTracerProvider, SpanData, SpanExporter,
};
use scaff_core::redact::{self, Redactor, SharedRedactor};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use uuid::Uuid;

use crate::config::LogFormat;

/// The service name spans are exported under, unless `OTEL_SERVICE_NAME` says otherwise.
pub const SERVICE_NAME: &str = "scaff";

/// How long [`Telemetry::shutdown`] waits for the last spans to be exported.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// What [`init`] started: the trace pipeline, when traces are exported. Call
/// [`Telemetry::shutdown`] before the process exits, or the last batch of spans is lost.
#[derive(Debug, Default)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported over OTLP.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports the spans still queued (waiting at most a few seconds for the collector) and
    /// stops the exporter.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(e) = provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT)
        {
            eprintln!("warning: exporting the last spans failed: {e}");
        }
    }
}

/// Installs the global subscriber: logs to stderr (so stdout stays for command output) through
/// the process-wide redactor, and — when an OTLP endpoint is configured — the span exporter.
///
/// Call it inside a Tokio runtime context (`Runtime::enter`): the gRPC exporter needs one.
/// An exporter that cannot be built is reported on stderr and traces stay off; logging works
/// regardless.
pub fn init(format: LogFormat, filter: &str) -> Telemetry {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let writer = RedactingMakeWriter::new(io::stderr, redact::global().clone());
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_span_events(FmtSpan::NONE);
    let fmt = match format {
        LogFormat::Json => fmt.json().flatten_event(true).with_filter(filter).boxed(),
        LogFormat::Text => fmt
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_filter(filter)
            .boxed(),
    };
    let (otel, provider) = match otlp_provider(redact::global().clone()) {
        Ok(Some(provider)) => {
            let tracer = provider.tracer(SERVICE_NAME);
            let layer = tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_threads(false)
                .with_tracked_inactivity(false)
                .with_filter(exported_targets());
            scaff_actors::trace::install(RunTraceLinker);
            (Some(layer), Some(provider))
        }
        Ok(None) => (None, None),
        Err(e) => {
            eprintln!("warning: traces are not exported: {e}");
            (None, None)
        }
    };
    let exporting = otel.is_some();
    let _ = tracing_subscriber::registry()
        .with(fmt)
        .with(otel)
        .try_init();
    if exporting {
        tracing::info!(
            protocol = otlp_protocol(env_var).map_or("?", OtlpProtocol::as_str),
            "traces are exported over OTLP"
        );
    }
    Telemetry { provider }
}

/// What is exported: the runtime's spans (runs, steps, AI and HTTP calls), the events inside
/// them at `info` and above, and the runs' lifecycle events — not every request to the API
/// (health checks, metrics scrapes) nor the spans of libraries (the exporter's own HTTP client
/// among them).
fn exported_targets() -> Targets {
    Targets::new()
        .with_target("scaff_actors", LevelFilter::INFO)
        .with_target(scaff_actors::trace::LIFECYCLE_TARGET, LevelFilter::DEBUG)
        .with_target("scaff::executors", LevelFilter::INFO)
}

/// The OTLP protocol chosen by `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` or
/// `OTEL_EXPORTER_OTLP_PROTOCOL` (`http/protobuf` when neither is set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OtlpProtocol {
    HttpProtobuf,
    HttpJson,
    Grpc,
}

impl OtlpProtocol {
    fn as_str(self) -> &'static str {
        match self {
            OtlpProtocol::HttpProtobuf => "http/protobuf",
            OtlpProtocol::HttpJson => "http/json",
            OtlpProtocol::Grpc => "grpc",
        }
    }
}

/// An environment variable's value, unless unset or blank.
fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn otlp_protocol(var: impl Fn(&str) -> Option<String>) -> Result<OtlpProtocol, String> {
    let value = var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .or_else(|| var("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .unwrap_or_default();
    match value.trim() {
        "" | "http/protobuf" => Ok(OtlpProtocol::HttpProtobuf),
        "http/json" => Ok(OtlpProtocol::HttpJson),
        "grpc" => Ok(OtlpProtocol::Grpc),
        other => Err(format!(
            "OTEL_EXPORTER_OTLP_PROTOCOL `{other}` is not one of http/protobuf, http/json, grpc"
        )),
    }
}

/// The tracer provider exporting over OTLP, when an endpoint is configured (`Ok(None)` when
/// not). The exporter reads its endpoint, headers, timeout and compression from the standard
/// `OTEL_EXPORTER_OTLP_*` variables, the batch processor its limits from `OTEL_BSP_*`.
fn otlp_provider(redactor: SharedRedactor) -> Result<Option<SdkTracerProvider>, String> {
    let var = env_var;
    if var("OTEL_EXPORTER_OTLP_ENDPOINT").is_none()
        && var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_none()
    {
        return Ok(None);
    }
    if var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
        return Ok(None);
    }
    use opentelemetry_otlp::{Protocol, WithExportConfig as _};
    let builder = opentelemetry_otlp::SpanExporter::builder();
    let exporter = match otlp_protocol(var)? {
        OtlpProtocol::HttpProtobuf => builder
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .build(),
        OtlpProtocol::HttpJson => builder
            .with_http()
            .with_protocol(Protocol::HttpJson)
            .build(),
        OtlpProtocol::Grpc => builder.with_tonic().build(),
    }
    .map_err(|e| format!("building the OTLP exporter: {e}"))?;
    let exporter = RedactingExporter::new(exporter, redactor);
    let resource = match var("OTEL_SERVICE_NAME") {
        // The resource detectors read OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES.
        Some(_) => opentelemetry_sdk::Resource::builder().build(),
        None => opentelemetry_sdk::Resource::builder()
            .with_service_name(SERVICE_NAME)
            .build(),
    };
    let provider = SdkTracerProvider::builder()
        .with_span_processor(BatchSpanProcessor::builder(exporter).build())
        .with_id_generator(RunIds::default())
        .with_resource(resource)
        .build();
    Ok(Some(provider))
}

/// The W3C `traceparent` of the current span (for outgoing requests), if it is exported.
pub fn current_traceparent() -> Option<String> {
    let cx = tracing::Span::current().context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier.remove("traceparent")
}

/// The span context a W3C `traceparent` (and `tracestate`) names, if valid.
fn parse_traceparent(traceparent: &str) -> Option<SpanContext> {
    let carrier = HashMap::from([("traceparent".to_string(), traceparent.trim().to_string())]);
    let cx = TraceContextPropagator::new().extract(&carrier);
    let span = cx.span().span_context().clone();
    span.is_valid().then_some(span)
}

/// The trace of run `run_id`: its id is the run id; its root is the run's first segment,
/// whose span id is derived from the run id too.
fn run_trace(run_id: Uuid) -> (TraceId, SpanId) {
    let bytes = run_id.into_bytes();
    let mut low = [0u8; 8];
    low.copy_from_slice(&bytes[8..]);
    let mut span = u64::from_be_bytes(low) ^ 0x5ca_ff00;
    if span == 0 {
        span = 1;
    }
    (
        TraceId::from_bytes(bytes),
        SpanId::from_bytes(span.to_be_bytes()),
    )
}

thread_local! {
    /// Ids the next span started on this thread takes (set around starting a run's root).
    static NEXT_IDS: Cell<(Option<TraceId>, Option<SpanId>)> = const { Cell::new((None, None)) };
}

/// Random ids, except for the root span of a run: it takes the ids [`RunTraceLinker`] sets
/// for the one span it starts on this thread.
#[derive(Debug, Default)]
struct RunIds(RandomIdGenerator);

impl IdGenerator for RunIds {
    fn new_trace_id(&self) -> TraceId {
        NEXT_IDS
            .with(|n| {
                let (trace, span) = n.get();
                n.set((None, span));
                trace
            })
            .unwrap_or_else(|| self.0.new_trace_id())
    }

    fn new_span_id(&self) -> SpanId {
        NEXT_IDS
            .with(|n| {
                let (trace, span) = n.get();
                n.set((trace, None));
                span
            })
            .unwrap_or_else(|| self.0.new_span_id())
    }
}

/// Makes a run one trace: every segment's trace id is the run id. The first segment is the
/// root span (its span id derived from the run id); later segments — resumes, restarts,
/// recoveries on any node — are its children, with no state stored anywhere. A caller's
/// `traceparent` on the request that started or resumed a segment becomes a span link from
/// that segment to the caller's span.
#[derive(Debug, Clone, Copy)]
pub struct RunTraceLinker;

impl scaff_actors::trace::SegmentLinker for RunTraceLinker {
    fn link_segment(&self, span: &tracing::Span, run_id: Uuid, first: bool, caller: Option<&str>) {
        if let Some(caller) = caller.and_then(parse_traceparent) {
            span.add_link(caller);
        }
        let (trace_id, root) = run_trace(run_id);
        if first {
            // Start the span now, on this thread, so that it takes the run's ids.
            NEXT_IDS.with(|n| n.set((Some(trace_id), Some(root))));
            let _ = span.context();
            NEXT_IDS.with(|n| n.set((None, None)));
        } else {
            let parent = SpanContext::new(
                trace_id,
                root,
                TraceFlags::SAMPLED,
                true,
                TraceState::default(),
            );
            let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(parent));
        }
    }
}

/// A [`SpanExporter`] that redacts every span before `inner` exports it: string attribute
/// values (of spans, events and links), event names and status messages pass the
/// [`Redactor`] in force at export time; values under a credential-like key
/// ([`redact::is_sensitive_key`]) are replaced whole.
#[derive(Debug)]
pub struct RedactingExporter<E> {
    inner: E,
    redactor: SharedRedactor,
}

impl<E> RedactingExporter<E> {
    /// Redacts what `inner` exports with `redactor`.
    pub fn new(inner: E, redactor: SharedRedactor) -> Self {
        Self { inner, redactor }
    }
}

impl<E: SpanExporter> SpanExporter for RedactingExporter<E> {
    fn export(
        &self,
        mut batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        let redactor = self.redactor.current();
        for span in &mut batch {
            redact_span(&redactor, span);
        }
        self.inner.export(batch)
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource);
    }
}

/// Redacts one span in place (see [`RedactingExporter`]).
pub fn redact_span(redactor: &Redactor, span: &mut SpanData) {
    redact_attributes(redactor, &mut span.attributes);
    for event in &mut span.events.events {
        if let std::borrow::Cow::Owned(name) = redactor.text(&event.name) {
            event.name = name.into();
        }
        redact_attributes(redactor, &mut event.attributes);
    }
    for link in &mut span.links.links {
        redact_attributes(redactor, &mut link.attributes);
    }
    if let opentelemetry::trace::Status::Error { description } = &mut span.status
        && let std::borrow::Cow::Owned(text) = redactor.text(description)
    {
        *description = text.into();
    }
}

fn redact_attributes(redactor: &Redactor, attributes: &mut [KeyValue]) {
    for kv in attributes {
        if redact::is_sensitive_key(kv.key.as_str()) {
            kv.value = Value::from(redact::REDACTED);
            continue;
        }
        match &mut kv.value {
            Value::String(s) => redact_string(redactor, s),
            Value::Array(Array::String(items)) => {
                for s in items {
                    redact_string(redactor, s);
                }
            }
            _ => {}
        }
    }
}

fn redact_string(redactor: &Redactor, s: &mut StringValue) {
    if let std::borrow::Cow::Owned(text) = redactor.text(s.as_str()) {
        *s = text.into();
    }
}

/// Wraps a [`MakeWriter`] so that each record is redacted before it is written.
///
/// The fmt layer formats a whole record and hands it to one writer (one `write_all`); the
/// [`RedactingWriter`] it gets buffers whatever it is given and writes the redacted record
/// when it is flushed or dropped, so a record split over several `write` calls is still
/// redacted as a whole.
#[derive(Debug, Clone)]
pub struct RedactingMakeWriter<M> {
    inner: M,
    redactor: SharedRedactor,
}

impl<M> RedactingMakeWriter<M> {
    /// Redacts what `inner` would write with the redactor in force in `redactor` when each
    /// record starts.
    pub fn new(inner: M, redactor: SharedRedactor) -> Self {
        Self { inner, redactor }
    }
}

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for RedactingMakeWriter<M> {
    type Writer = RedactingWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter::new(self.inner.make_writer(), self.redactor.current())
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        RedactingWriter::new(self.inner.make_writer_for(meta), self.redactor.current())
    }
}

/// Buffers one record and writes it redacted on [`Write::flush`] or drop.
pub struct RedactingWriter<W: Write> {
    inner: W,
    redactor: Arc<Redactor>,
    buf: Vec<u8>,
}

impl<W: Write> RedactingWriter<W> {
    fn new(inner: W, redactor: Arc<Redactor>) -> Self {
        Self {
            inner,
            redactor,
            buf: Vec::new(),
        }
    }

    fn write_out(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let record = String::from_utf8_lossy(&self.buf);
        let redacted = self.redactor.text(&record);
        let result = self.inner.write_all(redacted.as_bytes());
        self.buf.clear();
        result
    }
}

impl<W: Write> Write for RedactingWriter<W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.write_out()?;
        self.inner.flush()
    }
}

impl<W: Write> Drop for RedactingWriter<W> {
    fn drop(&mut self) {
        // Nowhere to report a failed log write (as with plain stderr).
        let _ = self.write_out();
        let _ = self.inner.flush();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use scaff_core::redact::Patterns;

    use super::*;

    /// A `MakeWriter` over a shared buffer that records how many writers were made.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<(Vec<u8>, usize)>>);

    impl Captured {
        fn text(&self) -> String {
            let guard = self.0.lock().unwrap_or_else(|p| p.into_inner());
            String::from_utf8(guard.0.clone()).expect("utf-8")
        }

        fn writers(&self) -> usize {
            self.0.lock().unwrap_or_else(|p| p.into_inner()).1
        }
    }

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            let mut guard = self.0.lock().unwrap_or_else(|p| p.into_inner());
            guard.0.extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;

        fn make_writer(&'a self) -> Self::Writer {
            self.0.lock().unwrap_or_else(|p| p.into_inner()).1 += 1;
            self.clone()
        }
    }

    const SECRET: &str = "s3cr3t-Value-42";

    fn redactor() -> SharedRedactor {
        SharedRedactor::new(Redactor::new([SECRET], Patterns::On))
    }

    fn log_everything() {
        let span = tracing::info_span!("step", run_id = "r-1", api_key = SECRET);
        let _entered = span.enter();
        tracing::info!(
            user = "ann@example.com",
            card = "4111 1111 1111 1111",
            order = 4111111111111112u64,
            password = "pw-12345",
            "calling with Authorization: Bearer abcdef.123456 and key {SECRET}"
        );
        tracing::warn!(count = 3, "second record");
    }

    #[track_caller]
    fn assert_redacted(out: &str) {
        for leaked in [
            SECRET,
            "ann@example.com",
            "abcdef.123456",
            "4111 1111 1111 1111",
            "pw-12345",
        ] {
            assert!(!out.contains(leaked), "{leaked} leaked: {out}");
        }
        for kept in [
            "calling with Authorization: Bearer [REDACTED:bearer] and key [REDACTED]",
            "[REDACTED:email]",
            "[REDACTED:card]",
            "4111111111111112",
            "second record",
            "r-1",
        ] {
            assert!(out.contains(kept), "{kept} missing: {out}");
        }
    }

    #[test]
    fn text_records_are_redacted() {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(RedactingMakeWriter::new(captured.clone(), redactor()))
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, log_everything);
        let out = captured.text();
        assert_redacted(&out);
        assert_eq!(out.lines().count(), 2, "{out}");
        assert_eq!(captured.writers(), 2, "one writer per record");
    }

    #[test]
    fn coloured_text_records_are_redacted() {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(RedactingMakeWriter::new(captured.clone(), redactor()))
            .with_ansi(true)
            .finish();
        tracing::subscriber::with_default(subscriber, log_everything);
        let out = captured.text();
        for leaked in [
            SECRET,
            "ann@example.com",
            "abcdef.123456",
            "4111 1111",
            "pw-12345",
        ] {
            assert!(!out.contains(leaked), "{leaked} leaked: {out}");
        }
    }

    #[test]
    fn json_records_are_redacted_and_stay_json() {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(RedactingMakeWriter::new(captured.clone(), redactor()))
            .json()
            .flatten_event(true)
            .finish();
        tracing::subscriber::with_default(subscriber, log_everything);
        let out = captured.text();
        assert_redacted(&out);
        let lines: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["user"], "[REDACTED:email]");
        assert_eq!(lines[0]["span"]["api_key"], "[REDACTED]");
        assert_eq!(lines[0]["password"], "[REDACTED:key]");
    }

    #[test]
    fn a_record_written_in_pieces_is_redacted_whole() {
        let captured = Captured::default();
        let make = RedactingMakeWriter::new(captured.clone(), redactor());
        {
            let mut w = make.make_writer();
            for piece in ["mail ann@exa", "mple.com and s3cr3t-", "Value-42\n"] {
                w.write_all(piece.as_bytes()).expect("write");
            }
        }
        assert_eq!(captured.text(), "mail [REDACTED:email] and [REDACTED]\n");
    }

    #[test]
    fn new_secrets_apply_to_the_next_record() {
        let captured = Captured::default();
        let shared = SharedRedactor::default();
        let make = RedactingMakeWriter::new(captured.clone(), shared.clone());
        writeln!(make.make_writer(), "value fresh-secret-1").expect("write");
        shared.add_secrets(["fresh-secret-1"]);
        writeln!(make.make_writer(), "value fresh-secret-1").expect("write");
        assert_eq!(captured.text(), "value fresh-secret-1\nvalue [REDACTED]\n");
    }

    fn span_with(attributes: Vec<KeyValue>) -> SpanData {
        let mut events = opentelemetry_sdk::trace::SpanEvents::default();
        events.events.push(opentelemetry::trace::Event::new(
            format!("failed for {SECRET}"),
            std::time::SystemTime::now(),
            vec![KeyValue::new("message", "mail ann@example.com")],
            0,
        ));
        SpanData {
            span_context: SpanContext::empty_context(),
            parent_span_id: SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: opentelemetry::trace::SpanKind::Internal,
            name: "step".into(),
            start_time: std::time::SystemTime::now(),
            end_time: std::time::SystemTime::now(),
            attributes,
            dropped_attributes_count: 0,
            events,
            links: opentelemetry_sdk::trace::SpanLinks::default(),
            status: opentelemetry::trace::Status::error(format!("key {SECRET} refused")),
            instrumentation_scope: opentelemetry::InstrumentationScope::builder("t").build(),
        }
    }

    /// Captures what it is asked to export.
    #[derive(Debug, Default, Clone)]
    struct Exported(Arc<Mutex<Vec<SpanData>>>);

    impl SpanExporter for Exported {
        async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
            self.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend(batch);
            Ok(())
        }
    }

    #[tokio::test]
    async fn exported_spans_are_redacted() {
        let captured = Exported::default();
        let exporter = RedactingExporter::new(captured.clone(), redactor());
        let span = span_with(vec![
            KeyValue::new("url.full", format!("https://x.example/?key={SECRET}")),
            KeyValue::new("user", "ann@example.com"),
            KeyValue::new("api_key", "anything at all"),
            KeyValue::new(
                "tags",
                Value::Array(Array::String(vec![SECRET.into(), "ok".into()])),
            ),
            KeyValue::new("attempt", 2i64),
            KeyValue::new("run_id", "r-1"),
        ]);
        exporter.export(vec![span]).await.expect("exported");
        let spans = captured.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let [span] = &spans[..] else {
            panic!("one span: {spans:?}")
        };
        let text = format!("{span:?}");
        for leaked in [SECRET, "ann@example.com", "anything at all"] {
            assert!(!text.contains(leaked), "{leaked} leaked: {text}");
        }
        let get = |key: &str| {
            span.attributes
                .iter()
                .find(|kv| kv.key.as_str() == key)
                .map(|kv| kv.value.clone())
        };
        assert_eq!(
            get("url.full"),
            Some(Value::from("https://x.example/?key=[REDACTED]"))
        );
        assert_eq!(get("user"), Some(Value::from("[REDACTED:email]")));
        assert_eq!(get("api_key"), Some(Value::from("[REDACTED]")));
        assert_eq!(get("attempt"), Some(Value::I64(2)));
        assert_eq!(get("run_id"), Some(Value::from("r-1")));
        assert_eq!(span.events.events[0].name, "failed for [REDACTED]");
        assert_eq!(
            span.status,
            opentelemetry::trace::Status::error("key [REDACTED] refused")
        );
    }

    #[test]
    fn the_protocol_comes_from_the_environment() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(otlp_protocol(env(&[])), Ok(OtlpProtocol::HttpProtobuf));
        assert_eq!(
            otlp_protocol(env(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")])),
            Ok(OtlpProtocol::Grpc)
        );
        assert_eq!(
            otlp_protocol(env(&[
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
                ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json"),
            ])),
            Ok(OtlpProtocol::HttpJson)
        );
        assert!(otlp_protocol(env(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "thrift")])).is_err());
    }

    #[test]
    fn a_runs_trace_id_is_its_run_id() {
        let id = Uuid::now_v7();
        let (trace, root) = run_trace(id);
        assert_eq!(trace.to_string(), id.simple().to_string());
        assert_ne!(root, SpanId::INVALID);
        assert_eq!(
            run_trace(id),
            (trace, root),
            "the same on every node, every time"
        );
    }

    #[test]
    fn traceparents_parse_or_are_ignored() {
        let cx = parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
            .expect("valid");
        assert_eq!(
            cx.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(cx.span_id().to_string(), "00f067aa0ba902b7");
        assert!(cx.is_remote());
        for bad in [
            "",
            "garbage",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn without_an_exported_span_no_traceparent_is_sent() {
        assert_eq!(current_traceparent(), None);
    }
}
