//! The executions API through the router, on both stores: the run lifecycle as a client
//! drives it — start, wait, resume with a token, cancel, idempotency, concurrency.

use std::sync::Arc;

use scaff::tokens::ResumeClaims;
use serde_json::{Value, json};

use crate::on_both_stores;
use crate::support::{Reply, TestApp, TestDb, example};

const BRIEF: &str = r#"
id: brief
name: Brief
start_step: collect
static: {env: production}
steps:
  - id: collect
    type: form
    config:
      fields:
        - {key: topic, type: string, required: true, min_length: 3}
        - {key: words, type: integer, default: 1000, min: 500, max: 3000}
    next: route
  - id: route
    type: conditional
    config: {when: "runtime.words > 2000", then: long, else: short}
  - id: long
    type: set
    config: {values: {size: "'long'", pages: "runtime.words / 500"}}
  - id: short
    type: set
    config: {values: {size: "'short'", label: "upper(runtime.topic)"}}
"#;

const TRIAGE: &str = r#"
id: triage
name: Triage
start_step: route
steps:
  - id: route
    type: conditional
    config:
      branches:
        - {when: "inputs.tier == 'enterprise'", next: vip}
        - {when: "inputs.score >= 5 and 'urgent' in inputs.tags", next: fast}
      default: normal
  - {id: vip, type: set, config: {values: {lane: "'vip'"}}}
  - {id: fast, type: set, config: {values: {lane: "'fast'"}}}
  - {id: normal, type: set, config: {values: {lane: "'normal'"}}}
"#;

async fn app_with(db: &TestDb, sources: &[&str]) -> TestApp {
    let app = TestApp::new(db).await;
    for src in sources {
        let reply = app.post_yaml("/v1/workflows", src).await;
        assert_eq!(reply.status, 201, "{}", reply.text);
    }
    app
}

async fn start(app: &TestApp, body: Value) -> Reply {
    app.post("/v1/executions", "application/json", body.to_string())
        .await
}

async fn resume(app: &TestApp, id: &str, body: Value) -> Reply {
    app.post(
        &format!("/v1/executions/{id}/resume"),
        "application/json",
        body.to_string(),
    )
    .await
}

fn id_of(reply: &Reply) -> String {
    reply.json["id"].as_str().expect("id").to_string()
}

/// Starts a brief run and returns it once it waits on the form.
async fn waiting_brief(app: &TestApp) -> Reply {
    let reply = start(app, json!({"workflow_id": "brief", "wait_ms": 5000})).await;
    assert_eq!(reply.status, 202, "{}", reply.text);
    assert_eq!(reply.json["status"], "waiting", "{}", reply.text);
    reply
}

