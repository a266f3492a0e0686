//! The Anthropic provider: the Messages API (`POST {base_url}/v1/messages`), with JSON forced
//! through a tool whose input schema is the step's schema (`tool_choice: {type: "tool"}`).
//!
//! Tool inputs must be objects, so a step schema whose root is not `type: object` is wrapped as
//! `{type: object, properties: {value: <schema>}, required: [value]}` and the answer unwrapped.

use std::fmt;

use async_trait::async_trait;
use scaff_core::ai::{AiError, AiProvider, AiRequest, AiResponse, Role};
use serde_json::{Map, Value as Json, json};

use super::http;

/// The API version header every request carries.
const API_VERSION: &str = "2023-06-01";

/// The property a non-object schema is wrapped in.
const WRAP_KEY: &str = "value";

/// Calls Anthropic's Messages API (or a compatible server).
#[derive(Clone)]
pub struct AnthropicProvider {
    base_url: String,
    api_key: Option<String>,
    default_model: String,
    client: reqwest::Client,
}

impl fmt::Debug for AnthropicProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnthropicProvider")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("default_model", &self.default_model)
            .finish_non_exhaustive()
    }
}

impl AnthropicProvider {
    /// Anthropic's API; `/v1/messages` is appended.
    pub const DEFAULT_BASE_URL: &'static str = "https://api.anthropic.com";
    /// The model used when neither the step nor the configuration names one.
    pub const DEFAULT_MODEL: &'static str = "claude-sonnet-4-5";
    /// `max_tokens` is required by the Messages API; this is sent when the step sets none.
    pub const DEFAULT_MAX_TOKENS: u64 = 1024;

    /// A provider with its own HTTP client.
    ///
    /// - `base_url`: the API root without the version segment, e.g. [`Self::DEFAULT_BASE_URL`];
    ///   `/v1/messages` is appended.
    /// - `api_key`: sent as `x-api-key` when set.
    /// - `default_model`: the model for steps that do not name one.
    ///
    /// Fails only when the TLS backend cannot be initialised.
    pub fn new(
        base_url: impl Into<String>,
        api_key: Option<String>,
        default_model: impl Into<String>,
    ) -> Result<Self, reqwest::Error> {
        Ok(Self::with_client(
            http::client()?,
            base_url,
            api_key,
            default_model,
        ))
    }

    /// Like [`Self::new`], sharing an existing client (connection pool). The per-call timeout
    /// comes from each request, whatever the client's own settings.
    pub fn with_client(
        client: reqwest::Client,
        base_url: impl Into<String>,
        api_key: Option<String>,
        default_model: impl Into<String>,
    ) -> Self {
        Self {
            base_url: http::trim_base(&base_url.into()),
            api_key: api_key.filter(|k| !k.is_empty()),
            default_model: default_model.into(),
            client,
        }
    }

    /// The API root requests go to.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The model for steps that do not name one.
    pub fn default_model(&self) -> &str {
        &self.default_model
    }
}

/// The tool's input schema for a step schema, and whether it was wrapped.
fn tool_schema(schema: &Json) -> (Json, bool) {
    if schema.get("type").and_then(Json::as_str) == Some("object") {
        return (schema.clone(), false);
    }
    let mut inner = schema.clone();
    let mut wrapper = Map::new();
    wrapper.insert("type".into(), json!("object"));
    // References like `#/$defs/x` resolve against the document root: keep them there.
    if let Some(inner) = inner.as_object_mut() {
        for key in ["$schema", "$defs", "definitions"] {
            if let Some(v) = inner.remove(key) {
                wrapper.insert(key.into(), v);
            }
        }
    }
    wrapper.insert("properties".into(), json!({ WRAP_KEY: inner }));
    wrapper.insert("required".into(), json!([WRAP_KEY]));
    (Json::Object(wrapper), true)
}

