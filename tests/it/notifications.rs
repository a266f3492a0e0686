//! Approval notifications end to end, on both stores: mail to each approver through a real
//! SMTP server on loopback (the token in it decides), retries after a transient SMTP failure,
//! the log transport and `GET /v1/outbox` without SMTP, stale messages dropped, and the
//! outbox listing's filters, pages and 400s.

use std::sync::Arc;
use std::time::Duration;

use scaff::notify::{Notifier, NotifySettings, RetryPolicy};
use scaff::server::Settings;
use scaff_core::run::SystemClock;
use serde_json::{Value, json};

use crate::on_both_stores;
use crate::support::{Reply, SmtpSink, TestApp, TestDb, wait_for};

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
      message: "Publish {{ inputs.title }}?"
    next: publish
  - {id: publish, type: set, config: {values: {published: "true"}}}
"#;

const SOLO: &str = r#"
id: solo
name: Solo
start_step: sign_off
steps:
  - id: sign_off
    type: approval
    config: {approvers: [ann@example.com]}
    next: null
"#;

const PUBLIC_URL: &str = "https://scaff.example.com";
const DEADLINE: Duration = Duration::from_secs(20);

/// Fast polling and back-off, so retries happen within a test.
fn notify(smtp_url: Option<String>, poll: Duration) -> NotifySettings {
    NotifySettings {
        smtp_url,
        from: "Scaff <scaff@example.com>".into(),
        public_url: format!("{PUBLIC_URL}/"),
        poll,
        smtp_timeout: Duration::from_secs(5),
        retry: RetryPolicy {
            first: Duration::from_millis(20),
            max: Duration::from_millis(100),
            max_attempts: 5,
        },
        ..NotifySettings::default()
    }
}

fn settings(smtp_url: Option<String>, poll: Duration) -> Settings {
    Settings {
        notify: notify(smtp_url, poll),
        ..Settings::default()
    }
}

/// Saves a workflow.
async fn save(app: &TestApp, workflow: &str) {
    let saved = app.post_yaml("/v1/workflows", workflow).await;
    assert_eq!(saved.status, 201, "{}", saved.text);
}

/// Starts a run of `workflow_id` that waits on its approval; the run's id.
async fn waiting_run(app: &TestApp, workflow_id: &str) -> String {
    let run = app
        .post(
            "/v1/executions",
            "application/json",
            json!({"workflow_id": workflow_id, "inputs": {"title": "Rust tips"}, "wait_ms": 5000})
                .to_string(),
        )
        .await;
    assert_eq!(run.json["status"], "waiting", "{}", run.text);
    run.json["id"].as_str().expect("id").to_string()
}

/// The ready-to-paste approve (or reject) request in a message body.
fn decision_in(body: &str, approved: bool) -> Value {
    body.lines()
        .filter(|l| l.starts_with('{'))
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["approvals"][0]["approved"] == approved)
        .unwrap_or_else(|| panic!("no decision ({approved}) in:\n{body}"))
}

async fn outbox(app: &TestApp, query: &str) -> Reply {
    let reply = app.get(&format!("/v1/outbox{query}")).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply
}

fn items(reply: &Reply) -> Vec<Value> {
    reply.json["items"].as_array().expect("items").clone()
}

/// Waits until every message of `run_id` has `status`; returns them.
async fn settled_messages(app: &TestApp, run_id: &str, n: usize, status: &str) -> Vec<Value> {
    wait_for(DEADLINE, || async {
        let all = items(&outbox(app, &format!("?run_id={run_id}")).await);
        (all.len() == n && all.iter().all(|m| m["status"] == status)).then_some(all)
    })
    .await
    .unwrap_or_else(|| panic!("the messages of {run_id} did not all become {status}"))
}

