//! Adapters that carry out the side effects of steps on behalf of the run machinery.
//!
//! - [`ai`]: model providers for `ai_generate` steps (the deterministic mock, OpenAI-compatible
//!   Chat Completions, Anthropic Messages), all behind [`scaff_core::ai::AiProvider`].
//! - [`http`]: the HTTP client `api_call` steps send through (host policy, redirects, size
//!   limit), behind [`scaff_core::http::HttpPort`].

pub mod ai;
pub mod http;