async fn form_conditional_set_runs_to_completion(db: &TestDb) {
    let app = app_with(db, &[BRIEF]).await;
    let started = waiting_brief(&app).await;
    let id = id_of(&started);
    assert_eq!(
        started.headers["location"],
        format!("/v1/executions/{id}").as_str()
    );
    assert_eq!(started.json["current_step"], "collect");
    assert_eq!(started.json["waiting"]["step_id"], "collect");
    assert_eq!(started.json["waiting"]["kind"], "form");
    assert_eq!(started.json["waiting"]["fields"][0]["key"], "topic");
    let token = started.json["resume_token"]
        .as_str()
        .expect("token")
        .to_string();

    let done = resume(
        &app,
        &id,
        json!({"resume_token": token, "inputs": {"topic": "rust"}, "wait_ms": 5000}),
    )
    .await;
    assert_eq!(done.status, 200, "{}", done.text);
    assert_eq!(done.json["status"], "completed");
    assert!(
        done.json.get("resume_token").is_none(),
        "no token once the wait is over"
    );
    assert!(done.json["finished_at"].is_string());

    let context = app.get(&format!("/v1/executions/{id}/context")).await;
    assert_eq!(context.json["static"], json!({"env": "production"}));
    assert_eq!(
        context.json["runtime"],
        json!({"topic": "rust", "words": 1000, "size": "short", "label": "RUST"})
    );
    let steps = app.get(&format!("/v1/executions/{id}/steps")).await;
    let items = steps.json["items"].as_array().expect("items");
    let ids: Vec<&str> = items
        .iter()
        .map(|s| s["step_id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, ["collect", "route", "short"]);
    assert_eq!(items[0]["input"], json!({"topic": "rust"}));
    assert_eq!(items[0]["output"], json!({"topic": "rust", "words": 1000}));
    assert_eq!(items[1]["output"]["next"], "short");
    assert!(
        items
            .iter()
            .all(|s| s["status"] == "completed" && s["duration_ms"].as_i64().is_some())
    );

    let events = app.get(&format!("/v1/executions/{id}/events")).await;
    let kinds: Vec<&str> = events.json["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|e| e["kind"].as_str().expect("kind"))
        .collect();
    assert_eq!(
        kinds,
        [
            "run.created",
            "run.started",
            "step.started",
            "run.waiting",
            "run.resumed",
            "step.completed",
            "step.started",
            "step.completed",
            "step.started",
            "step.completed",
            "run.completed"
        ]
    );
    let seqs: Vec<i64> = events.json["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|e| e["seq"].as_i64().expect("seq"))
        .collect();
    assert_eq!(seqs, (1..=11).collect::<Vec<i64>>());
}

async fn the_long_branch_is_taken_when_its_condition_holds(db: &TestDb) {
    let app = app_with(db, &[BRIEF]).await;
    let started = waiting_brief(&app).await;
    let token = started.json["resume_token"].clone();
    let done = resume(
        &app,
        &id_of(&started),
        json!({"resume_token": token, "inputs": {"topic": "big", "words": 2500}, "wait_ms": 5000}),
    )
    .await;
    assert_eq!(done.json["status"], "completed", "{}", done.text);
    let context = app
        .get(&format!("/v1/executions/{}/context", id_of(&started)))
        .await;
    assert_eq!(context.json["runtime"]["size"], "long");
    assert_eq!(context.json["runtime"]["pages"], 5.0);
}

async fn every_branch_of_a_branches_conditional(db: &TestDb) {
    let app = app_with(db, &[TRIAGE]).await;
    for (inputs, lane) in [
        (json!({"tier": "enterprise", "score": 0, "tags": []}), "vip"),
        (
            json!({"tier": "free", "score": 7, "tags": ["urgent"]}),
            "fast",
        ),
        (
            json!({"tier": "free", "score": 7, "tags": ["later"]}),
            "normal",
        ),
    ] {
        let run = start(
            &app,
            json!({"workflow_id": "triage", "inputs": inputs, "wait_ms": 5000}),
        )
        .await;
        assert_eq!(run.json["status"], "completed", "{}", run.text);
        let context = app
            .get(&format!("/v1/executions/{}/context", id_of(&run)))
            .await;
        assert_eq!(context.json["runtime"]["lane"], lane);
    }
    let failed = start(
        &app,
        json!({"workflow_id": "triage", "inputs": {"tier": "free"}, "wait_ms": 5000}),
    )
    .await;
    assert_eq!(failed.json["status"], "failed");
    assert_eq!(failed.json["error"]["code"], "conditional.eval_failed");
    assert!(
        failed.json["error"]["message"]
            .as_str()
            .expect("message")
            .contains("inputs.score"),
        "{}",
        failed.text
    );
}

async fn invalid_input_names_each_field_and_the_run_keeps_waiting(db: &TestDb) {
    let app = app_with(db, &[BRIEF]).await;
    let started = waiting_brief(&app).await;
    let id = id_of(&started);
    let token = started.json["resume_token"].clone();
    let reply = resume(
        &app,
        &id,
        json!({"resume_token": token, "inputs": {"topic": "ab", "words": 99999, "color": "red"}}),
    )
    .await;
    let problem = reply.problem(422);
    let paths: Vec<&str> = problem["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e["path"].as_str().expect("path"))
        .collect();
    assert_eq!(paths, ["inputs.topic", "inputs.words", "inputs.color"]);
    let after = app.get(&format!("/v1/executions/{id}")).await;
    assert_eq!(after.json["status"], "waiting");
    // Tokens are issued on every read (their `iat` may differ by a second): the same wait
    // gives a token for the same run, step and wait version.
    let claims = |t: &Value| {
        let c = app
            .state
            .tokens
            .verify(t.as_str().expect("a token"))
            .expect("valid");
        (c.sub, c.step, c.ver)
    };
    assert_eq!(
        claims(&after.json["resume_token"]),
        claims(&token),
        "same wait, same token"
    );
    assert_eq!(
        app.get(&format!("/v1/executions/{id}/steps")).await.json["items"],
        json!([])
    );
    let ok = resume(
        &app,
        &id,
        json!({"resume_token": token, "inputs": {"topic": "abc"}, "wait_ms": 5000}),
    )
    .await;
    assert_eq!(
        ok.json["status"], "completed",
        "the same token still works after a refused input"
    );
}

async fn bad_tokens_are_refused_and_change_nothing(db: &TestDb) {
    let app = app_with(db, &[BRIEF]).await;
    let a = waiting_brief(&app).await;
    let b = waiting_brief(&app).await;
    let (a_id, b_id) = (id_of(&a), id_of(&b));
    let a_token = a.json["resume_token"].as_str().expect("token").to_string();
    let inputs = json!({"topic": "valid"});

    let mut tampered = a_token.clone();
    let last = tampered.pop().expect("char");
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    resume(
        &app,
        &a_id,
        json!({"resume_token": tampered, "inputs": inputs}),
    )
    .await
    .problem(401);
    resume(
        &app,
        &a_id,
        json!({"resume_token": "garbage", "inputs": inputs}),
    )
    .await
    .problem(401);
    resume(
        &app,
        &b_id,
        json!({"resume_token": a_token, "inputs": inputs}),
    )
    .await
    .problem(401);

    let claims = app.state.tokens.verify(&a_token).expect("valid");
    let expired = app
        .state
        .tokens
        .sign(&ResumeClaims {
            exp: chrono::Utc::now().timestamp() - 10,
            ..claims.clone()
        })
        .expect("signed");
    let reply = resume(
        &app,
        &a_id,
        json!({"resume_token": expired, "inputs": inputs}),
    )
    .await;
    assert!(
        reply.problem(401)["detail"]
            .as_str()
            .expect("detail")
            .contains("expired")
    );
    let wrong_step = app
        .state
        .tokens
        .sign(&ResumeClaims {
            step: "route".into(),
            ..claims.clone()
        })
        .expect("signed");
    resume(
        &app,
        &a_id,
        json!({"resume_token": wrong_step, "inputs": inputs}),
    )
    .await
    .problem(409);

    for id in [&a_id, &b_id] {
        let run = app.get(&format!("/v1/executions/{id}")).await;
        assert_eq!(run.json["status"], "waiting", "unchanged by bad tokens");
    }
    resume(
        &app,
        &a_id,
        json!({"resume_token": a_token, "inputs": inputs, "wait_ms": 5000}),
    )
    .await;
    let replay = resume(
        &app,
        &a_id,
        json!({"resume_token": a_token, "inputs": inputs}),
    )
    .await;
    replay.problem(409);
    assert_eq!(
        app.get(&format!("/v1/executions/{a_id}/steps")).await.json["items"]
            .as_array()
            .expect("items")
            .len(),
        3
    );

    resume(
        &app,
        "00000000-0000-0000-0000-000000000000",
        json!({"resume_token": a_token}),
    )
    .await
    .problem(401);
    resume(&app, &a_id, json!({"inputs": inputs}))
        .await
        .problem(422);
    app.get("/v1/executions/not-a-uuid").await.problem(404);
}

async fn cancel_while_waiting_and_after_the_end(db: &TestDb) {
    let app = app_with(db, &[BRIEF]).await;
    let started = waiting_brief(&app).await;
    let id = id_of(&started);
    let canceled = app
        .post(
            &format!("/v1/executions/{id}/cancel"),
            "application/json",
            json!({"reason": "duplicate"}).to_string(),
        )
        .await;
    assert_eq!(canceled.status, 200, "{}", canceled.text);
    assert_eq!(canceled.json["status"], "canceled");
    let again = app
        .post(
            &format!("/v1/executions/{id}/cancel"),
            "application/json",
            "",
        )
        .await;
    again.problem(409);
    let token = started.json["resume_token"].clone();
    resume(
        &app,
        &id,
        json!({"resume_token": token, "inputs": {"topic": "late"}}),
    )
    .await
    .problem(409);
    let events = app.get(&format!("/v1/executions/{id}/events")).await;
    let last = events.json["items"]
        .as_array()
        .expect("items")
        .last()
        .cloned()
        .expect("event");
    assert_eq!(
        (last["kind"].as_str(), last["data"]["reason"].as_str()),
        (Some("run.canceled"), Some("duplicate"))
    );
    app.post(
        "/v1/executions/00000000-0000-0000-0000-000000000000/cancel",
        "application/json",
        "",
    )
    .await
    .problem(404);
}

async fn idempotent_starts_return_the_same_run(db: &TestDb) {
    let app = app_with(db, &[BRIEF]).await;
    let body = json!({"workflow_id": "brief", "inputs": {"a": 1}, "idempotency_key": "order-42"});
    let first = start(&app, body.clone()).await;
    assert_eq!(first.status, 202);
    let second = start(&app, body.clone()).await;
    assert_eq!(second.status, 200);
    assert_eq!(id_of(&first), id_of(&second));
    let other = start(
        &app,
        json!({"workflow_id": "brief", "inputs": {"a": 2}, "idempotency_key": "order-42"}),
    )
    .await;
    other.problem(409);

    let via_header = app
        .send(
            axum::http::Request::post("/v1/executions")
                .header("content-type", "application/json")
                .header("idempotency-key", "order-42")
                .body(axum::body::Body::from(
                    json!({"workflow_id": "brief", "inputs": {"a": 1}}).to_string(),
                ))
                .expect("request"),
        )
        .await;
    assert_eq!(
        (via_header.status.as_u16(), id_of(&via_header)),
        (200, id_of(&first))
    );
    let listed = app.get("/v1/executions?workflow_id=brief").await;
    assert_eq!(listed.json["items"].as_array().expect("items").len(), 1);
}

async fn concurrent_identical_starts_create_one_run(db: &TestDb) {
    let app = Arc::new(app_with(db, &[BRIEF]).await);
    let body = json!({"workflow_id": "brief", "idempotency_key": "race"});
    let replies = futures_join(20, |_| {
        let app = app.clone();
        let body = body.clone();
        async move { start(&app, body).await }
    })
    .await;
    let created = replies.iter().filter(|r| r.status == 202).count();
    let repeated = replies.iter().filter(|r| r.status == 200).count();
    assert_eq!((created, repeated), (1, 19));
    let ids: std::collections::HashSet<String> = replies.iter().map(id_of).collect();
    assert_eq!(ids.len(), 1);
}

/// Runs `n` futures concurrently on the test's runtime and collects their outputs in order.
async fn futures_join<F, Fut, T>(n: usize, make: F) -> Vec<T>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let handles: Vec<_> = (0..n).map(|i| tokio::spawn(make(i))).collect();
    let mut out = Vec::with_capacity(n);
    for h in handles {
        out.push(h.await.expect("task"));
    }
    out
}

async fn a_hundred_concurrent_runs_all_complete(db: &TestDb) {
    let app = Arc::new(app_with(db, &[&example("chain10.yaml")]).await);
    let id = app.get("/v1/workflows?name=chain10").await.json["items"][0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let replies = futures_join(100, |i| {
        let app = app.clone();
        let id = id.clone();
        async move {
            start(
                &app,
                json!({"workflow_id": id, "inputs": {"i": i}, "wait_ms": 30000}),
            )
            .await
        }
    })
    .await;
    for r in &replies {
        assert_eq!(r.json["status"], "completed", "{}", r.text);
    }
    let contexts = futures_join(100, |i| {
        let app = app.clone();
        let run = id_of(&replies[i]);
        async move { app.get(&format!("/v1/executions/{run}/context")).await.json }
    })
    .await;
    for (i, c) in contexts.iter().enumerate() {
        assert_eq!(c["runtime"], json!({"n": 10}));
        assert_eq!(c["inputs"], json!({"i": i}));
    }
}

async fn a_hundred_concurrent_resumes_succeed_once(db: &TestDb) {
    let app = Arc::new(app_with(db, &[BRIEF]).await);
    let started = waiting_brief(&app).await;
    let id = id_of(&started);
    let token = started.json["resume_token"].clone();
    let replies = futures_join(100, |i| {
        let app = app.clone();
        let id = id.clone();
        let token = token.clone();
        async move {
            resume(
                &app,
                &id,
                json!({"resume_token": token, "inputs": {"topic": format!("topic {i}")}}),
            )
            .await
        }
    })
    .await;
    let ok = replies.iter().filter(|r| r.status == 200).count();
    let conflicts = replies.iter().filter(|r| r.status == 409).count();
    assert_eq!(
        (ok, conflicts),
        (1, 99),
        "{:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    let done = app.get(&format!("/v1/executions/{id}?wait_ms=5000")).await;
    assert_eq!(done.json["status"], "completed");
    let steps = app.get(&format!("/v1/executions/{id}/steps")).await;
    let collects = steps.json["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|s| s["step_id"] == "collect")
        .count();
    assert_eq!(collects, 1);
}

async fn listing_filters_and_pages_newest_first(db: &TestDb) {
    let app = app_with(db, &[BRIEF, TRIAGE]).await;
    let mut brief_ids = Vec::new();
    for _ in 0..5 {
        brief_ids.push(id_of(&waiting_brief(&app).await));
    }
    let triage = start(
        &app,
        json!({"workflow_id": "triage", "inputs": {"tier": "enterprise"}, "wait_ms": 5000}),
    )
    .await;
    let waiting = app.get("/v1/executions?status=waiting&limit=2").await;
    let mut seen: Vec<String> = Vec::new();
    let mut page = waiting;
    loop {
        assert_eq!(page.status, 200, "{}", page.text);
        seen.extend(
            page.json["items"]
                .as_array()
                .expect("items")
                .iter()
                .map(|r| r["id"].as_str().expect("id").to_string()),
        );
        match page.json.get("next_cursor").and_then(Value::as_str) {
            Some(c) => {
                page = app
                    .get(&format!("/v1/executions?status=waiting&limit=2&cursor={c}"))
                    .await
            }
            None => break,
        }
    }
    brief_ids.reverse();
    assert_eq!(seen, brief_ids, "newest first, only waiting runs");
    let by_workflow = app.get("/v1/executions?workflow_id=triage").await;
    assert_eq!(
        by_workflow.json["items"][0]["id"].as_str(),
        Some(id_of(&triage).as_str())
    );
    app.get("/v1/executions?status=sleeping").await.problem(400);
    app.get("/v1/executions?cursor=xyz").await.problem(400);
}

async fn bad_start_requests_get_precise_errors(db: &TestDb) {
    let app = app_with(db, &[BRIEF]).await;
    start(&app, json!({"workflow_id": "nope"}))
        .await
        .problem(404);
    start(&app, json!({"workflow_id": "brief", "version": 7}))
        .await
        .problem(404);
    let shape = start(&app, json!({"workflow_id": "brief", "inputs": [1, 2]})).await;
    assert_eq!(shape.problem(422)["errors"][0]["path"], "inputs");
    let unknown = start(&app, json!({"workflow_id": "brief", "input": {}})).await;
    assert!(
        unknown.problem(422)["errors"][0]["message"]
            .as_str()
            .expect("message")
            .contains("input")
    );
    app.post("/v1/executions", "application/json", "{\"workflow_id\": ")
        .await
        .problem(400);
    app.post("/v1/executions", "application/yaml", "workflow_id: brief")
        .await
        .problem(415);
    start(&app, json!({"workflow_id": "brief", "wait_ms": 10_000_000}))
        .await
        .problem(400);
    let pinned = start(
        &app,
        json!({"workflow_id": "brief", "version": 1, "wait_ms": 5000}),
    )
    .await;
    assert_eq!(pinned.json["workflow_version"], 1);
    assert!(
        app.get("/v1/executions").await.json["items"]
            .as_array()
            .expect("items")
            .len()
            == 1,
        "only the valid start made a run"
    );
}

on_both_stores!(
    form_conditional_set_runs_to_completion,
    the_long_branch_is_taken_when_its_condition_holds,
    every_branch_of_a_branches_conditional,
    invalid_input_names_each_field_and_the_run_keeps_waiting,
    bad_tokens_are_refused_and_change_nothing,
    cancel_while_waiting_and_after_the_end,
    idempotent_starts_return_the_same_run,
    concurrent_identical_starts_create_one_run,
    a_hundred_concurrent_runs_all_complete,
    a_hundred_concurrent_resumes_succeed_once,
    listing_filters_and_pages_newest_first,
    bad_start_requests_get_precise_errors,
);