async fn each_approver_is_mailed_a_token_that_decides(db: &TestDb) {
    let sink = SmtpSink::start().await;
    let app =
        TestApp::with_settings(db, settings(Some(sink.url()), Duration::from_millis(20))).await;
    save(&app, REVIEW).await;
    let id = waiting_run(&app, "review").await;
    let mails = wait_for(DEADLINE, || {
        let mails = sink.mails();
        async move { (mails.len() >= 2).then_some(mails) }
    })
    .await
    .expect("one mail per approver");
    assert_eq!(mails.len(), 2, "{mails:?}");
    let mut recipients: Vec<String> = mails.iter().flat_map(|m| m.to.clone()).collect();
    recipients.sort();
    assert_eq!(recipients, ["ann@example.com", "bob@example.com"]);

    let resume = format!("{PUBLIC_URL}/v1/executions/{id}/resume");
    for (n, mail) in mails.iter().enumerate() {
        assert_eq!(mail.from, "scaff@example.com");
        let subject = mail.header("Subject").expect("subject");
        assert!(
            subject.contains("Review") && subject.contains("check"),
            "{subject}"
        );
        let body = mail.body();
        assert!(body.contains("Step:       check"), "{body}");
        assert!(
            body.contains("Publish Rust tips?"),
            "the rendered message: {body}"
        );
        assert!(body.contains(&resume), "{body}");
        assert_eq!(
            decision_in(&body, false)["approvals"][0]["step_id"],
            "check",
            "a reject variant too"
        );

        let approve = decision_in(&body, true);
        let token = approve["resume_token"].as_str().expect("token");
        let claims = app.state.tokens.verify(token).expect("a valid token");
        assert_eq!(
            claims.who.as_deref(),
            Some(mail.to[0].as_str()),
            "the token names its approver"
        );
        let decided = app
            .post(
                &format!("/v1/executions/{id}/resume"),
                "application/json",
                approve.to_string(),
            )
            .await;
        assert_eq!(decided.status, 200, "{}", decided.text);
        if n == 0 {
            assert_eq!(decided.json["status"], "waiting", "one of two approvals");
        }
    }
    let done = app.get(&format!("/v1/executions/{id}?wait_ms=5000")).await;
    assert_eq!(done.json["status"], "completed", "{}", done.text);
    let events = app.get(&format!("/v1/executions/{id}/events")).await;
    let mut deciders: Vec<&str> = events.json["items"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["kind"] == "approval.decided")
        .filter_map(|e| e["actor"].as_str())
        .collect();
    deciders.sort();
    assert_eq!(deciders, ["ann@example.com", "bob@example.com"]);

    let sent = settled_messages(&app, &id, 2, "sent").await;
    for m in &sent {
        assert_eq!(m["attempts"], 1);
        assert_eq!(m["kind"], "approval_requested");
        let mail = mails
            .iter()
            .find(|x| x.to[0] == m["recipient"].as_str().expect("recipient"))
            .expect("its mail");
        assert_eq!(
            m["body"].as_str().map(str::trim_end),
            Some(mail.body().trim_end()),
            "the outbox keeps what was sent"
        );
    }
}

async fn a_transient_smtp_failure_is_retried(db: &TestDb) {
    let sink = SmtpSink::refusing(2).await;
    let app =
        TestApp::with_settings(db, settings(Some(sink.url()), Duration::from_millis(20))).await;
    save(&app, SOLO).await;
    let id = waiting_run(&app, "solo").await;
    let sent = settled_messages(&app, &id, 1, "sent").await;
    assert_eq!(sent[0]["attempts"], 3, "{}", sent[0]);
    assert_eq!(sent[0]["last_error"], Value::Null);
    assert_eq!(sink.refused(), 2);
    let mails = sink.mails();
    assert_eq!(mails.len(), 1, "delivered once it was accepted");
    assert_eq!(mails[0].to, ["ann@example.com"]);
    let approve = decision_in(&mails[0].body(), true);
    let decided = app
        .post(
            &format!("/v1/executions/{id}/resume"),
            "application/json",
            approve.to_string(),
        )
        .await;
    assert_eq!(decided.status, 200, "{}", decided.text);
}

async fn without_smtp_messages_are_logged_and_listed(db: &TestDb) {
    let app = TestApp::with_settings(db, settings(None, Duration::from_millis(20))).await;
    assert_eq!(app.state.notifier.transport(), "log");
    save(&app, REVIEW).await;
    let id = waiting_run(&app, "review").await;
    let sent = settled_messages(&app, &id, 2, "sent").await;
    let mut recipients: Vec<&str> = sent
        .iter()
        .map(|m| m["recipient"].as_str().expect("recipient"))
        .collect();
    recipients.sort();
    assert_eq!(recipients, ["ann@example.com", "bob@example.com"]);
    for m in &sent {
        assert_eq!(m["run_id"], id.as_str());
        assert_eq!(m["step_id"], "check");
        assert_eq!(m["kind"], "approval_requested");
        assert_eq!(m["attempts"], 1);
        assert_eq!(m["last_error"], Value::Null);
        assert_eq!(
            m["next_attempt_at"],
            Value::Null,
            "only pending messages have one"
        );
        assert!(m["sent_at"].is_string() && m["created_at"].is_string());
        let subject = m["subject"].as_str().expect("subject");
        assert!(subject.contains("check"), "{subject}");
        let body = m["body"].as_str().expect("body");
        assert!(body.contains("Publish Rust tips?"), "{body}");
        assert!(
            body.contains(&format!("{PUBLIC_URL}/v1/executions/{id}/resume")),
            "{body}"
        );
    }
    // The token in a logged message works like a mailed one.
    let ann = sent
        .iter()
        .find(|m| m["recipient"] == "ann@example.com")
        .expect("ann's");
    let approve = decision_in(ann["body"].as_str().expect("body"), true);
    let decided = app
        .post(
            &format!("/v1/executions/{id}/resume"),
            "application/json",
            approve.to_string(),
        )
        .await;
    assert_eq!(decided.status, 200, "{}", decided.text);
    assert_eq!(
        decided.json["waiting"]["decisions"][0]["approver"],
        "ann@example.com"
    );
}

