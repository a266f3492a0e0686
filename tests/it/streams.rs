//! Live event streams over real HTTP (the router served on a loopback port, read with
//! reqwest), on both stores: a run's stream from `run.created` to its terminal event, resumed
//! with `Last-Event-ID`; the all-runs stream and its filters; the errors.

use std::net::SocketAddr;
use std::time::Duration;

use scaff_core::run::{EventRecord, RunStatus};
use serde_json::{Value, json};

use crate::on_both_stores;
use crate::support::{Reply, TestApp, TestDb};

/// How long any one frame (or the end of a stream) may take to arrive.
const FRAME_DEADLINE: Duration = Duration::from_secs(10);

const BRIEF: &str = r#"
id: brief
name: Brief
start_step: collect
steps:
  - id: collect
    type: form
    config:
      fields:
        - {key: topic, type: string, required: true}
    next: label
  - id: label
    type: set
    config: {values: {label: "upper(runtime.topic)"}}
"#;

const QUICK: &str = r#"
id: quick
name: Quick
start_step: one
steps:
  - {id: one, type: set, config: {values: {n: "1"}}, next: two}
  - {id: two, type: set, config: {values: {n: "runtime.n + 1"}}}
"#;

/// One Server-Sent Events message.
#[derive(Debug, Clone)]
struct Frame {
    id: Option<String>,
    event: Option<String>,
    data: String,
}

impl Frame {
    fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("data {}: {e}", self.data))
    }
}

/// A minimal SSE reader over a streaming response: frames are separated by a blank line;
/// comment-only frames (keep-alives) are skipped.
struct SseReader {
    response: reqwest::Response,
    buffer: String,
}

impl SseReader {
    /// Opens a stream and checks it is one.
    async fn open(url: &str, last_event_id: Option<&str>) -> SseReader {
        let mut request = reqwest::Client::new().get(url);
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = tokio::time::timeout(FRAME_DEADLINE, request.send())
            .await
            .expect("response headers in time")
            .expect("request");
        assert_eq!(response.status(), 200, "{url}");
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        assert!(
            content_type.starts_with("text/event-stream"),
            "{content_type}"
        );
        SseReader {
            response,
            buffer: String::new(),
        }
    }

    /// The next frame, or `None` once the server ended the stream; panics past the deadline.
    async fn next(&mut self) -> Option<Frame> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                if let Some(frame) = parse_frame(&block) {
                    return Some(frame);
                }
                continue;
            }
            let chunk = tokio::time::timeout(FRAME_DEADLINE, self.response.chunk())
                .await
                .expect("a frame or the end of the stream in time")
                .expect("stream body");
            match chunk {
                Some(bytes) => self
                    .buffer
                    .push_str(&String::from_utf8_lossy(&bytes).replace("\r\n", "\n")),
                None => {
                    assert!(
                        self.buffer.trim().is_empty(),
                        "unterminated frame: {:?}",
                        self.buffer
                    );
                    return None;
                }
            }
        }
    }

    /// Frames up to and including the first with event `kind`.
    async fn until(&mut self, kind: &str) -> Vec<Frame> {
        let mut frames = Vec::new();
        loop {
            let frame = self
                .next()
                .await
                .unwrap_or_else(|| panic!("the stream ended before `{kind}`: {frames:?}"));
            let done = frame.event.as_deref() == Some(kind);
            frames.push(frame);
            if done {
                return frames;
            }
        }
    }

    /// Every frame until the server ends the stream.
    async fn until_end(&mut self) -> Vec<Frame> {
        let mut frames = Vec::new();
        while let Some(frame) = self.next().await {
            frames.push(frame);
        }
        frames
    }
}

