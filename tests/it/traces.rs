//! Traces over OTLP, against the real binary and a minimal OTLP/HTTP receiver on loopback:
//! the spans of a run (its segment, each step, the AI and HTTP calls) arrive with their
//! attributes and parent/child links, the run's trace id is its run id, the caller's
//! `traceparent` is linked, `api_call` sends a `traceparent` of its own, and no span shows a
//! secret or personal data. A collector that is not there slows and fails nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::{Value, json};
use wiremock::matchers::path;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::{PERSONAL, Server, personal_inputs, personal_query, wait_for};

const SECRET: &str = "tok-7f3e9a1c5b2d";
/// The caller's trace: trace id and span id of the `traceparent` sent on start.
const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// Spans received, with the service name of the resource they came with.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<(String, Span)>>>);

impl Received {
    fn spans(&self) -> Vec<(String, Span)> {
        self.0.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Keeps the spans of an encoded `ExportTraceServiceRequest`.
    fn record(&self, body: &[u8]) {
        let Ok(request) = ExportTraceServiceRequest::decode(body) else {
            return;
        };
        let Ok(mut spans) = self.0.lock() else {
            return;
        };
        for resource in request.resource_spans {
            let service = resource
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| text(kv.value.as_ref()?.value.as_ref()?))
                .unwrap_or_default();
            for scope in resource.scope_spans {
                for span in scope.spans {
                    spans.push((service.clone(), span));
                }
            }
        }
    }
}

/// A minimal OTLP/HTTP receiver (`POST /v1/traces`, protobuf) on a free loopback port.
async fn receiver() -> (String, Received) {
    async fn traces(
        State(received): State<Received>,
        body: Bytes,
    ) -> ([(&'static str, &'static str); 1], Vec<u8>) {
        received.record(&body);
        // An empty ExportTraceServiceResponse: everything accepted.
        ([("content-type", "application/x-protobuf")], Vec::new())
    }
    let received = Received::default();
    let app = axum::Router::new()
        .route("/v1/traces", post(traces))
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), received)
}

/// A minimal OTLP/gRPC receiver (`TraceService/Export` over HTTP/2 without TLS) on a free
/// loopback port.
async fn grpc_receiver() -> (String, Received) {
    let received = Received::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let kept = received.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let received = kept.clone();
            tokio::spawn(async move {
                let Ok(mut conn) = h2::server::handshake(socket).await else {
                    return;
                };
                while let Some(Ok((request, respond))) = conn.accept().await {
                    tokio::spawn(grpc_export(request, respond, received.clone()));
                }
            });
        }
    });
    (format!("http://{addr}"), received)
}

/// Answers one gRPC call: keeps the spans of an `Export` and answers OK.
async fn grpc_export(
    request: http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
    received: Received,
) {
    let export =
        request.uri().path() == "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
    let mut body = request.into_body();
    let mut buf = Vec::new();
    while let Some(Ok(chunk)) = body.data().await {
        let _ = body.flow_control().release_capacity(chunk.len());
        buf.extend_from_slice(&chunk);
    }
    // One length-prefixed message: flag 0 (not compressed), then a big-endian u32 length.
    if export
        && let Some((&0, rest)) = buf.split_first()
        && let Some((len, message)) = rest.split_at_checked(4)
        && let Ok(len) = <[u8; 4]>::try_from(len)
        && let Some(message) = message.get(..u32::from_be_bytes(len) as usize)
    {
        received.record(message);
    }
    let Ok(response) = http::Response::builder()
        .status(200)
        .header("content-type", "application/grpc")
        .body(())
    else {
        return;
    };
    let Ok(mut send) = respond.send_response(response, false) else {
        return;
    };
    // An empty ExportTraceServiceResponse, then status OK in the trailers.
    let _ = send.send_data(Bytes::from_static(&[0, 0, 0, 0, 0]), false);
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
    let _ = send.send_trailers(trailers);
}

fn text(v: &AnyValue) -> Option<String> {
    match v {
        AnyValue::StringValue(s) => Some(s.clone()),
        _ => None,
    }
}

