//! `ai_generate` end to end through the API, on both stores: the mock provider, schema
//! retries with the errors fed back (seen by a real local HTTP server speaking the OpenAI
//! API), transient failures, a crash between attempts, template pinning, and usage totals.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use scaff::executors::ai::{MockProvider, OpenAiProvider, Providers};
use scaff::server::Settings;
use scaff_actors::{AiSettings, DefaultExecutor, Execution, StepExecutor};
use scaff_core::ai::{AiError, AiProvider, AiRequest, AiResponse};
use scaff_core::run::Run;
use scaff_core::run::step::CompiledWorkflow;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::on_both_stores;
use crate::support::{Reply, TestApp, TestDb, example};

fn fast_ai() -> AiSettings {
    AiSettings {
        backoff_base: Duration::from_millis(5),
        backoff_cap: Duration::from_millis(50),
        timeout: Duration::from_secs(5),
        ..AiSettings::default()
    }
}

fn settings(provider: Arc<dyn AiProvider>) -> Settings {
    Settings {
        ai: provider,
        ai_settings: fast_ai(),
        ..Settings::default()
    }
}

/// Counts calls to the provider it wraps.
struct Counting {
    inner: Arc<dyn AiProvider>,
    calls: AtomicU32,
}

#[async_trait]
impl AiProvider for Counting {
    async fn generate(&self, request: &AiRequest) -> Result<AiResponse, AiError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.generate(request).await
    }
}

fn one_step(mock: &str) -> String {
    format!(
        r#"
id: gen
name: Gen
start_step: write
steps:
  - id: write
    type: ai_generate
    config:
      prompt: "Summarize {{{{ inputs.topic }}}} as JSON."
      output_key: summary
      mock: {mock}
      json_schema:
        type: object
        properties:
          headline: {{type: string, minLength: 5}}
          risk: {{type: string, enum: [low, medium, high]}}
        required: [headline, risk]
"#
    )
}

async fn start(app: &TestApp, workflow: &str, inputs: Value) -> Reply {
    let reply = app
        .post(
            "/v1/executions",
            "application/json",
            json!({"workflow_id": workflow, "inputs": inputs, "wait_ms": 20000}).to_string(),
        )
        .await;
    assert_eq!(reply.status, 202, "{}", reply.text);
    reply
}

async fn events(app: &TestApp, id: &str) -> Vec<Value> {
    app.get(&format!("/v1/executions/{id}/events")).await.json["items"]
        .as_array()
        .expect("items")
        .clone()
}

fn of_kind<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["kind"] == kind).collect()
}

async fn the_content_draft_example_runs_form_ai_approval(db: &TestDb) {
    let app = TestApp::with_settings(
        db,
        settings(Arc::new(Providers::new(MockProvider::new(42)))),
    )
    .await;
    let saved = app
        .post_yaml("/v1/workflows", &example("content_draft.yaml"))
        .await;
    let wf = saved.json["id"].as_str().expect("id").to_string();
    let run = start(&app, &wf, json!({})).await;
    assert_eq!(run.json["status"], "waiting");
    let id = run.json["id"].as_str().expect("id").to_string();
    let resumed = app
        .post(
            &format!("/v1/executions/{id}/resume"),
            "application/json",
            json!({"resume_token": run.json["resume_token"], "inputs": {"topic": "rust", "audience": "developers"}, "wait_ms": 20000}).to_string(),
        )
        .await;
    assert_eq!(resumed.json["status"], "waiting", "{}", resumed.text);
    assert_eq!(resumed.json["waiting"]["kind"], "approval");
    let context = app.get(&format!("/v1/executions/{id}/context")).await;
    assert!(
        context.json["runtime"]["draft"].is_string(),
        "merged key by key: {}",
        context.text
    );
    let evs = events(&app, &id).await;
    let responses = of_kind(&evs, "ai.response");
    assert_eq!(responses.len(), 1);
    let r = responses[0];
    assert_eq!(
        (r["data"]["provider"].as_str(), r["data"]["valid"].as_bool()),
        (Some("mock"), Some(true))
    );
    assert!(r["data"]["tokens_prompt"].as_i64().expect("tokens") > 0);
    assert!(r["data"]["tokens_output"].as_i64().expect("tokens") > 0);
    assert_eq!(r["data"]["retry_count"], 0);
    assert!(r["data"]["latency_ms"].is_number());
}