fn parse_frame(block: &str) -> Option<Frame> {
    let mut frame = Frame {
        id: None,
        event: None,
        data: String::new(),
    };
    let mut data_lines = Vec::new();
    let mut any = false;
    for line in block.lines() {
        if line.is_empty() || line.starts_with(':') {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        any = true;
        match field {
            "id" => frame.id = Some(value.to_string()),
            "event" => frame.event = Some(value.to_string()),
            "data" => data_lines.push(value.to_string()),
            _ => {}
        }
    }
    frame.data = data_lines.join("\n");
    any.then_some(frame)
}

async fn app_with(db: &TestDb, sources: &[&str]) -> (TestApp, SocketAddr) {
    let app = TestApp::new(db).await;
    for src in sources {
        let reply = app.post_yaml("/v1/workflows", src).await;
        assert_eq!(reply.status, 201, "{}", reply.text);
    }
    let addr = app.serve().await;
    (app, addr)
}

async fn start(app: &TestApp, workflow: &str, wait: bool) -> Reply {
    let mut body = json!({"workflow_id": workflow});
    if wait {
        body["wait_ms"] = json!(5000);
    }
    let reply = app
        .post("/v1/executions", "application/json", body.to_string())
        .await;
    assert_eq!(reply.status, 202, "{}", reply.text);
    reply
}

async fn resume(app: &TestApp, started: &Reply, topic: &str) {
    let id = started.json["id"].as_str().expect("id");
    let body = json!({"resume_token": started.json["resume_token"], "inputs": {"topic": topic}});
    let reply = app
        .post(
            &format!("/v1/executions/{id}/resume"),
            "application/json",
            body.to_string(),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
}

/// The run's events as `GET /events` serves them.
async fn stored_events(app: &TestApp, id: &str) -> Vec<Value> {
    let reply = app.get(&format!("/v1/executions/{id}/events")).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.json["items"].as_array().expect("items").clone()
}

fn seqs(frames: &[Frame]) -> Vec<i64> {
    frames
        .iter()
        .map(|f| {
            f.id.as_deref()
                .and_then(|id| id.parse().ok())
                .unwrap_or_else(|| panic!("frame without a numeric id: {f:?}"))
        })
        .collect()
}

fn kinds(frames: &[Frame]) -> Vec<&str> {
    frames
        .iter()
        .map(|f| f.event.as_deref().expect("event name"))
        .collect()
}

/// Each frame is the stored event of its seq, rendered exactly as `/events` renders it.
fn assert_frames_are_stored_events(frames: &[Frame], stored: &[Value]) {
    for frame in frames {
        let seq = seqs(std::slice::from_ref(frame))[0];
        let item = stored
            .iter()
            .find(|e| e["seq"] == seq)
            .unwrap_or_else(|| panic!("no stored event {seq}"));
        assert_eq!(&frame.json(), item, "frame {seq}");
        assert_eq!(frame.event.as_deref(), item["kind"].as_str());
    }
}

async fn a_run_stream_follows_the_run_to_its_end(db: &TestDb) {
    let (app, addr) = app_with(db, &[BRIEF]).await;
    let started = start(&app, "brief", true).await;
    assert_eq!(started.json["status"], "waiting", "{}", started.text);
    let id = started.json["id"].as_str().expect("id").to_string();
    let url = format!("http://{addr}/v1/executions/{id}/stream");

    let mut stream = SseReader::open(&url, None).await;
    let before = stream.until("run.waiting").await;
    assert_eq!(kinds(&before)[0], "run.created");
    assert_eq!(seqs(&before), (1..=before.len() as i64).collect::<Vec<_>>());

    // A second client resuming after the first event, open at the same time.
    let mut resumed = SseReader::open(&url, Some("1")).await;
    let resumed_before = resumed.until("run.waiting").await;
    assert_eq!(
        seqs(&resumed_before),
        (2..=before.len() as i64).collect::<Vec<_>>()
    );

    resume(&app, &started, "streams").await;
    let after = stream.until_end().await;
    assert_eq!(kinds(&after).first(), Some(&"run.resumed"));
    assert_eq!(kinds(&after).last(), Some(&"run.completed"));
    let all: Vec<Frame> = before.into_iter().chain(after).collect();
    let stored = stored_events(&app, &id).await;
    assert_eq!(
        seqs(&all),
        (1..=stored.len() as i64).collect::<Vec<_>>(),
        "every event once, in order: {:?}",
        kinds(&all)
    );
    assert_frames_are_stored_events(&all, &stored);

    let resumed_after = resumed.until_end().await;
    let resumed_all: Vec<Frame> = resumed_before.into_iter().chain(resumed_after).collect();
    assert_eq!(
        seqs(&resumed_all),
        (2..=stored.len() as i64).collect::<Vec<_>>()
    );
}

async fn reconnecting_delivers_exactly_the_events_after_the_last_id(db: &TestDb) {
    let (app, addr) = app_with(db, &[BRIEF]).await;
    let started = start(&app, "brief", true).await;
    let id = started.json["id"].as_str().expect("id").to_string();
    resume(&app, &started, "resume points").await;
    let done = app.get(&format!("/v1/executions/{id}?wait_ms=5000")).await;
    assert_eq!(done.json["status"], "completed", "{}", done.text);
    let stored = stored_events(&app, &id).await;
    let count = stored.len() as i64;
    let url = format!("http://{addr}/v1/executions/{id}/stream");

    // A finished run: everything stored, then the end.
    let everything = SseReader::open(&url, None).await.until_end().await;
    assert_eq!(seqs(&everything), (1..=count).collect::<Vec<_>>());
    assert_frames_are_stored_events(&everything, &stored);

    for n in [0, 1, 4, count - 1, count, count + 5] {
        let frames = SseReader::open(&url, Some(&n.to_string()))
            .await
            .until_end()
            .await;
        assert_eq!(
            seqs(&frames),
            ((n + 1)..=count).collect::<Vec<_>>(),
            "Last-Event-ID: {n}"
        );
        let by_query = SseReader::open(&format!("{url}?after={n}"), None)
            .await
            .until_end()
            .await;
        assert_eq!(seqs(&by_query), seqs(&frames), "after={n}");
    }
    // The header wins over the query.
    let frames = SseReader::open(&format!("{url}?after=1"), Some(&(count - 1).to_string()))
        .await
        .until_end()
        .await;
    assert_eq!(seqs(&frames), [count]);
}

async fn a_stream_that_falls_behind_recovers_from_the_store(db: &TestDb) {
    let (app, addr) = app_with(db, &[BRIEF]).await;
    let started = start(&app, "brief", true).await;
    let id = started.json["id"].as_str().expect("id").to_string();
    let run_id: uuid::Uuid = id.parse().expect("uuid");
    let mut stream =
        SseReader::open(&format!("http://{addr}/v1/executions/{id}/stream"), None).await;
    let before = stream.until("run.waiting").await;

    // Flood the run's channel with copies of what was already sent, far past its buffer, so
    // the stream lags; it must re-read the store and show nothing twice.
    let stored: Vec<EventRecord> = stored_events(&app, &id)
        .await
        .into_iter()
        .map(|e| EventRecord {
            seq: e["seq"].as_i64().expect("seq") as i32,
            kind: e["kind"].as_str().expect("kind").to_string(),
            step_id: e["step_id"].as_str().map(str::to_string),
            actor: None,
            data: e["data"].clone(),
            created_at: chrono::Utc::now(),
        })
        .collect();
    for _ in 0..400 {
        app.state
            .runtime
            .events()
            .publish_for(run_id, "brief", 1, RunStatus::Waiting, &stored);
    }
    resume(&app, &started, "lagging").await;
    let after = stream.until_end().await;
    let all: Vec<Frame> = before.into_iter().chain(after).collect();
    let stored = stored_events(&app, &id).await;
    assert_eq!(seqs(&all), (1..=stored.len() as i64).collect::<Vec<_>>());
    assert_frames_are_stored_events(&all, &stored);
}

async fn the_all_runs_stream_filters_by_workflow_and_status(db: &TestDb) {
    let (app, addr) = app_with(db, &[BRIEF, QUICK]).await;
    let base = format!("http://{addr}/v1/events/stream");
    let mut everything = SseReader::open(&base, None).await;
    let mut quick_only = SseReader::open(&format!("{base}?workflow_id=quick"), None).await;
    let mut completed = SseReader::open(&format!("{base}?status=completed"), None).await;
    let mut quick_completed =
        SseReader::open(&format!("{base}?workflow_id=quick&status=completed"), None).await;

    let brief = start(&app, "brief", true).await;
    let brief_id = brief.json["id"].as_str().expect("id").to_string();
    let quick = start(&app, "quick", true).await;
    assert_eq!(quick.json["status"], "completed", "{}", quick.text);
    let quick_id = quick.json["id"].as_str().expect("id").to_string();
    resume(&app, &brief, "everything").await;

    // Unfiltered: both runs, each in seq order, each run's events exactly as stored.
    let mut seen: std::collections::HashMap<String, Vec<Value>> = Default::default();
    while seen
        .get(&brief_id)
        .is_none_or(|e| e.last().and_then(|l| l["kind"].as_str()) != Some("run.completed"))
        || seen
            .get(&quick_id)
            .is_none_or(|e| e.last().and_then(|l| l["kind"].as_str()) != Some("run.completed"))
    {
        let frame = everything.next().await.expect("the stream stays open");
        let data = frame.json();
        let run = data["run_id"].as_str().expect("run_id").to_string();
        let seq = data["seq"].as_i64().expect("seq");
        assert_eq!(frame.id, Some(format!("{run}/{seq}")));
        assert_eq!(frame.event.as_deref(), data["kind"].as_str());
        seen.entry(run).or_default().push(data);
    }
    for (run, workflow) in [(&brief_id, "brief"), (&quick_id, "quick")] {
        let streamed = &seen[run];
        let stored = stored_events(&app, run).await;
        assert_eq!(streamed.len(), stored.len(), "{workflow}: {streamed:?}");
        for (live, item) in streamed.iter().zip(&stored) {
            assert_eq!(live["workflow_id"], workflow);
            assert_eq!(live["workflow_version"], 1);
            let mut event = live.clone();
            let object = event.as_object_mut().expect("object");
            for key in ["run_id", "workflow_id", "workflow_version", "status"] {
                object.remove(key);
            }
            assert_eq!(&event, item);
        }
        let statuses: Vec<&str> = streamed
            .iter()
            .map(|e| e["status"].as_str().expect("status"))
            .collect();
        assert_eq!(
            statuses.first(),
            Some(&"queued"),
            "run.created: {statuses:?}"
        );
        assert_eq!(statuses.last(), Some(&"completed"));
    }
    assert!(
        seen[&brief_id]
            .iter()
            .any(|e| e["kind"] == "run.waiting" && e["status"] == "waiting")
    );

    // workflow_id=quick: quick's events only, up to its completion.
    let frames = quick_only.until("run.completed").await;
    assert!(frames.iter().all(|f| f.json()["workflow_id"] == "quick"));
    assert_eq!(frames.len(), seen[&quick_id].len());

    // status=completed: only events after which the run is completed — for both runs.
    let mut finished = Vec::new();
    while finished.len() < 2 {
        let frame = completed.next().await.expect("the stream stays open");
        let data = frame.json();
        assert_eq!(data["status"], "completed", "{data}");
        if data["kind"] == "run.completed" {
            finished.push(data["run_id"].as_str().expect("run_id").to_string());
        }
    }
    finished.sort();
    let mut expected = vec![brief_id.clone(), quick_id.clone()];
    expected.sort();
    assert_eq!(finished, expected);

    // Both filters: quick's completed events only.
    let frames = quick_completed.until("run.completed").await;
    for frame in &frames {
        let data = frame.json();
        assert_eq!(data["workflow_id"], "quick");
        assert_eq!(data["status"], "completed");
        assert_eq!(data["run_id"], quick_id.as_str());
    }
}

async fn stream_errors_are_problems(db: &TestDb) {
    let (app, addr) = app_with(db, &[BRIEF]).await;
    let started = start(&app, "brief", true).await;
    let id = started.json["id"].as_str().expect("id");
    let client = reqwest::Client::new();
    let problem = |status: u16| {
        move |response: reqwest::Response| async move {
            assert_eq!(response.status(), status);
            assert_eq!(
                response.headers()["content-type"],
                "application/problem+json"
            );
            let body: Value = response.json().await.expect("problem body");
            assert_eq!(body["status"], status);
            body
        }
    };
    for unknown in [uuid::Uuid::now_v7().to_string(), "not-a-run".to_string()] {
        let response = client
            .get(format!("http://{addr}/v1/executions/{unknown}/stream"))
            .send()
            .await
            .expect("request");
        problem(404)(response).await;
    }
    for bad in ["abc", "-1", "2.5"] {
        let response = client
            .get(format!("http://{addr}/v1/executions/{id}/stream"))
            .header("last-event-id", bad)
            .send()
            .await
            .expect("request");
        let body = problem(400)(response).await;
        assert!(
            body["detail"]
                .as_str()
                .is_some_and(|d| d.contains("Last-Event-ID")),
            "{body}"
        );
        let response = client
            .get(format!(
                "http://{addr}/v1/executions/{id}/stream?after={bad}"
            ))
            .send()
            .await
            .expect("request");
        problem(400)(response).await;
    }
    let response = client
        .get(format!("http://{addr}/v1/events/stream?status=done"))
        .send()
        .await
        .expect("request");
    let body = problem(400)(response).await;
    assert!(
        body["detail"].as_str().is_some_and(|d| d.contains("done")),
        "{body}"
    );
}

async fn streams_end_when_the_server_shuts_down(db: &TestDb) {
    let (app, addr) = app_with(db, &[BRIEF]).await;
    let started = start(&app, "brief", true).await;
    let id = started.json["id"].as_str().expect("id");
    let mut run = SseReader::open(&format!("http://{addr}/v1/executions/{id}/stream"), None).await;
    let mut all = SseReader::open(&format!("http://{addr}/v1/events/stream"), None).await;
    run.until("run.waiting").await;
    app.state.runtime.events().close();
    assert!(run.next().await.is_none(), "the run's stream ends");
    assert!(all.next().await.is_none(), "the all-runs stream ends");
}

on_both_stores!(
    a_run_stream_follows_the_run_to_its_end,
    reconnecting_delivers_exactly_the_events_after_the_last_id,
    a_stream_that_falls_behind_recovers_from_the_store,
    the_all_runs_stream_filters_by_workflow_and_status,
    stream_errors_are_problems,
    streams_end_when_the_server_shuts_down,
);
