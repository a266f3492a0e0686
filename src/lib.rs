//! The `scaff` server: the adapters around `scaff-core` and the composition root's parts.
//!
//! # Layout
//! - [`api`]: the REST API (axum): routes, problem+json errors, the OpenAPI document.
//! - [`auth`]: API keys and JWT bearer tokens: who is calling and with which role.
//! - [`store`]: the PostgreSQL and SQLite adapters of `scaff_core::store`, and migrations.
//! - [`executors`]: adapters for steps' side effects: AI providers (mock, OpenAI, Anthropic).
//! - [`config`]: command-line and environment configuration (clap).
//! - [`telemetry`]: structured logging, and traces exported over OTLP.
//! - [`notify`]: the outbox sender: approval messages over SMTP, or to the log.
//! - [`report`]: compiler-style rendering of definition problems for `scaff validate`.
//! - [`secrets`]: secrets sealed with AES-256-GCM under a master key; key files and rotation.
//! - [`server`]: assembles the application (store, runtime, tokens) for `main` and tests.
//! - [`tokens`]: resume tokens (signed JWTs).
//!
//! `main.rs` is the only place that knows every concrete type and wires them together.

pub mod api;
pub mod auth;
pub mod config;
pub mod executors;
pub mod notify;
pub mod report;
pub mod secrets;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod tokens;
