//! `api_call` end to end through the API, on both stores, against real local HTTP servers
//! (wiremock): JSON and text bodies, templated query/headers with the JSON type of a lone
//! `{{ expr }}` kept, the `Idempotency-Key`, a 503 retried into a 200, a 404 failing at once
//! (or succeeding when expected), a hang past the timeout, a redirect, a response over the
//! size limit, private networks denied, secrets redacted, and the triage example's call.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use scaff::server::{HttpSettings, Settings};
use scaff_actors::HttpStepSettings;
use scaff_core::ai::{AiError, AiProvider, AiRequest, AiResponse};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::on_both_stores;
use crate::support::{TestApp, TestDb, example};

fn settings(http: HttpSettings) -> Settings {
    Settings {
        http,
        http_steps: HttpStepSettings {
            backoff_base: Duration::from_millis(5),
            backoff_cap: Duration::from_millis(50),
            ..HttpStepSettings::default()
        },
        ..Settings::default()
    }
}

async fn app(db: &TestDb) -> TestApp {
    TestApp::with_settings(db, settings(HttpSettings::default())).await
}

/// A one-step workflow calling with `config`; `static.base` is the server's URI.
fn workflow(id: &str, base: &str, config: Value) -> Value {
    json!({
        "id": id,
        "name": id,
        "start_step": "call",
        "static": {"base": base},
        "steps": [{"id": "call", "type": "api_call", "config": config, "next": null}],
    })
}

/// Saves `wf`, starts it with `inputs`, and returns the run once it settled.
async fn run(app: &TestApp, wf: &Value, inputs: Value) -> Value {
    let saved = app
        .post("/v1/workflows", "application/json", wf.to_string())
        .await;
    assert_eq!(saved.status, 201, "{}", saved.text);
    let started = app
        .post(
            "/v1/executions",
            "application/json",
            json!({"workflow_id": wf["id"], "inputs": inputs, "wait_ms": 20000}).to_string(),
        )
        .await;
    assert_eq!(started.status, 202, "{}", started.text);
    settled(app, started.json["id"].as_str().expect("id")).await
}

/// The run, once it is no longer queued or running.
async fn settled(app: &TestApp, id: &str) -> Value {
    crate::support::wait_for(Duration::from_secs(20), || async {
        let run = app.get(&format!("/v1/executions/{id}")).await.json;
        (!matches!(run["status"].as_str(), Some("queued" | "running"))).then_some(run)
    })
    .await
    .expect("the run settles")
}

async fn events(app: &TestApp, id: &str, kind: &str) -> Vec<Value> {
    app.get(&format!("/v1/executions/{id}/events")).await.json["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|e| e["kind"] == kind)
        .cloned()
        .collect()
}

async fn runtime(app: &TestApp, id: &str) -> Value {
    app.get(&format!("/v1/executions/{id}/context")).await.json["runtime"].clone()
}

fn id_of(run: &Value) -> String {
    run["id"].as_str().expect("id").to_string()
}

fn header<'r>(req: &'r Request, name: &str) -> Option<&'r str> {
    req.headers.get(name).and_then(|v| v.to_str().ok())
}