async fn one_schema_violation_then_success(db: &TestDb) {
    let app =
        TestApp::with_settings(db, settings(Arc::new(Providers::new(MockProvider::new(7))))).await;
    app.post_yaml(
        "/v1/workflows",
        &one_step("{mode: schema_violation, fail_times: 1}"),
    )
    .await;
    let run = start(&app, "gen", json!({"topic": "rust"})).await;
    assert_eq!(run.json["status"], "completed", "{}", run.text);
    let id = run.json["id"].as_str().expect("id");
    let evs = events(&app, id).await;
    let responses = of_kind(&evs, "ai.response");
    let valid: Vec<bool> = responses
        .iter()
        .map(|r| r["data"]["valid"].as_bool().expect("valid"))
        .collect();
    assert_eq!(valid, [false, true]);
    assert_eq!(responses[1]["data"]["retry_count"], 1);
    let steps = app.get(&format!("/v1/executions/{id}/steps")).await;
    assert_eq!(
        steps.json["items"].as_array().expect("items").len(),
        1,
        "one step record"
    );
    let summary =
        &app.get(&format!("/v1/executions/{id}/context")).await.json["runtime"]["summary"];
    assert!(
        summary["headline"]
            .as_str()
            .expect("headline")
            .chars()
            .count()
            >= 5
    );
}

async fn three_violations_fail_the_step(db: &TestDb) {
    let app =
        TestApp::with_settings(db, settings(Arc::new(Providers::new(MockProvider::new(7))))).await;
    app.post_yaml(
        "/v1/workflows",
        &one_step("{mode: schema_violation, fail_times: 5}"),
    )
    .await;
    let run = start(&app, "gen", json!({"topic": "rust"})).await;
    assert_eq!(run.json["status"], "failed", "{}", run.text);
    assert_eq!(run.json["error"]["code"], "ai.schema_validation_failed");
    let id = run.json["id"].as_str().expect("id");
    assert_eq!(
        of_kind(&events(&app, id).await, "ai.response").len(),
        3,
        "the first try and two retries"
    );
    let steps = app.get(&format!("/v1/executions/{id}/steps")).await;
    let step = &steps.json["items"][0];
    assert_eq!(step["status"], "failed");
    assert!(
        step["error"]["message"]
            .as_str()
            .expect("message")
            .contains("schema"),
        "{step}"
    );
}

async fn transient_errors_then_success(db: &TestDb) {
    let app =
        TestApp::with_settings(db, settings(Arc::new(Providers::new(MockProvider::new(7))))).await;
    app.post_yaml(
        "/v1/workflows",
        &one_step("{mode: transient_error, fail_times: 2}"),
    )
    .await;
    let run = start(&app, "gen", json!({"topic": "rust"})).await;
    assert_eq!(run.json["status"], "completed", "{}", run.text);
    let evs = events(&app, run.json["id"].as_str().expect("id")).await;
    let errors = of_kind(&evs, "ai.response")
        .iter()
        .filter(|r| r["data"]["error"].is_string())
        .count();
    assert_eq!(errors, 2);
}

/// Panics on the first execution of a step that already has progress (after an attempt was
/// checkpointed), as a crash between attempts would.
struct CrashOnce {
    inner: DefaultExecutor,
    crashed: AtomicU32,
}

impl StepExecutor for CrashOnce {
    fn execute(
        &self,
        wf: &Arc<CompiledWorkflow>,
        step_id: &str,
        run: &Run,
        attempt: i32,
    ) -> Execution {
        if run.step_state.is_some() && self.crashed.fetch_add(1, Ordering::SeqCst) == 0 {
            panic!("crash between attempts");
        }
        self.inner.execute(wf, step_id, run, attempt)
    }
}

async fn a_crash_between_attempts_does_not_repeat_a_call(db: &TestDb) {
    let counting = Arc::new(Counting {
        inner: Arc::new(Providers::new(MockProvider::new(7))),
        calls: AtomicU32::new(0),
    });
    let executor = Arc::new(CrashOnce {
        inner: DefaultExecutor::new(counting.clone(), db.store.clone(), fast_ai()),
        crashed: AtomicU32::new(0),
    });
    let app = TestApp::with_settings(
        db,
        Settings {
            executor: Some(executor.clone()),
            ..settings(counting.clone())
        },
    )
    .await;
    app.post_yaml(
        "/v1/workflows",
        &one_step("{mode: schema_violation, fail_times: 1}"),
    )
    .await;
    let run = start(&app, "gen", json!({"topic": "rust"})).await;
    assert_eq!(run.json["status"], "completed", "{}", run.text);
    assert_eq!(
        executor.crashed.load(Ordering::SeqCst),
        2,
        "it crashed once, then went on"
    );
    assert_eq!(
        counting.calls.load(Ordering::SeqCst),
        2,
        "the answered first call was not made again"
    );
}