async fn a_message_about_a_finished_wait_is_not_sent(db: &TestDb) {
    // The app's own sender polls once at start and then not for an hour.
    let app = TestApp::with_settings(db, settings(None, Duration::from_secs(3600))).await;
    save(&app, REVIEW).await;
    let id = waiting_run(&app, "review").await;
    assert_eq!(
        items(&outbox(&app, &format!("?run_id={id}&status=pending")).await).len(),
        2
    );
    let canceled = app
        .post(
            &format!("/v1/executions/{id}/cancel"),
            "application/json",
            "{}",
        )
        .await;
    assert_eq!(canceled.status, 200, "{}", canceled.text);

    let sink = SmtpSink::start().await;
    let sender = Notifier::start(
        db.store.clone(),
        app.state.tokens.clone(),
        Arc::new(SystemClock),
        &notify(Some(sink.url()), Duration::from_millis(20)),
    )
    .expect("sender");
    let dropped = settled_messages(&app, &id, 2, "failed").await;
    for m in &dropped {
        let error = m["last_error"].as_str().expect("why");
        assert!(error.contains("no longer waits on step `check`"), "{error}");
    }
    assert!(
        sink.mails().is_empty(),
        "nothing mailed about a canceled run"
    );
    tokio::time::timeout(
        Duration::from_secs(5),
        sender.shutdown(Duration::from_secs(5)),
    )
    .await
    .expect("the sender stops promptly");
}

async fn the_outbox_filters_pages_and_refuses_bad_queries(db: &TestDb) {
    let app = TestApp::with_settings(db, settings(None, Duration::from_secs(3600))).await;
    save(&app, REVIEW).await;
    let first = waiting_run(&app, "review").await;
    let second = waiting_run(&app, "review").await;

    let all = items(&outbox(&app, "").await);
    assert_eq!(all.len(), 4);
    let ids: Vec<&str> = all.iter().map(|m| m["id"].as_str().expect("id")).collect();
    let mut newest_first = ids.clone();
    newest_first.sort_by(|a, b| b.cmp(a));
    assert_eq!(ids, newest_first, "newest first");
    assert!(all.iter().all(|m| m["status"] == "pending"
        && m["next_attempt_at"].is_string()
        && m["subject"].is_null()));

    let of_first = items(&outbox(&app, &format!("?run_id={first}")).await);
    assert_eq!(of_first.len(), 2);
    assert!(of_first.iter().all(|m| m["run_id"] == first.as_str()));
    let of_second = items(&outbox(&app, &format!("?run_id={second}&status=pending")).await);
    assert_eq!(of_second.len(), 2);

    let one: uuid::Uuid = ids[0].parse().expect("uuid");
    db.store
        .mark_sent(one, "subject", "body", chrono::Utc::now())
        .await
        .expect("mark sent");
    let sent = items(&outbox(&app, "?status=sent").await);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["id"], ids[0]);
    assert_eq!(items(&outbox(&app, "?status=pending").await).len(), 3);
    assert!(items(&outbox(&app, "?status=failed").await).is_empty());

    let page = outbox(&app, "?limit=3").await;
    assert_eq!(items(&page).len(), 3);
    let cursor = page.json["next_cursor"].as_str().expect("a next page");
    let rest = outbox(&app, &format!("?limit=3&cursor={cursor}")).await;
    assert_eq!(items(&rest).len(), 1);
    assert_eq!(rest.json["items"][0]["id"], ids[3]);
    assert!(rest.json.get("next_cursor").is_none(), "the last page");

    for bad in [
        "?status=bogus",
        "?run_id=not-a-uuid",
        "?limit=0",
        "?limit=201",
        "?cursor=%21%21",
        "?limit=many",
    ] {
        let reply = app.get(&format!("/v1/outbox{bad}")).await;
        reply.problem(400);
    }
    let status = app.get("/v1/outbox?status=bogus").await;
    assert!(
        status.problem(400)["detail"]
            .as_str()
            .expect("detail")
            .contains("pending, sent, failed"),
        "{}",
        status.text
    );
    // A cursor of another listing is refused, not misread.
    let runs = app.get("/v1/executions?limit=1").await;
    let foreign = runs.json["next_cursor"].as_str().expect("runs cursor");
    app.get(&format!("/v1/outbox?cursor={foreign}"))
        .await
        .problem(400);
}