async fn a_json_call_sends_the_rendered_request_and_keeps_the_response(db: &TestDb) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/items"))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(json!({"id": 7, "tags": ["x"]}))
                .insert_header("x-request-id", "abc"),
        )
        .mount(&server)
        .await;
    let app = app(db).await;
    let wf = workflow(
        "create",
        &server.uri(),
        json!({
            "method": "POST",
            "url": "{{ static.base }}/items",
            "query": {"q": "{{ inputs.q }}", "page": "2"},
            "headers": {"X-Name": "{{ inputs.name }}"},
            "body": {
                "n": "{{ inputs.n }}",
                "text": "hi {{ inputs.name }}",
                "list": [1, "{{ inputs.n }}", "{{ inputs.flags }}"],
                "run": "{{ run.id }}/{{ run.step_id }}",
            },
            "output_key": "created",
        }),
    );
    let run = run(
        &app,
        &wf,
        json!({"n": 5, "name": "Ann", "q": "a b&c", "flags": {"on": true}}),
    )
    .await;
    let id = id_of(&run);
    assert_eq!(run["status"], "completed", "{run}");

    let received = server.received_requests().await.expect("recorded");
    assert_eq!(received.len(), 1);
    let req = &received[0];
    assert_eq!(req.method.as_str(), "POST");
    assert_eq!(req.url.path(), "/items");
    let query: Vec<(String, String)> = req.url.query_pairs().into_owned().collect();
    assert_eq!(
        query,
        [("page".into(), "2".into()), ("q".into(), "a b&c".into())]
    );
    assert_eq!(header(req, "content-type"), Some("application/json"));
    assert_eq!(header(req, "x-name"), Some("Ann"));
    assert_eq!(
        header(req, "idempotency-key"),
        Some(format!("{id}:call:0").as_str())
    );
    let body: Value = serde_json::from_slice(&req.body).expect("JSON body");
    assert_eq!(
        body,
        json!({"n": 5, "text": "hi Ann", "list": [1, 5, {"on": true}], "run": format!("{id}/call")})
    );

    let out = &runtime(&app, &id).await["created"];
    assert_eq!(out["status"], 201);
    assert_eq!(out["body"], json!({"id": 7, "tags": ["x"]}));
    assert_eq!(out["headers"]["x-request-id"], "abc");
    assert_eq!(out["headers"]["content-type"], "application/json");

    let requests = events(&app, &id, "http.request").await;
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0]["data"]["method"], "POST");
    assert_eq!(requests[0]["data"]["attempt"], 1);
    assert_eq!(
        requests[0]["data"]["url"],
        format!("{}/items?page=2&q=a%20b%26c", server.uri())
    );
    let responses = events(&app, &id, "http.response").await;
    assert_eq!(responses.len(), 1);
    assert_eq!(responses[0]["data"]["status"], 201);
    assert!(responses[0]["data"]["latency_ms"].is_u64());
}

async fn a_text_body_is_sent_and_a_text_response_kept(db: &TestDb) {
    let server = MockServer::start().await;
    Mock::given(method("PUT"))
        .and(path("/note"))
        .respond_with(
            ResponseTemplate::new(200).set_body_string("{\"looks\": \"json\"} but is text"),
        )
        .mount(&server)
        .await;
    let app = app(db).await;
    let wf = workflow(
        "note",
        &server.uri(),
        json!({"method": "PUT", "url": "{{ static.base }}/note", "body": "Dear {{ inputs.name }}"}),
    );
    let run = run(&app, &wf, json!({"name": "Ann"})).await;
    assert_eq!(run["status"], "completed", "{run}");
    let received = server.received_requests().await.expect("recorded");
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].body, b"Dear Ann");
    assert_eq!(
        header(&received[0], "content-type"),
        Some("text/plain; charset=utf-8")
    );
    let out = &runtime(&app, &id_of(&run)).await["call"];
    assert_eq!(out["status"], 200);
    assert_eq!(out["body"], "{\"looks\": \"json\"} but is text");
}

async fn a_503_is_retried_with_the_same_idempotency_key(db: &TestDb) {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/flaky"))
        .respond_with(ResponseTemplate::new(503).set_body_string("busy"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/flaky"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ok": true})))
        .with_priority(2)
        .mount(&server)
        .await;
    let app = app(db).await;
    let wf = workflow(
        "flaky",
        &server.uri(),
        json!({"method": "GET", "url": "{{ static.base }}/flaky"}),
    );
    let run = run(&app, &wf, json!({})).await;
    let id = id_of(&run);
    assert_eq!(run["status"], "completed", "{run}");
    let received = server.received_requests().await.expect("recorded");
    assert_eq!(received.len(), 2);
    let keys: Vec<_> = received
        .iter()
        .map(|r| header(r, "idempotency-key").map(str::to_string))
        .collect();
    assert_eq!(
        keys,
        [Some(format!("{id}:call:0")), Some(format!("{id}:call:0"))]
    );
    let responses = events(&app, &id, "http.response").await;
    let statuses: Vec<_> = responses
        .iter()
        .map(|e| e["data"]["status"].clone())
        .collect();
    assert_eq!(statuses, [json!(503), json!(200)]);
    let attempts: Vec<_> = events(&app, &id, "http.request")
        .await
        .iter()
        .map(|e| e["data"]["attempt"].clone())
        .collect();
    assert_eq!(attempts, [json!(1), json!(2)]);
    assert_eq!(
        runtime(&app, &id).await["call"]["body"],
        json!({"ok": true})
    );
}

