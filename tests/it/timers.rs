//! Durable timers through the API, on both stores: approval and form deadlines (to
//! `on_timeout` or failing), reminders, timers made moot by a decision, long back-offs parked
//! on a timer, the triage example's every branch, and a deadline passing while the server is
//! down.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use scaff::server::{HttpSettings, Settings};
use scaff_actors::HttpStepSettings;
use scaff_core::ai::{AiError, AiProvider, AiRequest, AiResponse};
use scaff_core::run::Clock;
use scaff_core::store::{MessageKind, MessageStatus, OutboxQuery};
use serde_json::{Value, json};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::on_both_stores;
use crate::support::{Server, TestApp, TestDb, example, wait_for};

/// The wall clock moved forward by what a test asks (to pass hour-long deadlines at once).
#[derive(Default)]
struct ShiftedClock {
    offset_micros: AtomicI64,
}

impl ShiftedClock {
    fn advance(&self, by: chrono::Duration) {
        let micros = by.num_microseconds().expect("a sane shift");
        self.offset_micros.fetch_add(micros, Ordering::SeqCst);
    }
}

impl Clock for ShiftedClock {
    fn now(&self) -> DateTime<Utc> {
        let offset = chrono::Duration::microseconds(self.offset_micros.load(Ordering::SeqCst));
        scaff_core::run::SystemClock.now() + offset
    }
}

const REVIEW: &str = r#"
id: review
name: Review
start_step: check
steps:
  - id: check
    type: approval
    config:
      approvers: [ann@example.com, bob@example.com]
      min_approvals: 2
      timeout: 1s
      on_timeout: fallback
    next: publish
  - {id: publish, type: set, config: {values: {published: "true"}}}
  - {id: fallback, type: set, config: {values: {fell_back: "true"}}}
"#;

async fn start(app: &TestApp, workflow: &str, inputs: Value) -> Value {
    let reply = app
        .post(
            "/v1/executions",
            "application/json",
            json!({"workflow_id": workflow, "inputs": inputs, "wait_ms": 10000}).to_string(),
        )
        .await;
    assert!(reply.status.is_success(), "{}", reply.text);
    reply.json
}

/// Waits (bounded) until the run is terminal.
async fn finished(app: &TestApp, id: &str) -> Value {
    wait_for(Duration::from_secs(20), || async {
        let run = app.get(&format!("/v1/executions/{id}")).await.json;
        matches!(
            run["status"].as_str(),
            Some("completed" | "failed" | "canceled")
        )
        .then_some(run)
    })
    .await
    .unwrap_or_else(|| panic!("run {id} did not finish in time"))
}

async fn event_kinds(app: &TestApp, id: &str) -> Vec<String> {
    app.get(&format!("/v1/executions/{id}/events")).await.json["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|e| e["kind"].as_str().map(str::to_string))
        .collect()
}

async fn runtime(app: &TestApp, id: &str) -> Value {
    app.get(&format!("/v1/executions/{id}/context")).await.json["runtime"].clone()
}

async fn save(app: &TestApp, yaml: &str) {
    let saved = app.post_yaml("/v1/workflows", yaml).await;
    assert_eq!(saved.status, 201, "{}", saved.text);
}

async fn approval_deadline_continues_at_on_timeout(db: &TestDb) {
    let app = TestApp::new(db).await;
    save(&app, REVIEW).await;
    let run = start(&app, "review", json!({})).await;
    assert_eq!(run["status"], "waiting");
    let id = run["id"].as_str().expect("id");
    let read = app.get(&format!("/v1/executions/{id}")).await.json;
    assert!(
        read["waiting"]["deadline"].is_string(),
        "the wait shows its deadline: {read}"
    );
    let done = finished(&app, id).await;
    assert_eq!(done["status"], "completed", "{done}");
    let rt = runtime(&app, id).await;
    assert_eq!(rt["check"]["timed_out"], true);
    assert_eq!(rt["fell_back"], true);
    assert!(rt.get("published").is_none(), "{rt}");
    assert!(
        event_kinds(&app, id)
            .await
            .contains(&"step.timed_out".into())
    );
}

async fn approval_deadline_without_on_timeout_fails_the_run(db: &TestDb) {
    let app = TestApp::new(db).await;
    save(
        &app,
        &REVIEW.replace("      on_timeout: fallback\n", "").replace(
            "  - {id: fallback, type: set, config: {values: {fell_back: \"true\"}}}\n",
            "",
        ),
    )
    .await;
    let run = start(&app, "review", json!({})).await;
    let done = finished(&app, run["id"].as_str().expect("id")).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["error"]["code"], "approval.timeout", "{done}");
    assert_eq!(done["error"]["step_id"], "check");
}

