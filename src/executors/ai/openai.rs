//! The OpenAI-compatible provider: Chat Completions (`POST {base_url}/chat/completions`) with
//! structured outputs (`response_format: {type: "json_schema", …}`).
//!
//! Any server speaking the same API works (OpenAI, Azure-style gateways, vLLM, Ollama,
//! llama.cpp…): the base URL is configurable and the key optional.

use std::fmt;

use async_trait::async_trait;
use reqwest::header::AUTHORIZATION;
use scaff_core::ai::{AiError, AiProvider, AiRequest, AiResponse, Role};
use serde_json::{Map, Value as Json, json};

use super::http;

/// Calls an OpenAI-compatible Chat Completions API.
#[derive(Clone)]
pub struct OpenAiProvider {
    base_url: String,
    api_key: Option<String>,
    default_model: String,
    client: reqwest::Client,
}

impl fmt::Debug for OpenAiProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiProvider")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("default_model", &self.default_model)
            .finish_non_exhaustive()
    }
}

impl OpenAiProvider {
    /// OpenAI's own API; `/chat/completions` is appended.
    pub const DEFAULT_BASE_URL: &'static str = "https://api.openai.com/v1";
    /// The model used when neither the step nor the configuration names one.
    pub const DEFAULT_MODEL: &'static str = "gpt-4o-mini";

    /// A provider with its own HTTP client.
    ///
    /// - `base_url`: the API root including the version segment, e.g.
    ///   [`Self::DEFAULT_BASE_URL`] or `http://localhost:11434/v1` for a local server;
    ///   `/chat/completions` is appended.
    /// - `api_key`: sent as `Authorization: Bearer …` when set (local servers often need none).
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

    /// The request body for `request`.
    fn body(&self, request: &AiRequest, model: &str) -> Json {
        let mut messages = Vec::with_capacity(request.messages.len() + 1);
        if let Some(system) = &request.system {
            messages.push(json!({"role": "system", "content": system}));
        }
        for m in &request.messages {
            let role = match m.role {
                Role::User => "user",
                Role::Assistant => "assistant",
            };
            messages.push(json!({"role": role, "content": m.content}));
        }
        let mut body = Map::new();
        body.insert("model".into(), json!(model));
        body.insert("messages".into(), Json::Array(messages));
        if let Some(t) = request.temperature {
            body.insert("temperature".into(), json!(t));
        }
        if let Some(n) = request.max_tokens {
            body.insert("max_tokens".into(), json!(n));
        }
        body.insert(
            "response_format".into(),
            json!({
                "type": "json_schema",
                "json_schema": {
                    "name": http::sanitize_schema_name(&request.schema_name),
                    "schema": request.json_schema,
                    "strict": false,
                }
            }),
        );
        Json::Object(body)
    }
}

#[async_trait]
impl AiProvider for OpenAiProvider {
    async fn generate(&self, request: &AiRequest) -> Result<AiResponse, AiError> {
        let model = request.model.as_deref().unwrap_or(&self.default_model);
        let mut builder = self
            .client
            .post(format!("{}/chat/completions", self.base_url))
            .json(&self.body(request, model));
        if let Some(key) = request.api_key.as_ref().or(self.api_key.as_ref()) {
            builder = builder.header(AUTHORIZATION, format!("Bearer {key}"));
        }
        let answer = http::send_json("openai", builder, request.timeout).await?;
        parse_answer(&answer, model)
    }
}

