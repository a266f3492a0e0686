//! Model providers for `ai_generate` steps, all implementing [`AiProvider`].
//!
//! - [`MockProvider`]: offline and deterministic (seed + conversation), schema-driven, with the
//!   failure modes of `config.mock` (`schema_violation`, `timeout`, `transient_error`).
//! - [`OpenAiProvider`]: Chat Completions with structured outputs, any OpenAI-compatible base URL.
//! - [`AnthropicProvider`]: the Messages API, JSON forced through a tool whose input schema is
//!   the step's schema.
//! - [`Providers`]: the set the server runs with — the mock always, the real ones when
//!   configured — dispatching each request on [`AiRequest::provider`].
//!
//! Providers only fetch an answer's text: extracting JSON from it and validating it against the
//! schema happen in the step (see [`scaff_core::ai::extract_json`]). Failures are classified
//! for retrying as [`AiError::Transient`] (429, 5xx, connection errors; with the provider's
//! `Retry-After`), [`AiError::Timeout`] (the call outlived [`AiRequest::timeout`], or a 408) and
//! [`AiError::Permanent`] (everything else: bad request, authentication, refusals).

mod anthropic;
mod http;
mod mock;
mod openai;

use async_trait::async_trait;
use scaff_core::ai::{AiError, AiProvider, AiRequest, AiResponse};
use scaff_core::workflow::Provider;

pub use anthropic::AnthropicProvider;
pub use http::sanitize_schema_name;
pub use mock::{DEFAULT_MOCK_SEED, MOCK_MODEL, MockProvider};
pub use openai::OpenAiProvider;

/// The providers a server runs with: the mock always, OpenAI and Anthropic when configured, and
/// the provider used by steps that name none.
///
/// [`AiRequest::provider`] is always set, so the run machinery resolves a step's provider with
/// [`Providers::default_provider`] before building the request; `generate` then dispatches on it.
#[derive(Debug)]
pub struct Providers {
    mock: MockProvider,
    openai: Option<OpenAiProvider>,
    anthropic: Option<AnthropicProvider>,
    default: Provider,
}

impl Providers {
    /// Only the mock, which is also the default provider.
    pub fn new(mock: MockProvider) -> Self {
        Self {
            mock,
            openai: None,
            anthropic: None,
            default: Provider::Mock,
        }
    }

    /// Adds (or replaces) the OpenAI-compatible provider.
    pub fn with_openai(mut self, openai: OpenAiProvider) -> Self {
        self.openai = Some(openai);
        self
    }

    /// Adds (or replaces) the Anthropic provider.
    pub fn with_anthropic(mut self, anthropic: AnthropicProvider) -> Self {
        self.anthropic = Some(anthropic);
        self
    }

    /// Sets the provider for steps that do not name one (the server's default). Choosing a
    /// provider that is not configured is allowed; its calls fail with
    /// [`AiError::Permanent`] — check [`Providers::is_configured`] at start-up to fail early.
    pub fn with_default(mut self, provider: Provider) -> Self {
        self.default = provider;
        self
    }

    /// The provider for steps that do not name one.
    pub fn default_provider(&self) -> Provider {
        self.default
    }

    /// Whether requests for `provider` can be served.
    pub fn is_configured(&self, provider: Provider) -> bool {
        match provider {
            Provider::Mock => true,
            Provider::Openai => self.openai.is_some(),
            Provider::Anthropic => self.anthropic.is_some(),
        }
    }

    /// The mock provider.
    pub fn mock(&self) -> &MockProvider {
        &self.mock
    }
}

#[async_trait]
impl AiProvider for Providers {
    async fn generate(&self, request: &AiRequest) -> Result<AiResponse, AiError> {
        match request.provider {
            Provider::Mock => self.mock.generate(request).await,
            Provider::Openai => match &self.openai {
                Some(p) => p.generate(request).await,
                None => Err(AiError::Permanent(
                    "provider `openai` is not configured: set SCAFF_OPENAI_API_KEY (and \
                     SCAFF_OPENAI_BASE_URL for an OpenAI-compatible server) or choose another \
                     provider"
                        .into(),
                )),
            },
            Provider::Anthropic => match &self.anthropic {
                Some(p) => p.generate(request).await,
                None => Err(AiError::Permanent(
                    "provider `anthropic` is not configured: set SCAFF_ANTHROPIC_API_KEY (and \
                     SCAFF_ANTHROPIC_BASE_URL for a compatible server) or choose another provider"
                        .into(),
                )),
            },
        }
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Shared helpers for the provider tests.

    use std::time::Duration;

    use scaff_core::ai::{AiRequest, ChatMessage, Role};
    use scaff_core::workflow::Provider;
    use serde_json::json;

    /// A typical request: one user message, a small object schema.
    pub(crate) fn request(provider: Provider) -> AiRequest {
        AiRequest {
            provider,
            model: None,
            system: Some("You write release notes.".into()),
            messages: vec![ChatMessage {
                role: Role::User,
                content: "Summarise the release of version 1.2.".into(),
            }],
            json_schema: json!({
                "type": "object",
                "properties": {"headline": {"type": "string", "minLength": 5},
                               "risk": {"type": "string", "enum": ["low", "medium", "high"]}},
                "required": ["headline", "risk"]
            }),
            schema_name: "summarise".into(),
            temperature: Some(0.2),
            max_tokens: Some(300),
            timeout: Duration::from_secs(5),
            api_key: None,
            mock: None,
            attempt: 1,
        }
    }

    /// A local port nothing listens on (bound, then released).
    pub(crate) fn unused_port() -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("address").port()
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{request, unused_port};
    use super::*;

    #[tokio::test]
    async fn dispatches_to_the_mock_and_refuses_unconfigured_providers() {
        let providers = Providers::new(MockProvider::new(DEFAULT_MOCK_SEED));
        assert_eq!(providers.default_provider(), Provider::Mock);
        assert!(providers.is_configured(Provider::Mock));
        assert!(!providers.is_configured(Provider::Openai));

        let answer = providers
            .generate(&request(Provider::Mock))
            .await
            .expect("mock answers");
        assert_eq!(answer.model, MOCK_MODEL);

        for provider in [Provider::Openai, Provider::Anthropic] {
            match providers.generate(&request(provider)).await {
                Err(AiError::Permanent(msg)) => assert!(msg.contains("not configured"), "{msg}"),
                other => panic!("expected a permanent error, got {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn dispatches_to_configured_providers() {
        // Nothing listens there: reaching the provider (a connection error) is what matters.
        let openai = OpenAiProvider::new(
            format!("http://127.0.0.1:{}", unused_port()),
            None,
            "gpt-test",
        )
        .expect("client");
        let providers = Providers::new(MockProvider::new(1))
            .with_openai(openai)
            .with_default(Provider::Openai);
        assert_eq!(providers.default_provider(), Provider::Openai);
        assert!(providers.is_configured(Provider::Openai));
        assert!(matches!(
            providers.generate(&request(Provider::Openai)).await,
            Err(AiError::Transient { .. })
        ));
    }
}