async fn a_form_deadline_fails_the_run_with_form_timeout(db: &TestDb) {
    let app = TestApp::new(db).await;
    save(
        &app,
        r#"
id: intake
name: Intake
start_step: ask
steps:
  - id: ask
    type: form
    config: {fields: [{key: name, type: string}], timeout: 1s}
"#,
    )
    .await;
    let run = start(&app, "intake", json!({})).await;
    let done = finished(&app, run["id"].as_str().expect("id")).await;
    assert_eq!(done["error"]["code"], "form.timeout", "{done}");
}

async fn a_decision_before_the_deadline_makes_its_timer_a_no_op(db: &TestDb) {
    let app = TestApp::new(db).await;
    save(&app, REVIEW).await;
    let run = start(&app, "review", json!({})).await;
    let id = run["id"].as_str().expect("id");
    let tokens = app
        .get(&format!("/v1/executions/{id}/approvals"))
        .await
        .json;
    for t in tokens["approvers"].as_array().expect("approvers") {
        let reply = app
            .post(
                &format!("/v1/executions/{id}/resume"),
                "application/json",
                json!({"resume_token": t["resume_token"], "approvals": [{"step_id": "check", "approved": true}]}).to_string(),
            )
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text);
    }
    assert_eq!(finished(&app, id).await["status"], "completed");
    // The deadline's timer still fires (after 1 s) and is retired without effect.
    let retired = wait_for(Duration::from_secs(20), || async {
        db.store
            .next_timer_at()
            .await
            .expect("timers")
            .is_none()
            .then_some(())
    })
    .await;
    assert!(retired.is_some(), "the timer was retired");
    let rt = runtime(&app, id).await;
    assert_eq!(rt["published"], true);
    assert!(rt.get("fell_back").is_none());
    assert!(
        !event_kinds(&app, id)
            .await
            .contains(&"step.timed_out".into())
    );
}