async fn runs_use_the_template_version_pinned_at_start(db: &TestDb) {
    let app =
        TestApp::with_settings(db, settings(Arc::new(Providers::new(MockProvider::new(7))))).await;
    let t1 = app
        .post(
            "/v1/templates",
            "application/json",
            json!({"id": "brief", "prompt": "v1: {{ topic }}"}).to_string(),
        )
        .await;
    assert_eq!(t1.status, 201, "{}", t1.text);
    let yaml = r#"
id: pinned
name: Pinned
start_step: ask
steps:
  - id: ask
    type: form
    config: {fields: [{key: topic, type: string, required: true}]}
    next: write
  - id: write
    type: ai_generate
    config:
      template_id: brief
      variables: [topic]
      json_schema: {type: object, properties: {title: {type: string}}, required: [title]}
"#;
    assert_eq!(app.post_yaml("/v1/workflows", yaml).await.status, 201);
    let run = start(&app, "pinned", json!({})).await;
    let t2 = app
        .post(
            "/v1/templates",
            "application/json",
            json!({"id": "brief", "prompt": "v2: {{ topic }}"}).to_string(),
        )
        .await;
    assert_eq!(t2.json["version"], 2);
    let id = run.json["id"].as_str().expect("id");
    let done = app
        .post(
            &format!("/v1/executions/{id}/resume"),
            "application/json",
            json!({"resume_token": run.json["resume_token"], "inputs": {"topic": "rust"}, "wait_ms": 20000}).to_string(),
        )
        .await;
    assert_eq!(done.json["status"], "completed", "{}", done.text);
    let evs = events(&app, id).await;
    let request = of_kind(&evs, "ai.request")[0];
    assert_eq!(
        (
            request["data"]["template_id"].as_str(),
            request["data"]["template_version"].as_i64()
        ),
        (Some("brief"), Some(1))
    );
    let fresh = start(&app, "pinned", json!({})).await;
    let fresh_id = fresh.json["id"].as_str().expect("id");
    app.post(
        &format!("/v1/executions/{fresh_id}/resume"),
        "application/json",
        json!({"resume_token": fresh.json["resume_token"], "inputs": {"topic": "go"}, "wait_ms": 20000}).to_string(),
    )
    .await;
    let evs = events(&app, fresh_id).await;
    assert_eq!(
        of_kind(&evs, "ai.request")[0]["data"]["template_version"],
        2,
        "a new run takes the latest"
    );
}

async fn usage_sums_match_the_events(db: &TestDb) {
    let app =
        TestApp::with_settings(db, settings(Arc::new(Providers::new(MockProvider::new(7))))).await;
    app.post_yaml(
        "/v1/workflows",
        &one_step("{mode: schema_violation, fail_times: 1}"),
    )
    .await;
    let mut prompt = 0;
    let mut output = 0;
    let mut calls = 0;
    for topic in ["a", "b", "c"] {
        let run = start(&app, "gen", json!({"topic": topic})).await;
        for r in of_kind(
            &events(&app, run.json["id"].as_str().expect("id")).await,
            "ai.response",
        ) {
            calls += 1;
            prompt += r["data"]["tokens_prompt"].as_i64().expect("tokens");
            output += r["data"]["tokens_output"].as_i64().expect("tokens");
        }
    }
    for group in ["workflow", "provider", "model", "template"] {
        let usage = app
            .get(&format!("/v1/usage?group_by={group}&workflow_id=gen"))
            .await;
        assert_eq!(usage.status, 200, "{}", usage.text);
        let total = &usage.json["total"];
        assert_eq!(
            (
                total["calls"].as_i64(),
                total["tokens_prompt"].as_i64(),
                total["tokens_output"].as_i64()
            ),
            (Some(calls), Some(prompt), Some(output)),
            "{group}"
        );
    }
    let by_provider = app.get("/v1/usage?group_by=provider").await;
    assert_eq!(by_provider.json["items"][0]["key"], "mock");
    let future = app.get("/v1/usage?from=2999-01-01T00:00:00Z").await;
    assert_eq!(future.json["total"]["calls"], 0);
    app.get("/v1/usage?group_by=color").await.problem(400);
    app.get("/v1/usage?from=yesterday").await.problem(400);
}

