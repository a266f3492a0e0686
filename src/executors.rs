//! Adapters that carry out the side effects of steps on behalf of the run machinery.
//!
//! - [`ai`]: model providers for `ai_generate` steps (the deterministic mock, OpenAI-compatible
//!   Chat Completions, Anthropic Messages), all behind [`scaff_core::ai::AiProvider`].

pub mod ai;
