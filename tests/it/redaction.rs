//! The redaction filter seen from outside, against the real binary: a secret used in an
//! `api_call` header reaches the called server and appears nowhere else — not in any API
//! answer, not in the events, not in the log (at debug level) — and personal data in a run's
//! inputs (an e-mail, a card number, a phone number, an SSN, a bearer token, an API key) is
//! kept in its context but not in its events or the log. `traces.rs` checks the spans.

use std::time::Duration;

use serde_json::{Value, json};
use wiremock::matchers::path;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::{PERSONAL, Server, personal_inputs, personal_query, wait_for};

const SECRET: &str = "tok-5c1e7a9b3d2f";
const EMAIL: &str = "jane.doe@customer.example";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_and_personal_data_leave_no_trace_outside_the_context() {
    let echo = MockServer::start().await;
    Mock::given(path("/hook"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"echo": format!("Bearer {SECRET}"), "contact": EMAIL})),
        )
        .mount(&echo)
        .await;
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(dir.path(), &[], &["--log", "debug"]);
    let client = reqwest::Client::new();
    let post = |path: &str, body: Value| client.post(server.url(path)).json(&body).send();
    let stored = post(
        "/v1/secrets",
        json!({"name": "hook_token", "value": SECRET}),
    )
    .await
    .expect("secret");
    assert_eq!(stored.status(), 201);
    let wf = json!({
        "id": "notify", "name": "notify", "start_step": "call",
        "steps": [
            {"id": "call", "type": "api_call", "config": {
                "method": "POST",
                "url": format!("{}/hook", echo.uri()),
                "query": personal_query(),
                "headers": {"Authorization": "Bearer {{ secrets.hook_token }}"},
                "body": {"email": "{{ inputs.email }}", "card": "{{ inputs.card }}"},
            }, "next": "note"},
            {"id": "note", "type": "set", "config": {"values": {"who": "inputs.email"}}},
        ],
    });
    assert_eq!(post("/v1/workflows", wf).await.expect("save").status(), 201);
    let run: Value = post(
        "/v1/executions",
        json!({"workflow_id": "notify", "inputs": personal_inputs(), "wait_ms": 20000}),
    )
    .await
    .expect("start")
    .json()
    .await
    .expect("json");
    assert_eq!(run["status"], "completed", "{run}");
    let id = run["id"].as_str().expect("id");

    // The secret and the data reached the server they were meant for.
    let received = echo.received_requests().await.expect("recorded");
    let auth = received[0]
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    assert_eq!(auth, Some(format!("Bearer {SECRET}").as_str()));
    let query: Vec<(String, String)> = received[0].url.query_pairs().into_owned().collect();
    for (key, value, _) in PERSONAL {
        assert!(
            query.contains(&(key.to_string(), value.to_string())),
            "{key}: {query:?}"
        );
    }

    // The context keeps the inputs; nothing else shows the secret, and the events show none
    // of the personal data (one value per redaction pattern).
    let ctx: Value = client
        .get(server.url(&format!("/v1/executions/{id}/context")))
        .send()
        .await
        .expect("context")
        .json()
        .await
        .expect("json");
    assert_eq!(ctx["runtime"]["who"], EMAIL, "the run's own data is kept");
    for path in ["", "/context", "/steps", "/events"] {
        let text = client
            .get(server.url(&format!("/v1/executions/{id}{path}")))
            .send()
            .await
            .expect("read")
            .text()
            .await
            .expect("text");
        assert!(!text.contains(SECRET), "{path} shows the secret: {text}");
    }
    let events = client
        .get(server.url(&format!("/v1/executions/{id}/events")))
        .send()
        .await
        .expect("events")
        .text()
        .await
        .expect("text");
    assert!(
        events.contains("http.request") && events.contains("[REDACTED:email]"),
        "the request's URL is recorded, its e-mail masked: {events}"
    );
    for (key, _, fragment) in PERSONAL {
        assert!(
            !events.contains(fragment),
            "events show the {key}: {events}"
        );
    }
    let secrets = client
        .get(server.url("/v1/secrets"))
        .send()
        .await
        .expect("list")
        .text()
        .await
        .expect("text");
    assert!(!secrets.contains(SECRET));

    // The log (debug level, every request and call) holds none of them. Wait until the run's
    // completion has been logged at least, so the lines of interest are in.
    let logged = wait_for(Duration::from_secs(10), || async {
        let logs = server.logs();
        logs.iter()
            .any(|l| l.contains("http.response"))
            .then_some(logs)
    })
    .await
    .expect("the call was logged");
    assert!(logged.len() > 5, "a debug log has lines: {logged:?}");
    for line in &logged {
        assert!(
            !line.contains(SECRET),
            "a log line shows the secret: {line}"
        );
        for (key, _, fragment) in PERSONAL {
            assert!(
                !line.contains(fragment),
                "a log line shows the {key}: {line}"
            );
        }
    }
}