async fn a_404_fails_at_once_with_the_status_and_body(db: &TestDb) {
    let server = MockServer::start().await;
    Mock::given(path("/missing"))
        .respond_with(ResponseTemplate::new(404).set_body_string("no such thing"))
        .mount(&server)
        .await;
    let app = app(db).await;
    let wf = workflow(
        "missing",
        &server.uri(),
        json!({"method": "GET", "url": "{{ static.base }}/missing"}),
    );
    let run = run(&app, &wf, json!({})).await;
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(run["error"]["code"], "http.status");
    let message = run["error"]["message"].as_str().expect("message");
    assert!(
        message.contains("404") && message.contains("no such thing"),
        "{message}"
    );
    assert_eq!(server.received_requests().await.expect("recorded").len(), 1);
}

async fn an_expected_404_succeeds(db: &TestDb) {
    let server = MockServer::start().await;
    Mock::given(path("/missing"))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({"found": false})))
        .mount(&server)
        .await;
    let app = app(db).await;
    let wf = workflow(
        "lookup",
        &server.uri(),
        json!({"method": "GET", "url": "{{ static.base }}/missing", "expect_status": [404], "output_key": "lookup"}),
    );
    let run = run(&app, &wf, json!({})).await;
    assert_eq!(run["status"], "completed", "{run}");
    let out = &runtime(&app, &id_of(&run)).await["lookup"];
    assert_eq!(out["status"], 404);
    assert_eq!(out["body"], json!({"found": false}));
}

async fn a_hang_past_the_timeout_fails_as_unavailable(db: &TestDb) {
    let server = MockServer::start().await;
    Mock::given(path("/slow"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(4)))
        .mount(&server)
        .await;
    let app = app(db).await;
    let wf = workflow(
        "slow",
        &server.uri(),
        json!({"method": "GET", "url": "{{ static.base }}/slow", "timeout_s": 1, "max_retries": 0}),
    );
    // No wall-clock assertion: had the 1 s timeout not fired, the server's 200 after 4 s
    // would complete the run instead of failing it as unavailable.
    let run = run(&app, &wf, json!({})).await;
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(run["error"]["code"], "http.unavailable");
    let responses = events(&app, &id_of(&run), "http.response").await;
    assert_eq!(responses.len(), 1);
    assert!(
        responses[0]["data"]["error"].is_string(),
        "{}",
        responses[0]
    );
    assert!(responses[0]["data"]["status"].is_null());
}

async fn a_redirect_is_followed(db: &TestDb) {
    let server = MockServer::start().await;
    Mock::given(path("/old"))
        .respond_with(ResponseTemplate::new(302).insert_header("location", "/new"))
        .mount(&server)
        .await;
    Mock::given(path("/new"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"moved": true})))
        .mount(&server)
        .await;
    let app = app(db).await;
    let wf = workflow(
        "moved",
        &server.uri(),
        json!({"method": "GET", "url": "{{ static.base }}/old"}),
    );
    let run = run(&app, &wf, json!({})).await;
    assert_eq!(run["status"], "completed", "{run}");
    let paths: Vec<String> = server
        .received_requests()
        .await
        .expect("recorded")
        .iter()
        .map(|r| r.url.path().to_string())
        .collect();
    assert_eq!(paths, ["/old", "/new"]);
    let out = &runtime(&app, &id_of(&run)).await["call"];
    assert_eq!(out["status"], 200);
    assert_eq!(out["body"], json!({"moved": true}));
}

async fn redirects_are_checked_on_every_hop_and_bounded(db: &TestDb) {
    let server = MockServer::start().await;
    let port = server.address().port();
    Mock::given(path("/away"))
        .respond_with(
            ResponseTemplate::new(302)
                .insert_header("location", format!("http://localhost:{port}/landing")),
        )
        .mount(&server)
        .await;
    Mock::given(path("/loop"))
        .respond_with(ResponseTemplate::new(307).insert_header("location", "/loop"))
        .mount(&server)
        .await;
    let app = TestApp::with_settings(
        db,
        settings(HttpSettings {
            deny_hosts: vec!["localhost".into()],
            ..HttpSettings::default()
        }),
    )
    .await;
    let base = format!("http://127.0.0.1:{port}");
    let away = workflow(
        "away",
        &base,
        json!({"method": "GET", "url": "{{ static.base }}/away"}),
    );
    let run1 = run(&app, &away, json!({})).await;
    // A redirect to another origin is not followed (the step's headers could carry secrets);
    // the 302 itself is the answer, and not a success.
    assert_eq!(run1["error"]["code"], "http.status", "{run1}");
    assert!(
        run1["error"]["message"]
            .as_str()
            .expect("message")
            .contains("302"),
        "{run1}"
    );
    let looping = workflow(
        "looping",
        &base,
        json!({"method": "GET", "url": "{{ static.base }}/loop"}),
    );
    let run2 = run(&app, &looping, json!({})).await;
    assert_eq!(run2["error"]["code"], "http.request_failed", "{run2}");
    let paths: Vec<String> = server
        .received_requests()
        .await
        .expect("recorded")
        .iter()
        .map(|r| r.url.path().to_string())
        .collect();
    // `/away` (its cross-origin target not followed), then `/loop` plus five redirects.
    assert_eq!(paths.len(), 1 + 6, "{paths:?}");
    assert!(!paths.iter().any(|p| p == "/landing"));
}

