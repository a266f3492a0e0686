//! Integration tests, one binary (one link step) for all of them:
//! - `store_contract`: the store port's contract, on SQLite and PostgreSQL;
//! - `api_workflows`: the workflows API through the router, on both stores;
//! - `api_templates`: the templates API, and workflows naming stored templates;
//! - `api_ai`: ai_generate end to end: mock and OpenAI-compatible providers, retries, usage;
//! - `api_executions`: runs through the router: lifecycle, tokens, idempotency, concurrency;
//! - `durability`: kill -9 and restart on PostgreSQL; ten thousand parked runs;
//! - `blackbox`: the built `scaff` binary as a user runs it (HTTP, CLI, signals);
//! - `openapi`: the committed `openapi.yaml` is what the server serves.

mod api_ai;
mod api_executions;
mod api_templates;
mod api_workflows;
mod blackbox;
mod durability;
mod openapi;
mod store_contract;
mod support;
