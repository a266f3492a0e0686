//! The REST API: `router(state)` builds every route, with the OpenAPI document generated from
//! the handlers themselves (utoipa), so the served `/openapi.yaml` cannot drift from the code.
//!
//! Errors of every kind — handler errors, unknown routes, wrong methods, malformed paths and
//! queries, panics — leave as RFC 9457 problem+json (see [`error`]).

pub mod auth;
pub mod body;
pub mod cursor;
pub mod error;
pub mod executions;
pub mod extract;
pub mod json;
pub mod keys;
pub mod ops;
pub mod outbox;
pub mod secrets;
pub mod streams;
pub mod templates;
pub mod usage;
pub mod workflows;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use scaff_actors::Runtime;
use scaff_core::run::Clock;
use scaff_core::store::Store;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use error::ApiError;

/// Request limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
        }
    }
}

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The store.
    pub store: Arc<dyn Store>,
    /// The run runtime: starts, resumes, cancels and waits for runs.
    pub runtime: Runtime,
    /// Issues and verifies resume tokens.
    pub tokens: Arc<crate::tokens::ResumeTokens>,
    /// The outbox sender (stop it with `shutdown` when the server stops).
    pub notifier: crate::notify::Notifier,
    /// The time source.
    pub clock: Arc<dyn Clock>,
    /// Request limits.
    pub limits: Limits,
    /// The longest `wait_ms` a client may ask for.
    pub max_wait: Duration,
    /// The OpenAPI document as YAML, rendered once.
    pub openapi_yaml: Arc<str>,
    /// Secrets: sealed into the store, opened for steps.
    pub secrets: Arc<crate::secrets::SecretsService>,
    /// Checks credentials (or lets everything through with `--auth none`).
    pub auth: Arc<crate::auth::Authenticator>,
}

impl AppState {
    /// The decrypted secrets, as steps read them (`{{ secrets.<name> }}`).
    pub fn secret_values(&self) -> Arc<dyn scaff_core::http::SecretValues> {
        self.secrets.clone()
    }
}

/// Top-level facts of the OpenAPI document; the paths come from the routes.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Scaff API",
        description = "Schema-first AI workflow orchestration: save workflow definitions, run them as durable \
                       executions, and resume them with people's input. Errors are RFC 9457 problem+json.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    tags(
        (name = "workflows", description = "Workflow definitions and their versions"),
        (name = "executions", description = "Runs of workflows: start, read, resume, cancel"),
        (name = "events", description = "Live lifecycle events as Server-Sent Events: one run's (resumable) or every run's"),
        (name = "usage", description = "AI calls and tokens, summed"),
        (name = "templates", description = "Versioned prompt templates for ai_generate steps"),
        (name = "notifications", description = "Messages to people (approval requests, reminders) and their delivery"),
        (name = "keys", description = "API keys: create (shown once), list, revoke"),
        (name = "secrets", description = "Values encrypted at rest that templates reach as `secrets.<name>`; never returned"),
        (name = "operations", description = "Health, readiness and the API description")
    )
)]
struct ApiDoc;

fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(
            workflows::create_workflow,
            workflows::list_workflows
        ))
        .routes(routes!(workflows::validate_posted))
        .routes(routes!(workflows::get_workflow))
        .routes(routes!(workflows::add_version))
        .routes(routes!(workflows::get_version))
        .routes(routes!(workflows::validate_stored))
        .routes(routes!(executions::start, executions::list))
        .routes(routes!(executions::get))
        .routes(routes!(executions::context))
        .routes(routes!(executions::steps))
        .routes(routes!(executions::run_events))
        .routes(routes!(streams::run_stream))
        .routes(routes!(streams::all_stream))
        .routes(routes!(executions::resume))
        .routes(routes!(executions::cancel))
        .routes(routes!(executions::approval_tokens))
        .routes(routes!(usage::usage))
        .routes(routes!(outbox::list_outbox))
        .routes(routes!(
            templates::create_template,
            templates::list_templates
        ))
        .routes(routes!(templates::get_template))
        .routes(routes!(templates::get_template_version))
        .routes(routes!(secrets::put_secret, secrets::list_secrets))
        .routes(routes!(secrets::delete_secret))
        .routes(routes!(keys::create_key, keys::list_keys))
        .routes(routes!(keys::revoke_key))
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(ops::metrics))
}

/// The OpenAPI document describing every route.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, mut doc) = routes().split_for_parts();
    ops::document_extras(&mut doc);
    auth::document(&mut doc);
    doc
}

/// The OpenAPI document as YAML, exactly as served at `/openapi.yaml`.
pub fn openapi_yaml() -> String {
    openapi()
        .to_yaml()
        .unwrap_or_else(|e| format!("# the OpenAPI document could not be rendered: {e}\n"))
}

/// Every route, with problem+json fallbacks, body limits, request ids, tracing and panic capture.
pub fn router(state: AppState) -> Router {
    let (api, mut doc) = routes().split_for_parts();
    ops::document_extras(&mut doc);
    auth::document(&mut doc);
    let max_body = state.limits.max_body_bytes;
    let metrics = state.runtime.metrics().clone();
    api.merge(ops::static_routes(doc))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state.clone())
        .layer(axum::middleware::from_fn_with_state(state, auth::authorize))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(axum::middleware::from_fn_with_state(metrics, track_request))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
}

/// Counts each request by method, route template and status, and times it (RED metrics).
/// The route is the matched template (`/v1/executions/{id}`), never the raw path, so ids do
/// not multiply the series; requests that match no route count as `unmatched`. The time runs
/// until the response head: a stream's lifetime is not a request's latency.
async fn track_request(
    axum::extract::State(metrics): axum::extract::State<Arc<scaff_actors::Metrics>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let began = std::time::Instant::now();
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let response = next.run(req).await;
    metrics.record_http(
        method.as_str(),
        &route,
        response.status().as_u16(),
        began.elapsed(),
    );
    response
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NoRoute(
        StatusCode::NOT_FOUND,
        format!("no route for {}", uri.path()),
    )
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::NoRoute(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not allowed on {}", uri.path()),
    )
}

/// Each request's span carries its method, path and `x-request-id`, so log lines correlate.
fn request_span(req: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    tracing::info_span!(
        "request",
        method = %req.method(),
        path = %req.uri().path(),
        request_id = %request_id,
    )
}

fn panic_response(payload: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    ApiError::Internal(format!("handler panicked: {message}")).into_response()
}