async fn a_response_over_the_limit_fails_cleanly(db: &TestDb) {
    let server = MockServer::start().await;
    Mock::given(path("/big"))
        .respond_with(ResponseTemplate::new(200).set_body_string("x".repeat(1000)))
        .mount(&server)
        .await;
    let app = TestApp::with_settings(
        db,
        settings(HttpSettings {
            max_response_bytes: 100,
            ..HttpSettings::default()
        }),
    )
    .await;
    let wf = workflow(
        "big",
        &server.uri(),
        json!({"method": "GET", "url": "{{ static.base }}/big"}),
    );
    let run = run(&app, &wf, json!({})).await;
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(run["error"]["code"], "http.response_too_large");
    assert_eq!(server.received_requests().await.expect("recorded").len(), 1);
}

async fn private_networks_are_refused_when_denied(db: &TestDb) {
    let server = MockServer::start().await;
    Mock::given(path("/internal"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let app = TestApp::with_settings(
        db,
        settings(HttpSettings {
            deny_private_networks: true,
            ..HttpSettings::default()
        }),
    )
    .await;
    let port = server.address().port();
    for (id, base) in [
        ("literal", format!("http://127.0.0.1:{port}")),
        ("named", format!("http://localhost:{port}")),
    ] {
        let wf = workflow(
            id,
            &base,
            json!({"method": "GET", "url": "{{ static.base }}/internal"}),
        );
        let run = run(&app, &wf, json!({})).await;
        assert_eq!(run["status"], "failed", "{run}");
        assert_eq!(run["error"]["code"], "http.refused", "{run}");
    }
    assert!(
        server
            .received_requests()
            .await
            .expect("recorded")
            .is_empty()
    );
}

async fn hosts_outside_the_allow_list_are_refused(db: &TestDb) {
    let server = MockServer::start().await;
    let app = TestApp::with_settings(
        db,
        settings(HttpSettings {
            allow_hosts: vec!["api.example.com".into()],
            ..HttpSettings::default()
        }),
    )
    .await;
    let wf = workflow(
        "other",
        &server.uri(),
        json!({"method": "GET", "url": "{{ static.base }}/x"}),
    );
    let run = run(&app, &wf, json!({})).await;
    assert_eq!(run["error"]["code"], "http.refused", "{run}");
    assert!(
        server
            .received_requests()
            .await
            .expect("recorded")
            .is_empty()
    );
}

async fn a_template_error_fails_the_step(db: &TestDb) {
    let server = MockServer::start().await;
    let app = app(db).await;
    let wf = workflow(
        "broken",
        &server.uri(),
        json!({"method": "POST", "url": "{{ static.base }}/x", "body": {"a": "{{ inputs.missing }}"}}),
    );
    let run = run(&app, &wf, json!({})).await;
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(run["error"]["code"], "http.render_failed");
    let message = run["error"]["message"].as_str().expect("message");
    assert!(
        message.contains("body.a") && message.contains("missing"),
        "{message}"
    );
    assert!(
        server
            .received_requests()
            .await
            .expect("recorded")
            .is_empty()
    );
}

async fn a_secret_reaches_the_server_and_nothing_else(db: &TestDb) {
    const VALUE: &str = "tok-9f8e7d6c5b4a";
    let server = MockServer::start().await;
    Mock::given(path("/secure"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"echo": format!("Bearer {VALUE}")}))
                .insert_header("x-echo", VALUE),
        )
        .mount(&server)
        .await;
    let app = app(db).await;
    let stored = app
        .post(
            "/v1/secrets",
            "application/json",
            json!({"name": "api_token", "value": VALUE}).to_string(),
        )
        .await;
    assert_eq!(stored.status, 201, "{}", stored.text);
    let wf = workflow(
        "secure",
        &server.uri(),
        json!({
            "method": "POST",
            "url": "{{ static.base }}/secure",
            "query": {"key": "{{ secrets.api_token }}"},
            "headers": {"Authorization": "Bearer {{ secrets.api_token }}"},
            "body": {"token": "{{ secrets.api_token }}"},
        }),
    );
    let run = run(&app, &wf, json!({})).await;
    let id = id_of(&run);
    assert_eq!(run["status"], "completed", "{run}");
    let received = server.received_requests().await.expect("recorded");
    assert_eq!(
        header(&received[0], "authorization"),
        Some(format!("Bearer {VALUE}").as_str())
    );
    assert_eq!(
        received[0]
            .url
            .query_pairs()
            .next()
            .map(|(_, v)| v.into_owned()),
        Some(VALUE.to_string())
    );
    let out = &runtime(&app, &id).await["call"];
    assert_eq!(out["body"]["echo"], "Bearer [REDACTED]");
    assert_eq!(out["headers"]["x-echo"], "[REDACTED]");
    for path in ["", "/context", "/steps", "/events"] {
        let reply = app.get(&format!("/v1/executions/{id}{path}")).await;
        assert_eq!(reply.status, 200);
        assert!(!reply.text.contains(VALUE), "{path}: {}", reply.text);
    }
    let url = &events(&app, &id, "http.request").await[0]["data"]["url"];
    assert_eq!(*url, format!("{}/secure?key=[REDACTED]", server.uri()));
}

