//! `examples/blog_post.yaml` end to end, on both stores: form → AI outline → approval →
//! AI draft → CMS call carrying a secret → chat notification, against real local HTTP servers
//! and the mock provider. The secret reaches the CMS and appears nowhere in what the API shows.

use serde_json::{Value, json};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::on_both_stores;
use crate::support::{TestApp, TestDb, example};

const SECRET: &str = "cms-token-5f1e9d2a7c";

async fn the_blog_post_flow_runs_end_to_end(db: &TestDb) {
    let cms = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/posts"))
        .and(header("authorization", format!("Bearer {SECRET}").as_str()))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": 7, "status": "draft"})))
        .mount(&cms)
        .await;
    let chat = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/hooks/content"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&chat)
        .await;

    let app = TestApp::new(db).await;
    crate::api_templates::seed_example_templates(&app).await;
    let secret = app
        .post(
            "/v1/secrets",
            "application/json",
            json!({"name": "cms_api_key", "value": SECRET}).to_string(),
        )
        .await;
    assert!(secret.status.is_success(), "{}", secret.text);
    let yaml = example("blog_post.yaml")
        .replace("http://127.0.0.1:9001", &cms.uri())
        .replace("http://127.0.0.1:9002", &chat.uri());
    let saved = app.post_yaml("/v1/workflows", &yaml).await;
    assert_eq!(saved.status, 201, "{}", saved.text);
    let workflow = saved.json["id"].as_str().expect("id").to_string();

    let run = app
        .post(
            "/v1/executions",
            "application/json",
            json!({"workflow_id": workflow, "wait_ms": 20000}).to_string(),
        )
        .await;
    assert_eq!(
        run.json["waiting"]["step_id"], "collect_brief",
        "{}",
        run.text
    );
    let id = run.json["id"].as_str().expect("id").to_string();
    let brief = app
        .post(
            &format!("/v1/executions/{id}/resume"),
            "application/json",
            json!({"resume_token": run.json["resume_token"], "inputs": {"topic": "Durable workflows", "audience": "developers"}, "wait_ms": 20000}).to_string(),
        )
        .await;
    assert_eq!(
        brief.json["waiting"]["step_id"], "review_outline",
        "{}",
        brief.text
    );
    let approvals = app.get(&format!("/v1/executions/{id}/approvals")).await;
    assert_eq!(
        approvals.json["approvers"][0]["approver"],
        "editor@example.com"
    );
    let editor = approvals.json["approvers"][0]["resume_token"].clone();
    let done = app
        .post(
            &format!("/v1/executions/{id}/resume"),
            "application/json",
            json!({"resume_token": editor, "approvals": [{"step_id": "review_outline", "approved": true, "comment": "good outline"}], "wait_ms": 30000}).to_string(),
        )
        .await;
    assert_eq!(done.json["status"], "completed", "{}", done.text);

    let posted = cms.received_requests().await.expect("recorded");
    assert_eq!(posted.len(), 1);
    let body: Value = serde_json::from_slice(&posted[0].body).expect("json body");
    let context = app.get(&format!("/v1/executions/{id}/context")).await;
    let runtime = &context.json["runtime"];
    assert_eq!(body["title"], runtime["title"]);
    assert_eq!(body["status"], "draft");
    assert!(
        body["tags"].is_array(),
        "a lone `{{{{ runtime.tags }}}}` keeps its JSON type: {body}"
    );
    assert_eq!(runtime["cms_response"]["status"], 201);
    assert_eq!(runtime["cms_response"]["body"]["id"], 7);
    let chatted = chat.received_requests().await.expect("recorded");
    let text: Value = serde_json::from_slice(&chatted[0].body).expect("json body");
    let title = runtime["title"].as_str().expect("title");
    assert_eq!(text["text"], format!("Blog post published: {title}"));

    for part in ["", "/context", "/steps", "/events"] {
        let shown = app.get(&format!("/v1/executions/{id}{part}")).await;
        assert!(
            !shown.text.contains(SECRET),
            "the secret leaked into GET /v1/executions/{{id}}{part}"
        );
    }
    let listed = app.get("/v1/secrets").await;
    assert!(!listed.text.contains(SECRET));
}

on_both_stores!(the_blog_post_flow_runs_end_to_end);
