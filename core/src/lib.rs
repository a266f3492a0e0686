//! Scaff's pure domain: what a workflow is, how a definition is checked, and the ports the
//! adapters implement. No I/O lives here (no tokio, sqlx, axum, reqwest or ractor), so every
//! rule is unit-tested without a runtime.
//!
//! # Layout
//! - [`diag`]: located problems ([`diag::Diagnostic`]) and their stable codes.
//! - [`located`]: YAML/JSON text → a tree of nodes that remember line and column, with limits
//!   against alias bombs and deep nesting.
//! - [`workflow`]: the workflow model and [`workflow::parse`], which reports every problem.
//! - [`expr`]: the expression language: [`expr::compile`] checks it once, [`expr::Expr::eval`]
//!   evaluates it over a run's context with bounded cost.
//! - [`lang`]: the seam where expression and template syntax checks plug in.
//! - [`redact`]: the one redaction filter (secret values and patterns such as tokens, e-mail
//!   addresses and card numbers) for logs, events and API responses.
//! - [`store`]: the storage port (records and traits) the PostgreSQL and SQLite adapters
//!   implement.

pub mod ai;
pub mod diag;
pub mod expr;
pub mod http;
pub mod lang;
pub mod located;
pub mod redact;
pub mod run;
pub mod store;
pub mod template;
pub mod workflow;