/// Answers every classification with the same ticket triage.
struct FixedTriage;

#[async_trait]
impl AiProvider for FixedTriage {
    async fn generate(&self, _request: &AiRequest) -> Result<AiResponse, AiError> {
        Ok(AiResponse {
            text: json!({"category": "bug", "urgency": 2, "labels": ["login"]}).to_string(),
            model: "fixed".into(),
            tokens_prompt: 1,
            tokens_output: 1,
        })
    }
}

async fn the_triage_example_files_the_ticket(db: &TestDb) {
    let server = MockServer::start().await;
    Mock::given(method("PUT"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ticket": "T-1"})))
        .mount(&server)
        .await;
    let app = TestApp::with_settings(
        db,
        Settings {
            ai: Arc::new(FixedTriage),
            ..settings(HttpSettings::default())
        },
    )
    .await;
    let yaml = example("triage.yaml").replace("http://127.0.0.1:9003", &server.uri());
    assert!(yaml.contains(&server.uri()));
    let saved = app.post_yaml("/v1/workflows", &yaml).await;
    assert_eq!(saved.status, 201, "{}", saved.text);
    let wf = saved.json["id"].as_str().expect("id");
    let started = app
        .post(
            "/v1/executions",
            "application/json",
            json!({"workflow_id": wf, "inputs": {}, "wait_ms": 20000}).to_string(),
        )
        .await;
    assert_eq!(started.json["status"], "waiting", "{}", started.text);
    let id = started.json["id"].as_str().expect("id").to_string();
    let resumed = app
        .post(
            &format!("/v1/executions/{id}/resume"),
            "application/json",
            json!({
                "resume_token": started.json["resume_token"],
                "inputs": {"subject": "Cannot log in", "body": "Since Monday.", "customer_tier": "free"},
                "wait_ms": 20000,
            })
            .to_string(),
        )
        .await;
    assert!(resumed.status.is_success(), "{}", resumed.text);
    let run = settled(&app, &id).await;
    assert_eq!(run["status"], "completed", "{run}");

    let received = server.received_requests().await.expect("recorded");
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].url.path(), format!("/tickets/{id}"));
    let body: Value = serde_json::from_slice(&received[0].body).expect("JSON body");
    assert_eq!(
        body,
        json!({"subject": "Cannot log in", "category": "bug", "urgency": 2})
    );
    let ticket = &runtime(&app, &id).await["ticket"];
    assert_eq!(ticket["status"], 200);
    assert_eq!(ticket["body"], json!({"ticket": "T-1"}));
}

on_both_stores!(
    a_json_call_sends_the_rendered_request_and_keeps_the_response,
    a_text_body_is_sent_and_a_text_response_kept,
    a_503_is_retried_with_the_same_idempotency_key,
    a_404_fails_at_once_with_the_status_and_body,
    an_expected_404_succeeds,
    a_hang_past_the_timeout_fails_as_unavailable,
    a_redirect_is_followed,
    redirects_are_checked_on_every_hop_and_bounded,
    a_response_over_the_limit_fails_cleanly,
    private_networks_are_refused_when_denied,
    hosts_outside_the_allow_list_are_refused,
    a_template_error_fails_the_step,
    a_secret_reaches_the_server_and_nothing_else,
    the_triage_example_files_the_ticket,
);
