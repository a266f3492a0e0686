//! Approvals through the API, on both stores: per-approver tokens, quorum, rejection with the
//! reason, non-approvers refused, one decision each, and the audit trail.

use scaff::tokens::ResumeClaims;
use serde_json::{Value, json};

use crate::on_both_stores;
use crate::support::{Reply, TestApp, TestDb};

const REVIEW: &str = r#"
id: review
name: Review
start_step: check
steps:
  - id: check
    type: approval
    config:
      approvers: [ann@example.com, bob@example.com, "{{ profile.manager }}"]
      min_approvals: 2
    next: publish
  - {id: publish, type: set, config: {values: {published: "true"}}}
"#;

async fn waiting(app: &TestApp) -> Reply {
    let reply = app
        .post(
            "/v1/executions",
            "application/json",
            json!({"workflow_id": "review", "profile": {"manager": "max@example.com"}, "wait_ms": 5000}).to_string(),
        )
        .await;
    assert_eq!(reply.json["status"], "waiting", "{}", reply.text);
    reply
}

async fn token_of(app: &TestApp, run: &Value, who: &str) -> String {
    let id = run["id"].as_str().expect("id");
    let tokens = app.get(&format!("/v1/executions/{id}/approvals")).await;
    assert_eq!(tokens.status, 200, "{}", tokens.text);
    tokens.json["approvers"]
        .as_array()
        .expect("tokens")
        .iter()
        .find(|t| t["approver"] == who)
        .and_then(|t| t["resume_token"].as_str())
        .unwrap_or_else(|| panic!("no token for {who}: {}", tokens.text))
        .to_string()
}

async fn decide(app: &TestApp, id: &str, token: &str, approved: bool, comment: &str) -> Reply {
    app.post(
        &format!("/v1/executions/{id}/resume"),
        "application/json",
        json!({"resume_token": token, "approvals": [{"step_id": "check", "approved": approved, "comment": comment}], "wait_ms": 5000}).to_string(),
    )
    .await
}

async fn a_quorum_of_approvers_continues_the_run(db: &TestDb) {
    let app = TestApp::new(db).await;
    assert_eq!(app.post_yaml("/v1/workflows", REVIEW).await.status, 201);
    let run = waiting(&app).await;
    let id = run.json["id"].as_str().expect("id").to_string();
    assert!(
        run.json.get("resume_token").is_none(),
        "approvals take the approvers' own tokens"
    );
    let approvers: Vec<&str> = run.json["waiting"]["approvers"]
        .as_array()
        .expect("approvers")
        .iter()
        .map(|a| a.as_str().expect("a"))
        .collect();
    assert_eq!(
        approvers,
        ["ann@example.com", "bob@example.com", "max@example.com"],
        "templated approvers render"
    );
    let ann = token_of(&app, &run.json, "ann@example.com").await;
    let max = token_of(&app, &run.json, "max@example.com").await;

    let first = decide(&app, &id, &ann, true, "fine by me").await;
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(first.json["status"], "waiting", "one of two approvals");
    assert_eq!(
        first.json["waiting"]["decisions"][0]["approver"],
        "ann@example.com"
    );
    let again = decide(&app, &id, &ann, true, "twice").await;
    assert!(
        again.problem(409)["detail"]
            .as_str()
            .expect("detail")
            .contains("already decided")
    );

    let done = decide(&app, &id, &max, true, "ship it").await;
    assert_eq!(done.json["status"], "completed", "{}", done.text);
    let context = app.get(&format!("/v1/executions/{id}/context")).await;
    assert_eq!(context.json["runtime"]["check"]["approved"], true);
    assert_eq!(context.json["runtime"]["published"], true);
    let events = app.get(&format!("/v1/executions/{id}/events")).await;
    let decided: Vec<(String, bool, String)> = events.json["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|e| e["kind"] == "approval.decided")
        .map(|e| {
            (
                e["actor"].as_str().expect("actor").to_string(),
                e["data"]["approved"].as_bool().expect("approved"),
                e["data"]["comment"].as_str().expect("comment").to_string(),
            )
        })
        .collect();
    assert_eq!(
        decided,
        [
            (
                "ann@example.com".to_string(),
                true,
                "fine by me".to_string()
            ),
            ("max@example.com".to_string(), true, "ship it".to_string())
        ]
    );
}

async fn a_rejection_fails_the_run_with_the_reason(db: &TestDb) {
    let app = TestApp::new(db).await;
    app.post_yaml("/v1/workflows", REVIEW).await;
    let run = waiting(&app).await;
    let id = run.json["id"].as_str().expect("id").to_string();
    let bob = token_of(&app, &run.json, "bob@example.com").await;
    let ann = token_of(&app, &run.json, "ann@example.com").await;
    let rejected = decide(&app, &id, &bob, false, "numbers are wrong").await;
    assert_eq!(rejected.json["status"], "failed", "{}", rejected.text);
    assert_eq!(rejected.json["error"]["code"], "approval.rejected");
    assert!(
        rejected.json["error"]["message"]
            .as_str()
            .expect("message")
            .contains("numbers are wrong")
    );
    decide(&app, &id, &ann, true, "late").await.problem(409);
    app.get(&format!("/v1/executions/{id}/approvals"))
        .await
        .problem(409);
}

async fn only_listed_approvers_decide_with_their_own_tokens(db: &TestDb) {
    let app = TestApp::new(db).await;
    app.post_yaml("/v1/workflows", REVIEW).await;
    let run = waiting(&app).await;
    let id = run.json["id"].as_str().expect("id").to_string();
    let ann = token_of(&app, &run.json, "ann@example.com").await;
    let claims = app.state.tokens.verify(&ann).expect("valid");
    let eve = app
        .state
        .tokens
        .sign(&ResumeClaims {
            who: Some("eve@example.com".into()),
            ..claims.clone()
        })
        .expect("signed");
    decide(&app, &id, &eve, true, "let me in")
        .await
        .problem(403);
    let form_token = app
        .state
        .tokens
        .sign(&ResumeClaims {
            who: None,
            ..claims
        })
        .expect("signed");
    decide(&app, &id, &form_token, true, "no identity")
        .await
        .problem(422);
    let with_inputs = app
        .post(
            &format!("/v1/executions/{id}/resume"),
            "application/json",
            json!({"resume_token": ann, "inputs": {"x": 1}}).to_string(),
        )
        .await;
    with_inputs.problem(422);
    let wrong_step = app
        .post(
            &format!("/v1/executions/{id}/resume"),
            "application/json",
            json!({"resume_token": ann, "approvals": [{"step_id": "publish", "approved": true}]})
                .to_string(),
        )
        .await;
    wrong_step.problem(409);
    let still = app.get(&format!("/v1/executions/{id}")).await;
    assert_eq!(still.json["status"], "waiting");
    assert_eq!(
        still.json["waiting"]["decisions"],
        json!([]),
        "nothing was recorded"
    );
}

on_both_stores!(
    a_quorum_of_approvers_continues_the_run,
    a_rejection_fails_the_run_with_the_reason,
    only_listed_approvers_decide_with_their_own_tokens,
);