async fn the_second_request_carries_the_validation_errors(db: &TestDb) {
    let server = MockServer::start().await;
    let answer = |content: &str| {
        ResponseTemplate::new(200).set_body_json(json!({
            "id": "chatcmpl-1", "object": "chat.completion", "model": "local-model",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
        }))
    };
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(answer("{\"headline\": \"ok\"}"))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(answer(
            "```json\n{\"headline\": \"A fine headline\", \"risk\": \"low\"}\n```",
        ))
        .mount(&server)
        .await;
    let openai = OpenAiProvider::new(
        format!("{}/v1", server.uri()),
        Some("sk-test".into()),
        "local-model",
    )
    .expect("client");
    let providers = Providers::new(MockProvider::new(1)).with_openai(openai);
    let app = TestApp::with_settings(db, settings(Arc::new(providers))).await;
    let yaml = one_step("{mode: success}")
        .replace("      mock: {mode: success}\n", "      provider: openai\n");
    assert_eq!(app.post_yaml("/v1/workflows", &yaml).await.status, 201);
    let run = start(&app, "gen", json!({"topic": "rust"})).await;
    assert_eq!(run.json["status"], "completed", "{}", run.text);
    let requests = server.received_requests().await.expect("recorded");
    assert_eq!(requests.len(), 2);
    let second: Value = serde_json::from_slice(&requests[1].body).expect("json");
    let messages = second["messages"].as_array().expect("messages");
    let last = messages.last().expect("message")["content"]
        .as_str()
        .expect("text");
    assert!(
        last.contains("risk"),
        "the feedback names the missing property: {last}"
    );
    assert_eq!(messages[messages.len() - 2]["role"], "assistant");
    let context = app
        .get(&format!(
            "/v1/executions/{}/context",
            run.json["id"].as_str().expect("id")
        ))
        .await;
    assert_eq!(
        context.json["runtime"]["summary"],
        json!({"headline": "A fine headline", "risk": "low"})
    );
}

async fn a_provider_key_can_live_in_the_secret_store(db: &TestDb) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(wiremock::matchers::header("authorization", "Bearer sk-from-the-vault"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "model": "local-model",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "{\"headline\": \"Keys from secrets\", \"risk\": \"low\"}"}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 4}
        })))
        .mount(&server)
        .await;
    let openai =
        OpenAiProvider::new(format!("{}/v1", server.uri()), None, "local-model").expect("client");
    let providers = Providers::new(MockProvider::new(1)).with_openai(openai);
    let mut s = settings(Arc::new(providers));
    s.ai_settings.openai_key_secret = Some("openai_api_key".into());
    let app = TestApp::with_settings(db, s).await;
    let yaml = one_step("{mode: success}")
        .replace("      mock: {mode: success}\n", "      provider: openai\n");
    app.post_yaml("/v1/workflows", &yaml).await;
    let missing = start(&app, "gen", json!({"topic": "a"})).await;
    assert_eq!(
        missing.json["error"]["code"], "ai.provider_error",
        "{}",
        missing.text
    );
    assert!(
        missing.json["error"]["message"]
            .as_str()
            .expect("message")
            .contains("openai_api_key")
    );
    let stored = app
        .post(
            "/v1/secrets",
            "application/json",
            json!({"name": "openai_api_key", "value": "sk-from-the-vault"}).to_string(),
        )
        .await;
    assert!(stored.status.is_success(), "{}", stored.text);
    let run = start(&app, "gen", json!({"topic": "b"})).await;
    assert_eq!(run.json["status"], "completed", "{}", run.text);
    let events = app
        .get(&format!(
            "/v1/executions/{}/events",
            run.json["id"].as_str().expect("id")
        ))
        .await;
    assert!(
        !events.text.contains("sk-from-the-vault"),
        "the key is in no event"
    );
}

on_both_stores!(
    a_provider_key_can_live_in_the_secret_store,
    the_content_draft_example_runs_form_ai_approval,
    one_schema_violation_then_success,
    three_violations_fail_the_step,
    transient_errors_then_success,
    a_crash_between_attempts_does_not_repeat_a_call,
    runs_use_the_template_version_pinned_at_start,
    usage_sums_match_the_events,
    the_second_request_carries_the_validation_errors,
);