/// A form with a `notify` list mails each listed address the form's fields and a request
/// that submits them; posting it (values filled in) continues the run.
async fn a_form_notifies_its_list_with_a_request_that_submits(db: &TestDb) {
    let sink = SmtpSink::start().await;
    let app =
        TestApp::with_settings(db, settings(Some(sink.url()), Duration::from_millis(20))).await;
    save(
        &app,
        r#"
id: intake
name: Intake
start_step: ask
steps:
  - id: ask
    type: form
    config:
      fields: [{key: title, type: string, required: true}, {key: words, type: integer}]
      notify: [ops@example.com, "{{ profile.owner }}"]
"#,
    )
    .await;
    let run = app
        .post(
            "/v1/executions",
            "application/json",
            json!({"workflow_id": "intake", "profile": {"owner": "max@example.com"}, "wait_ms": 5000})
                .to_string(),
        )
        .await;
    assert_eq!(run.json["status"], "waiting", "{}", run.text);
    let id = run.json["id"].as_str().expect("id").to_string();
    let mails = wait_for(DEADLINE, || {
        let mails = sink.mails();
        async move { (mails.len() >= 2).then_some(mails) }
    })
    .await
    .expect("one mail per listed address");
    let mut to: Vec<String> = mails.iter().flat_map(|m| m.to.clone()).collect();
    to.sort();
    assert_eq!(to, ["max@example.com", "ops@example.com"]);
    let body = mails[0].body();
    assert!(
        mails[0]
            .header("Subject")
            .unwrap_or_default()
            .starts_with("Input needed"),
        "{body}"
    );
    assert!(body.contains("title (string, required)"), "{body}");
    let mut request: Value = body
        .lines()
        .filter(|l| l.starts_with('{'))
        .find_map(|l| serde_json::from_str::<Value>(l).ok())
        .unwrap_or_else(|| panic!("no submit request in:\n{body}"));
    request["inputs"] = json!({"title": "Rust tips", "words": 300});
    request["wait_ms"] = json!(5000);
    let resumed = app
        .post(
            &format!("/v1/executions/{id}/resume"),
            "application/json",
            request.to_string(),
        )
        .await;
    assert_eq!(resumed.status, 200, "{}", resumed.text);
    assert_eq!(resumed.json["status"], "completed", "{}", resumed.text);
}

on_both_stores!(
    a_form_notifies_its_list_with_a_request_that_submits,
    each_approver_is_mailed_a_token_that_decides,
    a_transient_smtp_failure_is_retried,
    without_smtp_messages_are_logged_and_listed,
    a_message_about_a_finished_wait_is_not_sent,
    the_outbox_filters_pages_and_refuses_bad_queries,
);

/// The binary, configured by nothing but the conventional `SMTP_URL` variable, mails an
/// approver when an approval starts waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_sends_through_smtp_url() {
    let sink = crate::support::SmtpSink::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let server = crate::support::Server::start(
        dir.path(),
        &[("SMTP_URL", sink.url().as_str())],
        &["--outbox-poll-ms", "50"],
    );
    let client = reqwest::Client::new();
    let wf = serde_json::json!({
        "id": "ok", "name": "ok", "start_step": "check",
        "steps": [{"id": "check", "type": "approval", "config": {"approvers": ["ann@example.com"]}}],
    });
    let saved = client
        .post(server.url("/v1/workflows"))
        .json(&wf)
        .send()
        .await
        .expect("save");
    assert_eq!(saved.status(), 201);
    let started = client
        .post(server.url("/v1/executions"))
        .json(&serde_json::json!({"workflow_id": "ok", "wait_ms": 5000}))
        .send()
        .await
        .expect("start");
    assert_eq!(started.status(), 202);
    let mail = crate::support::wait_for(std::time::Duration::from_secs(20), || async {
        sink.mails().into_iter().next()
    })
    .await
    .expect("a mail reached the SMTP server named by SMTP_URL");
    assert_eq!(mail.to, ["ann@example.com"]);
    assert!(
        server
            .logs()
            .iter()
            .any(|l| l.contains("\"notifications\":\"smtp\"")),
        "the start-up line names the SMTP transport"
    );
}