/// The request body for `request`.
fn body(request: &AiRequest, model: &str) -> (Json, bool) {
    let name = http::sanitize_schema_name(&request.schema_name);
    let (input_schema, wrapped) = tool_schema(&request.json_schema);
    let messages: Vec<Json> = request
        .messages
        .iter()
        .map(|m| {
            let role = match m.role {
                Role::User => "user",
                Role::Assistant => "assistant",
            };
            json!({"role": role, "content": m.content})
        })
        .collect();
    let mut body = Map::new();
    body.insert("model".into(), json!(model));
    body.insert(
        "max_tokens".into(),
        json!(
            request
                .max_tokens
                .unwrap_or(AnthropicProvider::DEFAULT_MAX_TOKENS)
        ),
    );
    if let Some(system) = &request.system {
        body.insert("system".into(), json!(system));
    }
    body.insert("messages".into(), Json::Array(messages));
    if let Some(t) = request.temperature {
        body.insert("temperature".into(), json!(t));
    }
    body.insert(
        "tools".into(),
        json!([{
            "name": name,
            "description": "Answer with JSON matching the schema",
            "input_schema": input_schema,
        }]),
    );
    body.insert("tool_choice".into(), json!({"type": "tool", "name": name}));
    (Json::Object(body), wrapped)
}

#[async_trait]
impl AiProvider for AnthropicProvider {
    async fn generate(&self, request: &AiRequest) -> Result<AiResponse, AiError> {
        let model = request.model.as_deref().unwrap_or(&self.default_model);
        let (body, wrapped) = body(request, model);
        let mut builder = self
            .client
            .post(format!("{}/v1/messages", self.base_url))
            .header("anthropic-version", API_VERSION)
            .json(&body);
        if let Some(key) = request.api_key.as_ref().or(self.api_key.as_ref()) {
            builder = builder.header("x-api-key", key);
        }
        let answer = http::send_json("anthropic", builder, request.timeout).await?;
        parse_answer(&answer, model, wrapped)
    }
}

