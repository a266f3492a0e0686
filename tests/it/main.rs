//! Integration tests, one binary (one link step) for all of them:
//! - `store_contract`: the store port's contract, on SQLite and PostgreSQL;
//! - `api_workflows`: the workflows API through the router, on both stores;
//! - `api_templates`: the templates API, and workflows naming stored templates;
//! - `api_ai`: ai_generate end to end: mock and OpenAI-compatible providers, retries, usage;
//! - `api_calls`: api_call end to end against local HTTP servers: bodies, retries, 4xx,
//!   timeouts, redirects, size limit, host policy, secrets redacted, triage's ticket;
//! - `api_approvals`: approval decisions: per-approver tokens, quorum, rejection, 403/409;
//! - `api_secrets`: the secrets API (sealed at rest, never returned) and `scaff secrets rotate-key`;
//! - `auth`: API keys, roles, JWTs (HS256, RS256, JWKS), token-only resumes, the audit trail,
//!   the first admin key printed once, `--auth none` refused off loopback;
//! - `api_executions`: runs through the router: lifecycle, tokens, idempotency, concurrency;
//! - `notifications`: approval messages over a real SMTP server on loopback (tokens that
//!   decide, retries), the log transport, and `GET /v1/outbox`;
//! - `durability`: kill -9 and restart on PostgreSQL; ten thousand parked runs;
//! - `blog_post`: examples/blog_post.yaml end to end against local CMS and chat servers;
//! - `blackbox`: the built `scaff` binary as a user runs it (HTTP, CLI, signals);
//! - `streams`: live event streams (SSE) over real HTTP: a run's, resumed, and every run's;
//! - `metrics`: `GET /metrics` counts runs, steps, checkpoints, AI usage and HTTP by route;
//! - `traces`: spans exported over OTLP to a receiver on loopback: a run is one trace, links,
//!   attributes, outgoing `traceparent`, redaction; a dead collector slows nothing;
//! - `openapi`: the committed `openapi.yaml` is what the server serves.

mod api_ai;
mod api_approvals;
mod api_calls;
mod api_executions;
mod api_secrets;
mod api_templates;
mod api_workflows;
mod auth;
mod blackbox;
mod blog_post;
mod durability;
mod metrics;
mod notifications;
mod openapi;
mod redaction;
mod store_contract;
mod streams;
mod support;
mod timers;
mod traces;