/// A span's attributes as JSON values (strings, integers, floats, booleans).
fn attrs(span: &Span) -> HashMap<String, Value> {
    span.attributes
        .iter()
        .filter_map(|kv| {
            let v = match kv.value.as_ref()?.value.as_ref()? {
                AnyValue::StringValue(s) => json!(s),
                AnyValue::IntValue(i) => json!(i),
                AnyValue::DoubleValue(d) => json!(d),
                AnyValue::BoolValue(b) => json!(b),
                _ => return None,
            };
            Some((kv.key.clone(), v))
        })
        .collect()
}

/// Every string a span carries: its attributes, its events' names and attributes, its status.
fn strings(span: &Span) -> Vec<String> {
    let mut out: Vec<String> = attrs(span)
        .into_values()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    for event in &span.events {
        out.push(event.name.clone());
        out.extend(
            event
                .attributes
                .iter()
                .filter_map(|kv| text(kv.value.as_ref()?.value.as_ref()?)),
        );
    }
    if let Some(status) = &span.status {
        out.push(status.message.clone());
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_is_one_trace_of_segment_step_and_call_spans() {
    let (collector, received) = receiver().await;
    let hook = MockServer::start().await;
    Mock::given(path("/hook"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ok": true})))
        .mount(&hook)
        .await;
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(
        dir.path(),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("OTEL_SERVICE_NAME", "scaff-under-test"),
        ],
        &[],
    );
    let client = reqwest::Client::new();
    let stored = client
        .post(server.url("/v1/secrets"))
        .json(&json!({"name": "hook_token", "value": SECRET}))
        .send()
        .await
        .expect("secret");
    assert_eq!(stored.status(), 201);
    let wf = json!({
        "id": "traced", "name": "traced", "start_step": "prepare",
        "steps": [
            {"id": "prepare", "type": "set", "config": {"values": {"n": "1 + 1"}}, "next": "call"},
            {"id": "call", "type": "api_call", "config": {
                "method": "POST",
                "url": format!("{}/hook", hook.uri()),
                "query": personal_query(),
                "headers": {"Authorization": "Bearer {{ secrets.hook_token }}"},
                "body": {"n": "{{ runtime.n }}"},
            }, "next": "write"},
            {"id": "write", "type": "ai_generate", "config": {
                "prompt": "Summarize the call for {{ inputs.email }} as JSON.",
                "model": "mock-small",
                "output_key": "summary",
                "json_schema": {"type": "object", "properties": {"headline": {"type": "string"}},
                                "required": ["headline"]},
            }},
        ],
    });
    let saved = client
        .post(server.url("/v1/workflows"))
        .json(&wf)
        .send()
        .await
        .expect("save");
    assert_eq!(saved.status(), 201);
    let run: Value = client
        .post(server.url("/v1/executions"))
        .header("traceparent", format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01"))
        .json(&json!({"workflow_id": "traced", "inputs": personal_inputs(), "wait_ms": 20000}))
        .send()
        .await
        .expect("start")
        .json()
        .await
        .expect("json");
    assert_eq!(run["status"], "completed", "{run}");
    let run_id = run["id"].as_str().expect("id").to_string();
    let trace_id = run_id.replace('-', "");

    // The segment span ends when the run's actor stops, after the run completed.
    let spans = wait_for(Duration::from_secs(20), || async {
        let spans = received.spans();
        spans.iter().any(|(_, s)| s.name == "run").then_some(spans)
    })
    .await
    .unwrap_or_else(|| panic!("no run span arrived; got {:?}", received.spans()));
    let by_name = |name: &str| -> Vec<&Span> {
        spans
            .iter()
            .map(|(_, s)| s)
            .filter(|s| s.name == name)
            .collect()
    };
    assert!(
        spans
            .iter()
            .all(|(service, _)| service == "scaff-under-test"),
        "OTEL_SERVICE_NAME names the service"
    );

    // The run's trace id is its run id; the segment is the root, linked to the caller.
    let [segment] = by_name("run")[..] else {
        panic!("one segment: {spans:?}")
    };
    assert_eq!(hex(&segment.trace_id), trace_id);
    assert!(
        segment.parent_span_id.is_empty(),
        "the first segment is the root"
    );
    let a = attrs(segment);
    assert_eq!(a["run_id"], json!(run_id));
    assert_eq!(a["workflow_id"], json!("traced"));
    assert_eq!(a["workflow_version"], json!(1));
    assert_eq!(a["status"], json!("completed"));
    let lifecycle: Vec<&str> = segment.events.iter().map(|e| e.name.as_str()).collect();
    for kind in ["run.started", "step.completed", "run.completed"] {
        assert!(
            lifecycle.contains(&kind),
            "{kind} is a span event: {lifecycle:?}"
        );
    }
    let caller: Vec<(String, String)> = segment
        .links
        .iter()
        .map(|l| (hex(&l.trace_id), hex(&l.span_id)))
        .collect();
    assert_eq!(
        caller,
        vec![(CALLER_TRACE.to_string(), CALLER_SPAN.to_string())],
        "the caller's traceparent is linked"
    );

    // One step span per step, children of the segment, with their attributes.
    let steps = by_name("step");
    let step = |id: &str| -> &Span {
        steps
            .iter()
            .find(|s| attrs(s)["step_id"] == json!(id))
            .unwrap_or_else(|| panic!("no step span for {id}: {steps:?}"))
    };
    for (id, ty) in [
        ("prepare", "set"),
        ("call", "api_call"),
        ("write", "ai_generate"),
    ] {
        let s = step(id);
        let a = attrs(s);
        assert_eq!(a["step_type"], json!(ty), "{id}");
        assert_eq!(a["run_id"], json!(run_id), "{id}");
        assert_eq!(a["workflow_id"], json!("traced"), "{id}");
        assert_eq!(a["workflow_version"], json!(1), "{id}");
        assert_eq!(a["attempt"], json!(1), "{id}");
        assert_eq!(hex(&s.trace_id), trace_id, "{id}");
        assert_eq!(
            s.parent_span_id, segment.span_id,
            "{id} is a child of the segment"
        );
    }

    // The AI call: a child of its step, with the GenAI attributes.
    let [ai] = by_name("ai.call")[..] else {
        panic!("one ai.call: {spans:?}")
    };
    assert_eq!(ai.parent_span_id, step("write").span_id);
    let a = attrs(ai);
    assert_eq!(a["gen_ai.system"], json!("mock"));
    assert_eq!(a["gen_ai.operation.name"], json!("chat"));
    assert_eq!(a["gen_ai.request.model"], json!("mock-small"));
    assert!(a["gen_ai.response.model"].is_string(), "{a:?}");
    assert!(
        a["gen_ai.usage.input_tokens"]
            .as_i64()
            .is_some_and(|n| n > 0),
        "{a:?}"
    );
    assert!(
        a["gen_ai.usage.output_tokens"]
            .as_i64()
            .is_some_and(|n| n > 0),
        "{a:?}"
    );
    assert_eq!(a["run_id"], json!(run_id));
    assert_eq!(a["step_id"], json!("write"));

    // The HTTP call: a child of its step; the called server got its traceparent.
    let [http] = by_name("http.call")[..] else {
        panic!("one http.call: {spans:?}")
    };
    assert_eq!(http.parent_span_id, step("call").span_id);
    let a = attrs(http);
    assert_eq!(a["http.request.method"], json!("POST"));
    assert_eq!(a["http.response.status_code"], json!(200));
    let requests = hook.received_requests().await.expect("recorded");
    let sent = requests[0]
        .headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .expect("api_call sends a traceparent")
        .to_string();
    let parts: Vec<&str> = sent.split('-').collect();
    assert_eq!(parts.len(), 4, "{sent}");
    assert_eq!(
        parts[1], trace_id,
        "the called server joins the run's trace"
    );
    assert_eq!(
        parts[2],
        hex(&http.span_id),
        "its parent is the http.call span"
    );

    // Nothing exported shows the secret or any personal data; the URL's e-mail is masked.
    for (_, span) in &spans {
        for s in strings(span) {
            assert!(!s.contains(SECRET), "{} shows the secret: {s}", span.name);
            for (key, _, fragment) in PERSONAL {
                assert!(!s.contains(fragment), "{} shows the {key}: {s}", span.name);
            }
        }
    }
    let url = attrs(http)["url.full"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(url.contains("[REDACTED:email]"), "{url}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_segments_of_a_run_share_its_trace() {
    let (collector, received) = receiver().await;
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(
        dir.path(),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
        &[],
    );
    let client = reqwest::Client::new();
    let wf = json!({
        "id": "asks", "name": "asks", "start_step": "ask",
        "steps": [
            {"id": "ask", "type": "form", "config": {"fields": [
                {"key": "topic", "type": "string", "required": true}]}, "next": "label"},
            {"id": "label", "type": "set", "config": {"values": {"t": "runtime.topic"}}},
        ],
    });
    let saved = client
        .post(server.url("/v1/workflows"))
        .json(&wf)
        .send()
        .await
        .expect("save");
    assert_eq!(saved.status(), 201);
    // Started without a traceparent; resumed with one.
    let started: Value = client
        .post(server.url("/v1/executions"))
        .json(&json!({"workflow_id": "asks", "wait_ms": 20000}))
        .send()
        .await
        .expect("start")
        .json()
        .await
        .expect("json");
    assert_eq!(started["status"], "waiting", "{started}");
    let run_id = started["id"].as_str().expect("id").to_string();
    let trace_id = run_id.replace('-', "");
    let resumed: Value = client
        .post(server.url(&format!("/v1/executions/{run_id}/resume")))
        .header("traceparent", format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01"))
        .json(&json!({"resume_token": started["resume_token"], "inputs": {"topic": "t"}, "wait_ms": 20000}))
        .send()
        .await
        .expect("resume")
        .json()
        .await
        .expect("json");
    assert_eq!(resumed["status"], "completed", "{resumed}");

    let segments = wait_for(Duration::from_secs(20), || async {
        let segments: Vec<Span> = received
            .spans()
            .into_iter()
            .map(|(_, s)| s)
            .filter(|s| s.name == "run")
            .collect();
        (segments.len() == 2).then_some(segments)
    })
    .await
    .unwrap_or_else(|| panic!("two segments; got {:?}", received.spans()));
    let (first, second) = match attrs(&segments[0])["status"].as_str() {
        Some("waiting") => (&segments[0], &segments[1]),
        _ => (&segments[1], &segments[0]),
    };
    assert_eq!(attrs(first)["status"], json!("waiting"));
    assert_eq!(attrs(second)["status"], json!("completed"));
    for s in [first, second] {
        assert_eq!(
            hex(&s.trace_id),
            trace_id,
            "every segment is in the run's trace"
        );
    }
    assert!(
        first.parent_span_id.is_empty(),
        "the first segment is the root"
    );
    assert!(first.links.is_empty(), "no caller to link to");
    assert_eq!(
        second.parent_span_id, first.span_id,
        "a resume continues under the root"
    );
    let linked: Vec<(String, String)> = second
        .links
        .iter()
        .map(|l| (hex(&l.trace_id), hex(&l.span_id)))
        .collect();
    assert_eq!(
        linked,
        vec![(CALLER_TRACE.to_string(), CALLER_SPAN.to_string())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_set_traceparent_header_is_kept() {
    let (collector, _received) = receiver().await;
    let hook = MockServer::start().await;
    Mock::given(path("/hook"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&hook)
        .await;
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(
        dir.path(),
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", collector.as_str())],
        &[],
    );
    let own = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-00");
    let wf = json!({
        "id": "own", "name": "own", "start_step": "call",
        "steps": [{"id": "call", "type": "api_call", "config": {
            "method": "GET", "url": format!("{}/hook", hook.uri()),
            "headers": {"traceparent": own},
        }}],
    });
    let status = run_to_end(&server, wf, "own").await;
    assert_eq!(status, "completed");
    let requests = hook.received_requests().await.expect("recorded");
    let sent: Vec<&str> = requests[0]
        .headers
        .get_all("traceparent")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    assert_eq!(sent, vec![own.as_str()], "the step's own header wins");
}

/// Saves `wf` and runs it, waiting (bounded) for its end; returns the final status.
async fn run_to_end(server: &Server, wf: Value, id: &str) -> String {
    let client = reqwest::Client::new();
    let saved = client
        .post(server.url("/v1/workflows"))
        .json(&wf)
        .send()
        .await
        .expect("save");
    assert_eq!(saved.status(), 201);
    let run: Value = client
        .post(server.url("/v1/executions"))
        .json(&json!({"workflow_id": id, "wait_ms": 20000}))
        .send()
        .await
        .expect("start")
        .json()
        .await
        .expect("json");
    run["status"].as_str().unwrap_or_default().to_string()
}

/// A port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

fn three_steps(id: &str) -> Value {
    json!({
        "id": id, "name": id, "start_step": "a",
        "steps": [
            {"id": "a", "type": "set", "config": {"values": {"x": "1"}}, "next": "b"},
            {"id": "b", "type": "ai_generate", "config": {
                "prompt": "Say hi as JSON.",
                "json_schema": {"type": "object", "properties": {"hi": {"type": "string"}}, "required": ["hi"]},
            }, "next": "c"},
            {"id": "c", "type": "set", "config": {"values": {"y": "2"}}},
        ],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_collector_slows_and_fails_nothing() {
    let endpoint = format!("http://127.0.0.1:{}", closed_port());
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(
        dir.path(),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "50"),
        ],
        &[],
    );
    for i in 0..3 {
        let status = run_to_end(
            &server,
            three_steps(&format!("dead{i}")),
            &format!("dead{i}"),
        )
        .await;
        assert_eq!(status, "completed", "run {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_are_exported_over_grpc_too() {
    let (collector, received) = grpc_receiver().await;
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(
        dir.path(),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
        &[],
    );
    let status = run_to_end(&server, three_steps("grpc"), "grpc").await;
    assert_eq!(status, "completed");
    let spans = wait_for(Duration::from_secs(20), || async {
        let spans = received.spans();
        spans.iter().any(|(_, s)| s.name == "run").then_some(spans)
    })
    .await
    .unwrap_or_else(|| panic!("no run span over gRPC; logs: {:?}", server.logs()));
    let names: Vec<&str> = spans.iter().map(|(_, s)| s.name.as_str()).collect();
    for name in ["run", "step", "ai.call"] {
        assert!(names.contains(&name), "{name} missing: {names:?}");
    }
    assert!(spans.iter().all(|(service, _)| service == "scaff"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_still_queued_are_exported_at_shutdown() {
    let (collector, received) = receiver().await;
    exported_at_shutdown(&collector, "http/protobuf", &received).await;
    let (collector, received) = grpc_receiver().await;
    exported_at_shutdown(&collector, "grpc", &received).await;
}

async fn exported_at_shutdown(collector: &str, protocol: &str, received: &Received) {
    let dir = tempfile::tempdir().expect("dir");
    // Batches every ten minutes: only the flush at shutdown can deliver the run's spans.
    let mut server = Server::start(
        dir.path(),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", collector),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
            ("OTEL_BSP_SCHEDULE_DELAY", "600000"),
        ],
        &[],
    );
    let status = run_to_end(&server, three_steps("flush"), "flush").await;
    assert_eq!(status, "completed");
    assert!(
        received.spans().is_empty(),
        "{protocol}: nothing exported before shutdown"
    );
    let pid = server.child.id().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let exited = wait_for(Duration::from_secs(20), || {
        let exited = server.child.try_wait().expect("wait");
        async move { exited }
    })
    .await
    .expect("the server stops after SIGTERM");
    assert!(exited.success(), "{protocol}: exit status {exited:?}");
    let names: Vec<String> = received.spans().into_iter().map(|(_, s)| s.name).collect();
    for name in ["run", "step", "ai.call"] {
        assert!(
            names.iter().any(|n| n == name),
            "{protocol}: {name} missing: {names:?}"
        );
    }
}
