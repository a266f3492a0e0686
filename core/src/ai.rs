//! The AI port: what an `ai_generate` step asks of a model provider, what comes back, and how
//! failures are classified — plus the pure helpers around a call (extracting JSON from a
//! model's answer, validating it against the step's schema).
//!
//! Provider adapters (mock, OpenAI-compatible, Anthropic) implement [`AiProvider`] in the
//! `scaff` crate; the run machinery only sees this trait.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::workflow::{MockConfig, Provider};

/// Who said a message in the conversation with the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The workflow (the rendered prompt, or validation feedback).
    User,
    /// The model.
    Assistant,
}

/// One message of the conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Who said it.
    pub role: Role,
    /// What was said.
    pub content: String,
}

/// One call to a model.
#[derive(Debug, Clone, PartialEq)]
pub struct AiRequest {
    /// Which provider serves it.
    pub provider: Provider,
    /// Model name; `None` lets the provider use its configured default.
    pub model: Option<String>,
    /// Rendered system prompt.
    pub system: Option<String>,
    /// The conversation: the rendered prompt first, then earlier answers and feedback.
    pub messages: Vec<ChatMessage>,
    /// The JSON Schema the answer must satisfy.
    pub json_schema: Json,
    /// A name for the schema (providers that take one; the step id).
    pub schema_name: String,
    /// Sampling temperature.
    pub temperature: Option<f64>,
    /// Most output tokens.
    pub max_tokens: Option<u64>,
    /// How long the call may take.
    pub timeout: Duration,
    /// Mock behaviour for this step, when set.
    pub mock: Option<MockConfig>,
    /// Which schema attempt this is, from 1 (the mock counts failures with it).
    pub attempt: u32,
    /// A key for this call that overrides the provider's configured one (read from a secret
    /// when the server is configured so); never logged.
    pub api_key: Option<String>,
}

/// A model's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AiResponse {
    /// The answer text (JSON, possibly inside a fenced code block).
    pub text: String,
    /// The model that answered.
    pub model: String,
    /// Tokens in the prompt.
    pub tokens_prompt: u64,
    /// Tokens in the answer.
    pub tokens_output: u64,
}

/// Why a call failed, classified for retrying.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AiError {
    /// Worth retrying: 429, 5xx, a dropped connection. `retry_after` honours the provider's
    /// `Retry-After`.
    #[error("transient provider error: {message}")]
    Transient {
        /// What happened.
        message: String,
        /// How long the provider asked us to wait.
        retry_after: Option<Duration>,
    },
    /// The call took longer than its timeout (retried like a transient error).
    #[error("the provider did not answer within {0:?}")]
    Timeout(Duration),
    /// Not worth retrying: bad request, authentication, a provider that is not configured.
    #[error("provider error: {0}")]
    Permanent(String),
}

/// A model provider.
#[async_trait]
pub trait AiProvider: Send + Sync {
    /// Sends one request.
    async fn generate(&self, request: &AiRequest) -> Result<AiResponse, AiError>;
}

/// Parses a model's answer as JSON, tolerating a fenced code block (```json … ```) or prose
/// around a single JSON object.
pub fn extract_json(text: &str) -> Result<Json, String> {
    let trimmed = text.trim();
    if let Ok(v) = serde_json::from_str(trimmed) {
        return Ok(v);
    }
    if let Some(start) = trimmed.find("```") {
        let after = &trimmed[start + 3..];
        let body_start = after.find('\n').map_or(0, |i| i + 1);
        let body = &after[body_start..];
        if let Some(end) = body.find("```")
            && let Ok(v) = serde_json::from_str(body[..end].trim())
        {
            return Ok(v);
        }
    }
    if let (Some(open), Some(close)) = (trimmed.find('{'), trimmed.rfind('}'))
        && open < close
        && let Ok(v) = serde_json::from_str(&trimmed[open..=close])
    {
        return Ok(v);
    }
    Err("the answer is not JSON".into())
}

/// One way an answer breaks the schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaViolation {
    /// JSON pointer into the answer (`/sections/0/heading`), empty for the whole answer.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// A compiled JSON Schema (draft 2020-12), checked once and reused for every answer.
pub struct SchemaCheck {
    validator: jsonschema::Validator,
}

impl std::fmt::Debug for SchemaCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SchemaCheck")
    }
}

impl SchemaCheck {
    /// Compiles a schema (already validated when the workflow was saved).
    pub fn compile(schema: &Json) -> Result<Self, String> {
        jsonschema::draft202012::options()
            .should_validate_formats(true)
            .build(schema)
            .map(|validator| Self { validator })
            .map_err(|e| e.to_string())
    }

    /// Every violation of the schema by `value` (empty when valid).
    pub fn violations(&self, value: &Json) -> Vec<SchemaViolation> {
        self.validator
            .iter_errors(value)
            .map(|e| SchemaViolation {
                path: e.instance_path().as_str().to_string(),
                message: e.to_string(),
            })
            .collect()
    }
}

/// The feedback sent back to the model after an invalid answer.
pub fn feedback(problems: &[SchemaViolation]) -> String {
    let mut out = String::from("Your answer did not satisfy the required JSON Schema. Problems:\n");
    for p in problems {
        let at = if p.path.is_empty() {
            "(root)"
        } else {
            p.path.as_str()
        };
        out.push_str(&format!("- at {at}: {}\n", p.message));
    }
    out.push_str("Answer again with only a JSON value that satisfies the schema.");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_is_found_plain_fenced_or_in_prose() {
        assert_eq!(extract_json(" {\"a\": 1} "), Ok(json!({"a": 1})));
        assert_eq!(
            extract_json("```json\n{\"a\": 2}\n```"),
            Ok(json!({"a": 2}))
        );
        assert_eq!(
            extract_json("Sure! Here it is:\n```\n{\"a\": 3}\n```\nBye"),
            Ok(json!({"a": 3}))
        );
        assert_eq!(
            extract_json("The result is {\"a\": 4}."),
            Ok(json!({"a": 4}))
        );
        assert!(extract_json("no json here").is_err());
    }

    #[test]
    fn violations_name_the_path() {
        let check = SchemaCheck::compile(&json!({
            "type": "object",
            "properties": {"risk": {"enum": ["low", "high"]}, "n": {"type": "integer"}},
            "required": ["risk", "n"]
        }))
        .expect("schema");
        assert!(check.violations(&json!({"risk": "low", "n": 1})).is_empty());
        let v = check.violations(&json!({"risk": "meh", "n": "x"}));
        let paths: Vec<&str> = v.iter().map(|p| p.path.as_str()).collect();
        assert!(paths.contains(&"/risk") && paths.contains(&"/n"), "{v:?}");
        assert!(feedback(&v).contains("at /risk"));
    }
}