async fn reminders_go_to_approvers_still_undecided(db: &TestDb) {
    let app = TestApp::new(db).await;
    save(
        &app,
        &REVIEW
            .replace("timeout: 1s", "timeout: 1h\n      reminder: 1s")
            .replace("      on_timeout: fallback\n", "")
            .replace(
                "  - {id: fallback, type: set, config: {values: {fell_back: \"true\"}}}\n",
                "",
            ),
    )
    .await;
    let run = start(&app, "review", json!({})).await;
    let id = run["id"].as_str().expect("id");
    let tokens = app
        .get(&format!("/v1/executions/{id}/approvals"))
        .await
        .json;
    let ann = tokens["approvers"]
        .as_array()
        .expect("approvers")
        .iter()
        .find(|t| t["approver"] == "ann@example.com")
        .expect("ann")["resume_token"]
        .clone();
    let reply = app
        .post(
            &format!("/v1/executions/{id}/resume"),
            "application/json",
            json!({"resume_token": ann, "approvals": [{"step_id": "check", "approved": true}]})
                .to_string(),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let reminded = wait_for(Duration::from_secs(20), || async {
        let events = app.get(&format!("/v1/executions/{id}/events")).await.json;
        events["items"]
            .as_array()
            .and_then(|items| items.iter().find(|e| e["kind"] == "wait.reminded").cloned())
    })
    .await
    .expect("a reminder was sent");
    // Event data passes the redaction filter: the one recipient's address is masked there
    // (the outbox below names them).
    assert_eq!(reminded["data"]["recipients"], json!(["[REDACTED:email]"]));
    // The reminder is a message in the outbox, delivered (to the log: no SMTP here).
    let run_id: uuid::Uuid = id.parse().expect("uuid");
    let sent = wait_for(Duration::from_secs(20), || async {
        let page = db
            .store
            .list_messages(&OutboxQuery {
                run_id: Some(run_id),
                limit: 50,
                ..OutboxQuery::default()
            })
            .await
            .expect("outbox");
        page.items.into_iter().find(|m| {
            m.message.kind == MessageKind::ApprovalReminder && m.status == MessageStatus::Sent
        })
    })
    .await
    .expect("the reminder was sent");
    assert_eq!(sent.message.recipient, "bob@example.com");
    assert!(
        sent.body.as_deref().unwrap_or_default().contains("check"),
        "the reminder names the step: {:?}",
        sent.body
    );
    let run = app.get(&format!("/v1/executions/{id}")).await.json;
    assert_eq!(run["status"], "waiting", "a reminder keeps the run waiting");
}

async fn a_long_back_off_parks_the_run_on_a_timer(db: &TestDb) {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ok": true})))
        .mount(&server)
        .await;
    let app = TestApp::with_settings(
        db,
        Settings {
            http_steps: HttpStepSettings {
                backoff_base: Duration::from_millis(300),
                backoff_cap: Duration::from_millis(300),
                park_threshold: Duration::from_millis(100),
                ..HttpStepSettings::default()
            },
            ..Settings::default()
        },
    )
    .await;
    let wf = json!({
        "id": "call", "name": "call", "start_step": "call",
        "steps": [{"id": "call", "type": "api_call", "config": {"method": "GET", "url": format!("{}/x", server.uri())}}],
    });
    let saved = app
        .post("/v1/workflows", "application/json", wf.to_string())
        .await;
    assert_eq!(saved.status, 201, "{}", saved.text);
    let run = start(&app, "call", json!({})).await;
    let id = run["id"].as_str().expect("id");
    let done = finished(&app, id).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert!(
        event_kinds(&app, id)
            .await
            .contains(&"step.retry_scheduled".into())
    );
    assert_eq!(server.received_requests().await.expect("recorded").len(), 2);
}

/// Answers the triage classification with whatever the test set last.
struct SetTriage(Mutex<Value>);

#[async_trait]
impl AiProvider for SetTriage {
    async fn generate(&self, _request: &AiRequest) -> Result<AiResponse, AiError> {
        let text = self.0.lock().map(|v| v.to_string()).unwrap_or_default();
        Ok(AiResponse {
            text,
            model: "set".into(),
            tokens_prompt: 1,
            tokens_output: 1,
        })
    }
}

async fn every_branch_of_the_triage_example(db: &TestDb) {
    let helpdesk = MockServer::start().await;
    Mock::given(method("PUT"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ticket": "T-1"})))
        .mount(&helpdesk)
        .await;
    let triage = Arc::new(SetTriage(Mutex::new(Value::Null)));
    let clock = Arc::new(ShiftedClock::default());
    let app = TestApp::with_settings(
        db,
        Settings {
            ai: triage.clone(),
            clock: clock.clone(),
            http: HttpSettings::default(),
            ..Settings::default()
        },
    )
    .await;
    let yaml = example("triage.yaml").replace("http://127.0.0.1:9003", &helpdesk.uri());
    let saved = app.post_yaml("/v1/workflows", &yaml).await;
    assert_eq!(saved.status, 201, "{}", saved.text);
    let wf = saved.json["id"].as_str().expect("id").to_string();

    // Runs one ticket through intake with `classified` as the model's answer; returns the run
    // settled after classification.
    let submit = |tier: &'static str, classified: Value| {
        let app = &app;
        let wf = wf.clone();
        let triage = triage.clone();
        async move {
            *triage.0.lock().expect("lock") = classified;
            let started = start(app, &wf, json!({})).await;
            let id = started["id"].as_str().expect("id").to_string();
            let resumed = app
                .post(
                    &format!("/v1/executions/{id}/resume"),
                    "application/json",
                    json!({
                        "resume_token": started["resume_token"],
                        "inputs": {"subject": "Help", "body": "It broke.", "customer_tier": tier},
                        "wait_ms": 10000,
                    })
                    .to_string(),
                )
                .await;
            assert!(resumed.status.is_success(), "{}", resumed.text);
            (id, resumed.json)
        }
    };
    let steps_of = |id: String| {
        let app = &app;
        async move {
            let steps = app.get(&format!("/v1/executions/{id}/steps")).await.json;
            steps["items"]
                .as_array()
                .expect("items")
                .iter()
                .map(|s| s["step_id"].as_str().unwrap_or_default().to_string())
                .collect::<Vec<_>>()
        }
    };

    // 1. Labels in production → straight to the helpdesk.
    let (id, run) = submit(
        "free",
        json!({"category": "bug", "urgency": 2, "labels": ["login"]}),
    )
    .await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(
        steps_of(id).await,
        ["intake", "classify", "route", "file_ticket"]
    );

    // 2. No labels → the default branch, also the helpdesk.
    let (id, run) = submit(
        "free",
        json!({"category": "how_to", "urgency": 1, "labels": []}),
    )
    .await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(
        steps_of(id).await,
        ["intake", "classify", "route", "file_ticket"]
    );

    // 3. Abuse → escalation; one approval (the default quorum) → the helpdesk.
    let (id, run) = submit(
        "free",
        json!({"category": "abuse", "urgency": 1, "labels": []}),
    )
    .await;
    assert_eq!(run["status"], "waiting", "{run}");
    assert_eq!(run["waiting"]["step_id"], "escalate");
    let tokens = app
        .get(&format!("/v1/executions/{id}/approvals"))
        .await
        .json;
    let reply = app
        .post(
            &format!("/v1/executions/{id}/resume"),
            "application/json",
            json!({"resume_token": tokens["approvers"][1]["resume_token"], "approvals": [{"step_id": "escalate", "approved": true}], "wait_ms": 10000}).to_string(),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(finished(&app, &id).await["status"], "completed");
    assert_eq!(
        steps_of(id).await,
        ["intake", "classify", "route", "escalate", "file_ticket"]
    );

    // 4. Urgent for an enterprise customer → escalation; rejected → failed with the reason.
    let (id, run) = submit(
        "enterprise",
        json!({"category": "bug", "urgency": 5, "labels": ["x"]}),
    )
    .await;
    assert_eq!(run["waiting"]["step_id"], "escalate", "{run}");
    let tokens = app
        .get(&format!("/v1/executions/{id}/approvals"))
        .await
        .json;
    let reply = app
        .post(
            &format!("/v1/executions/{id}/resume"),
            "application/json",
            json!({"resume_token": tokens["approvers"][0]["resume_token"], "approvals": [{"step_id": "escalate", "approved": false, "comment": "not ours"}], "wait_ms": 10000}).to_string(),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let done = finished(&app, &id).await;
    assert_eq!(done["error"]["code"], "approval.rejected", "{done}");
    assert!(
        done["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("not ours")
    );

    // 5. Escalated and nobody answers within the hour → failed with approval.timeout.
    let (id, run) = submit(
        "pro",
        json!({"category": "abuse", "urgency": 4, "labels": []}),
    )
    .await;
    assert_eq!(run["waiting"]["step_id"], "escalate", "{run}");
    clock.advance(chrono::Duration::minutes(61));
    app.state.runtime.watch().timers_armed();
    let done = finished(&app, &id).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["error"]["code"], "approval.timeout", "{done}");

    let filed = helpdesk.received_requests().await.expect("recorded");
    assert_eq!(filed.len(), 3, "three tickets reached the helpdesk");
}

on_both_stores!(
    approval_deadline_continues_at_on_timeout,
    approval_deadline_without_on_timeout_fails_the_run,
    a_form_deadline_fails_the_run_with_form_timeout,
    a_decision_before_the_deadline_makes_its_timer_a_no_op,
    reminders_go_to_approvers_still_undecided,
    a_long_back_off_parks_the_run_on_a_timer,
    every_branch_of_the_triage_example,
);

/// The deadline passes while the server is down (killed): after the restart the timer fires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_that_passed_while_the_server_was_down_fires_after_the_restart() {
    let dir = tempfile::tempdir().expect("dir");
    let mut server = Server::start(dir.path(), &[], &[]);
    let client = reqwest::Client::new();
    let yaml = REVIEW.replace("timeout: 1s", "timeout: 2s");
    let saved = client
        .post(server.url("/v1/workflows"))
        .header("content-type", "application/yaml")
        .body(yaml)
        .send()
        .await
        .expect("save");
    assert_eq!(saved.status(), 201);
    let run: Value = client
        .post(server.url("/v1/executions"))
        .json(&json!({"workflow_id": "review", "wait_ms": 5000}))
        .send()
        .await
        .expect("start")
        .json()
        .await
        .expect("json");
    assert_eq!(run["status"], "waiting", "{run}");
    let id = run["id"].as_str().expect("id").to_string();
    let deadline: DateTime<Utc> = run["waiting"]["deadline"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .unwrap_or_else(|| panic!("a deadline: {run}"));

    server.child.kill().expect("kill -9");
    let _ = server.child.wait();
    // The scenario itself: the server stays down until the deadline has passed.
    let down_for = (deadline - Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(down_for + Duration::from_millis(200)).await;

    let restarted = Server::start(dir.path(), &[], &[]);
    let url = restarted.url(&format!("/v1/executions/{id}"));
    let done = wait_for(Duration::from_secs(30), || async {
        let run: Value = client.get(&url).send().await.ok()?.json().await.ok()?;
        (run["status"] == "completed").then_some(run)
    })
    .await
    .expect("the run finished after the restart");
    let ctx: Value = client
        .get(restarted.url(&format!("/v1/executions/{id}/context")))
        .send()
        .await
        .expect("context")
        .json()
        .await
        .expect("json");
    assert_eq!(ctx["runtime"]["check"]["timed_out"], true, "{done}");
    assert_eq!(ctx["runtime"]["fell_back"], true);
}