/// Reads a Chat Completions answer: `choices[0].message.content`, `usage`, `model`.
fn parse_answer(answer: &Json, requested_model: &str) -> Result<AiResponse, AiError> {
    let message = answer.pointer("/choices/0/message");
    let text = message
        .and_then(|m| m.get("content"))
        .and_then(Json::as_str)
        .filter(|t| !t.is_empty());
    let Some(text) = text else {
        let refusal = message
            .and_then(|m| m.get("refusal"))
            .and_then(Json::as_str);
        let finish = answer
            .pointer("/choices/0/finish_reason")
            .and_then(Json::as_str)
            .unwrap_or("unknown");
        return Err(AiError::Permanent(match refusal {
            Some(r) => format!("openai refused to answer: {r}"),
            None => format!("openai answered without content (finish_reason: {finish})"),
        }));
    };
    let count = |key: &str| {
        answer
            .pointer(&format!("/usage/{key}"))
            .and_then(Json::as_u64)
            .unwrap_or(0)
    };
    Ok(AiResponse {
        text: text.to_string(),
        model: answer
            .get("model")
            .and_then(Json::as_str)
            .unwrap_or(requested_model)
            .to_string(),
        tokens_prompt: count("prompt_tokens"),
        tokens_output: count("completion_tokens"),
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

    /// A Chat Completions answer as OpenAI documents it.
    fn completion(content: Json) -> Json {
        json!({
            "id": "chatcmpl-123",
            "object": "chat.completion",
            "created": 1_741_569_952,
            "model": "gpt-4o-mini-2024-07-18",
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": null,
                            "annotations": []},
                "logprobs": null,
                "finish_reason": "stop"
            }],
            "usage": {
                "prompt_tokens": 19, "completion_tokens": 10, "total_tokens": 29,
                "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                    "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}
            },
            "service_tier": "default"
        })
    }

    fn error_body(message: &str, kind: &str) -> Json {
        json!({"error": {"message": message, "type": kind, "param": null, "code": null}})
    }

    async fn provider_for(server: &MockServer) -> OpenAiProvider {
        OpenAiProvider::new(
            format!("{}/v1/", server.uri()),
            Some("sk-test".into()),
            "gpt-4o-mini",
        )
        .expect("client")
    }

    async fn answer_with(template: ResponseTemplate) -> (MockServer, Result<AiResponse, AiError>) {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v1/chat/completions"))
            .respond_with(template)
            .mount(&server)
            .await;
        let result = provider_for(&server)
            .await
            .generate(&request(Provider::Openai))
            .await;
        (server, result)
    }

    #[tokio::test]
    async fn success_sends_the_documented_request_and_reads_usage() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v1/chat/completions"))
            .and(header("authorization", "Bearer sk-test"))
            .and(header("content-type", "application/json"))
            .respond_with(ResponseTemplate::new(200).set_body_json(completion(json!(
                "{\"headline\": \"Version 1.2 ships\", \"risk\": \"low\"}"
            ))))
            .expect(1)
            .mount(&server)
            .await;
        let mut req = request(Provider::Openai);
        req.schema_name = "sign off.v2".into();
        req.messages.push(ChatMessage {
            role: Role::Assistant,
            content: "{}".into(),
        });
        req.messages.push(ChatMessage {
            role: Role::User,
            content: "Fix it.".into(),
        });
        let answer = provider_for(&server)
            .await
            .generate(&req)
            .await
            .expect("answer");
        assert_eq!(
            answer,
            AiResponse {
                text: "{\"headline\": \"Version 1.2 ships\", \"risk\": \"low\"}".into(),
                model: "gpt-4o-mini-2024-07-18".into(),
                tokens_prompt: 19,
                tokens_output: 10,
            }
        );

        let received = server.received_requests().await.expect("recording");
        assert_eq!(received.len(), 1);
        let body: Json = received[0].body_json().expect("json body");
        assert_eq!(
            body,
            json!({
                "model": "gpt-4o-mini",
                "messages": [
                    {"role": "system", "content": "You write release notes."},
                    {"role": "user", "content": "Summarise the release of version 1.2."},
                    {"role": "assistant", "content": "{}"},
                    {"role": "user", "content": "Fix it."}
                ],
                "temperature": 0.2,
                "max_tokens": 300,
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "sign_off_v2", "schema": req.json_schema,
                                    "strict": false}
                }
            })
        );
    }

    #[tokio::test]
    async fn the_step_model_wins_and_optional_fields_are_omitted() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                // A minimal compatible server: no usage, no model.
                "choices": [{"message": {"role": "assistant", "content": "{\"a\": 1}"}}]
            })))
            .mount(&server)
            .await;
        let provider = OpenAiProvider::new(server.uri(), None, "default-model").expect("client");
        let mut req = request(Provider::Openai);
        req.model = Some("llama3".into());
        req.system = None;
        req.temperature = None;
        req.max_tokens = None;
        let answer = provider.generate(&req).await.expect("answer");
        assert_eq!(answer.model, "llama3");
        assert_eq!((answer.tokens_prompt, answer.tokens_output), (0, 0));

        let received = server.received_requests().await.expect("recording");
        assert!(received[0].headers.get("authorization").is_none());
        assert_eq!(received[0].url.path(), "/chat/completions");
        let body: Json = received[0].body_json().expect("json body");
        assert_eq!(body["model"], "llama3");
        assert_eq!(body["messages"].as_array().map(Vec::len), Some(1));
        assert!(body.get("temperature").is_none() && body.get("max_tokens").is_none());
    }

    #[tokio::test]
    async fn invalid_json_and_schema_violations_are_passed_through() {
        for content in [
            "Sure! Here is your summary: it went well.",
            "{\"headline\": 3}",
        ] {
            let (_server, result) =
                answer_with(ResponseTemplate::new(200).set_body_json(completion(json!(content))))
                    .await;
            assert_eq!(result.expect("answer").text, content);
        }
    }

    #[tokio::test]
    async fn a_refusal_is_permanent() {
        let mut body = completion(Json::Null);
        body["choices"][0]["message"]["refusal"] = json!("I can't help with that.");
        let (_server, result) = answer_with(ResponseTemplate::new(200).set_body_json(body)).await;
        match result {
            Err(AiError::Permanent(m)) => assert!(m.contains("I can't help with that."), "{m}"),
            other => panic!("expected permanent, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn rate_limits_are_transient_with_retry_after() {
        let (_server, result) = answer_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "7")
                .set_body_json(error_body("Rate limit reached for requests", "requests")),
        )
        .await;
        match result {
            Err(AiError::Transient {
                message,
                retry_after,
            }) => {
                assert_eq!(retry_after, Some(Duration::from_secs(7)));
                assert!(message.contains("Rate limit reached"), "{message}");
            }
            other => panic!("expected transient, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn server_errors_are_transient() {
        let (_server, result) = answer_with(
            ResponseTemplate::new(500)
                .set_body_json(error_body("The server had an error", "server_error")),
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
        let (_server, result) = answer_with(ResponseTemplate::new(400).set_body_json(error_body(
            "Invalid schema for response_format 'summarise'",
            "invalid_request_error",
        )))
        .await;
        match result {
            Err(AiError::Permanent(m)) => {
                assert!(m.contains("Invalid schema for response_format"), "{m}");
                assert!(m.contains("400"), "{m}");
            }
            other => panic!("expected permanent, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_slow_answer_is_a_timeout() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(completion(json!("{}")))
                    .set_delay(Duration::from_secs(2)),
            )
            .mount(&server)
            .await;
        let mut req = request(Provider::Openai);
        req.timeout = Duration::from_millis(200);
        let result = provider_for(&server).await.generate(&req).await;
        assert_eq!(result, Err(AiError::Timeout(Duration::from_millis(200))));
    }

    #[tokio::test]
    async fn a_refused_connection_is_transient() {
        let provider = OpenAiProvider::new(
            format!("http://127.0.0.1:{}/v1", unused_port()),
            Some("sk-test".into()),
            "gpt-4o-mini",
        )
        .expect("client");
        let result = provider.generate(&request(Provider::Openai)).await;
        match result {
            Err(AiError::Transient {
                message,
                retry_after: None,
            }) => assert!(message.contains("could not be reached"), "{message}"),
            other => panic!("expected transient, got {other:?}"),
        }
    }

    #[test]
    fn the_key_is_not_printed() {
        let provider = OpenAiProvider::new("http://x", Some("sk-secret".into()), "m").expect("ok");
        assert!(!format!("{provider:?}").contains("sk-secret"));
    }
}