/// Reads a Messages answer: the first `tool_use` block's `input` (unwrapped when the schema was
/// wrapped), else the text blocks (a compatible server that ignored the tool; JSON extraction
/// later decides), plus `usage` and `model`.
fn parse_answer(
    answer: &Json,
    requested_model: &str,
    wrapped: bool,
) -> Result<AiResponse, AiError> {
    let blocks = answer
        .get("content")
        .and_then(Json::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let tool_input = blocks
        .iter()
        .find(|b| b.get("type").and_then(Json::as_str) == Some("tool_use"))
        .and_then(|b| b.get("input"));
    let text = match tool_input {
        Some(input) => {
            let input = match (wrapped, input.get(WRAP_KEY)) {
                (true, Some(inner)) => inner,
                _ => input,
            };
            input.to_string()
        }
        None => blocks
            .iter()
            .filter(|b| b.get("type").and_then(Json::as_str) == Some("text"))
            .filter_map(|b| b.get("text").and_then(Json::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
    };
    if text.trim().is_empty() {
        let stop = answer
            .get("stop_reason")
            .and_then(Json::as_str)
            .unwrap_or("unknown");
        return Err(AiError::Permanent(format!(
            "anthropic answered without content (stop_reason: {stop})"
        )));
    }
    let count = |key: &str| {
        answer
            .pointer(&format!("/usage/{key}"))
            .and_then(Json::as_u64)
            .unwrap_or(0)
    };
    Ok(AiResponse {
        text,
        model: answer
            .get("model")
            .and_then(Json::as_str)
            .unwrap_or(requested_model)
            .to_string(),
        // Cached prompt tokens are prompt tokens too.
        tokens_prompt: count("input_tokens")
            + count("cache_creation_input_tokens")
            + count("cache_read_input_tokens"),
        tokens_output: count("output_tokens"),
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use scaff_core::ai::ChatMessage;
    use scaff_core::workflow::Provider;
    use wiremock::matchers::{header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    use super::*;
    use crate::executors::ai::test_support::{request, unused_port};

    /// A Messages answer as Anthropic documents it.
    fn message(content: Json, stop_reason: &str) -> Json {
        json!({
            "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5-20250929",
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": null,
            "usage": {"input_tokens": 412, "output_tokens": 38,
                      "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
        })
    }

    fn tool_use(input: Json) -> Json {
        message(
            json!([{"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9",
                    "name": "summarise", "input": input}]),
            "tool_use",
        )
    }

    fn error_body(kind: &str, text: &str) -> Json {
        json!({"type": "error", "error": {"type": kind, "message": text},
               "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy"})
    }

    fn provider_for(server: &MockServer) -> AnthropicProvider {
        AnthropicProvider::new(server.uri(), Some("sk-ant-test".into()), "claude-test")
            .expect("client")
    }

    async fn answer_with(template: ResponseTemplate) -> Result<AiResponse, AiError> {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v1/messages"))
            .respond_with(template)
            .mount(&server)
            .await;
        provider_for(&server)
            .generate(&request(Provider::Anthropic))
            .await
    }

    #[tokio::test]
    async fn success_forces_the_tool_and_reads_usage() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v1/messages"))
            .and(header("x-api-key", "sk-ant-test"))
            .and(header("anthropic-version", "2023-06-01"))
            .and(header("content-type", "application/json"))
            .respond_with(ResponseTemplate::new(200).set_body_json(tool_use(
                json!({"headline": "Version 1.2 ships", "risk": "low"}),
            )))
            .expect(1)
            .mount(&server)
            .await;
        let mut req = request(Provider::Anthropic);
        req.messages.push(ChatMessage {
            role: Role::Assistant,
            content: "{}".into(),
        });
        req.messages.push(ChatMessage {
            role: Role::User,
            content: "Fix it.".into(),
        });
        let answer = provider_for(&server).generate(&req).await.expect("answer");
        assert_eq!(
            answer,
            AiResponse {
                text: r#"{"headline":"Version 1.2 ships","risk":"low"}"#.into(),
                model: "claude-sonnet-4-5-20250929".into(),
                tokens_prompt: 412,
                tokens_output: 38,
            }
        );
        let received = server.received_requests().await.expect("recording");
        let body: Json = received[0].body_json().expect("json body");
        assert_eq!(
            body,
            json!({
                "model": "claude-test",
                "max_tokens": 300,
                "system": "You write release notes.",
                "messages": [
                    {"role": "user", "content": "Summarise the release of version 1.2."},
                    {"role": "assistant", "content": "{}"},
                    {"role": "user", "content": "Fix it."}
                ],
                "temperature": 0.2,
                "tools": [{"name": "summarise",
                           "description": "Answer with JSON matching the schema",
                           "input_schema": req.json_schema}],
                "tool_choice": {"type": "tool", "name": "summarise"}
            })
        );
    }

    #[tokio::test]
    async fn defaults_and_non_object_schemas() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(tool_use(json!({"value": ["a", "b"]}))),
            )
            .mount(&server)
            .await;
        let provider =
            AnthropicProvider::new(format!("{}/", server.uri()), None, "claude-x").expect("client");
        let mut req = request(Provider::Anthropic);
        req.max_tokens = None;
        req.temperature = None;
        req.system = None;
        req.json_schema = json!({"$defs": {"tag": {"type": "string"}},
                                 "type": "array", "items": {"$ref": "#/$defs/tag"}});
        let answer = provider.generate(&req).await.expect("answer");
        assert_eq!(answer.text, r#"["a","b"]"#);

        let received = server.received_requests().await.expect("recording");
        assert!(received[0].headers.get("x-api-key").is_none());
        assert_eq!(received[0].url.path(), "/v1/messages");
        let body: Json = received[0].body_json().expect("json body");
        assert_eq!(body["max_tokens"], 1024);
        assert!(body.get("system").is_none() && body.get("temperature").is_none());
        assert_eq!(
            body["tools"][0]["input_schema"],
            json!({"type": "object", "$defs": {"tag": {"type": "string"}},
                   "properties": {"value": {"type": "array", "items": {"$ref": "#/$defs/tag"}}},
                   "required": ["value"]})
        );
    }

    #[tokio::test]
    async fn invalid_json_and_schema_violations_are_passed_through() {
        // A server that ignored the tool and wrote prose.
        let prose = message(
            json!([{"type": "text", "text": "Here you go: the release went fine."}]),
            "end_turn",
        );
        let answer = answer_with(ResponseTemplate::new(200).set_body_json(prose))
            .await
            .expect("answer");
        assert_eq!(answer.text, "Here you go: the release went fine.");

        let wrong = tool_use(json!({"headline": 3}));
        let answer = answer_with(ResponseTemplate::new(200).set_body_json(wrong))
            .await
            .expect("answer");
        assert_eq!(answer.text, r#"{"headline":3}"#);
    }

    #[tokio::test]
    async fn a_refusal_is_permanent() {
        let result =
            answer_with(ResponseTemplate::new(200).set_body_json(message(json!([]), "refusal")))
                .await;
        match result {
            Err(AiError::Permanent(m)) => assert!(m.contains("refusal"), "{m}"),
            other => panic!("expected permanent, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn rate_limits_and_overload_are_transient_with_retry_after() {
        for (status, kind) in [(429, "rate_limit_error"), (529, "overloaded_error")] {
            let result = answer_with(
                ResponseTemplate::new(status)
                    .insert_header("retry-after", "7")
                    .set_body_json(error_body(kind, "Please slow down")),
            )
            .await;
            match result {
                Err(AiError::Transient {
                    message,
                    retry_after,
                }) => {
                    assert_eq!(retry_after, Some(Duration::from_secs(7)));
                    assert!(message.contains("Please slow down"), "{message}");
                }
                other => panic!("expected transient for {status}, got {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn server_errors_are_transient() {
        let result = answer_with(
            ResponseTemplate::new(500).set_body_json(error_body("api_error", "Internal error")),
        )
        .await;
        assert!(
            matches!(
                result,
                Err(AiError::Transient {
                    retry_after: None,
                    ..
                })
            ),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn bad_requests_are_permanent_with_the_message() {
        let result = answer_with(ResponseTemplate::new(400).set_body_json(error_body(
            "invalid_request_error",
            "tools.0.input_schema: JSON schema is invalid",
        )))
        .await;
        match result {
            Err(AiError::Permanent(m)) => {
                assert!(m.contains("input_schema: JSON schema is invalid"), "{m}");
            }
            other => panic!("expected permanent, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_slow_answer_is_a_timeout() {
        let mut req = request(Provider::Anthropic);
        req.timeout = Duration::from_millis(200);
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(tool_use(json!({})))
                    .set_delay(Duration::from_secs(2)),
            )
            .mount(&server)
            .await;
        let result = provider_for(&server).generate(&req).await;
        assert_eq!(result, Err(AiError::Timeout(Duration::from_millis(200))));
    }

    #[tokio::test]
    async fn a_refused_connection_is_transient() {
        let provider = AnthropicProvider::new(
            format!("http://127.0.0.1:{}", unused_port()),
            Some("k".into()),
            "claude-test",
        )
        .expect("client");
        let result = provider.generate(&request(Provider::Anthropic)).await;
        assert!(
            matches!(
                result,
                Err(AiError::Transient {
                    retry_after: None,
                    ..
                })
            ),
            "{result:?}"
        );
    }

    #[test]
    fn the_key_is_not_printed() {
        let provider =
            AnthropicProvider::new("http://x", Some("sk-secret".into()), "m").expect("ok");
        assert!(!format!("{provider:?}").contains("sk-secret"));
    }
}
