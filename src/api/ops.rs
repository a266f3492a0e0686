//! Operations endpoints: liveness, readiness, metrics, the OpenAPI document and the rendered
//! reference.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use scaff_core::run::RunStatus;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa::openapi::OpenApi;
use utoipa_scalar::{Scalar, Servable};

use super::AppState;
use super::error::{ApiError, Problem};

/// A health answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok` or `ready`.
    pub status: &'static str,
}

/// Liveness: the process is up and serving.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Up", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Readiness: the store answers.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Health),
        (status = 503, description = "The store is unreachable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    state.store.ping().await?;
    Ok(Json(Health { status: "ready" }))
}

/// Metrics, in the Prometheus (OpenMetrics) text format.
///
/// Runs by outcome and workflow; step, checkpoint and HTTP latencies; AI calls and tokens;
/// live actors and waiting runs. `docs/operations.md` lists every series.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses(
        (status = 200, description = "Every series, as OpenMetrics text", body = String,
         content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8"),
        (status = 500, description = "The metrics could not be rendered", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let metrics = state.runtime.metrics();
    metrics.set_actors_live(state.runtime.live_count());
    // Waiting runs hold no actor, so only the store knows them (an index keeps this count
    // cheap). A store that does not answer leaves the last value; `/readyz` reports the store.
    match state.store.count_runs(RunStatus::Waiting).await {
        Ok(n) => metrics.set_runs_waiting(n),
        Err(e) => tracing::warn!(error = %e, "cannot count waiting runs for /metrics"),
    }
    let text = metrics
        .encode()
        .map_err(|e| ApiError::Internal(format!("rendering metrics: {e}")))?;
    Ok((
        [(header::CONTENT_TYPE, scaff_actors::metrics::CONTENT_TYPE)],
        text,
    ))
}

async fn openapi_yaml(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/yaml")],
        state.openapi_yaml.to_string(),
    )
}

/// `/openapi.yaml` and `/docs`, which describe the API rather than belong to it.
pub fn static_routes(doc: OpenApi) -> axum::Router<AppState> {
    axum::Router::new()
        .route("/openapi.yaml", axum::routing::get(openapi_yaml))
        .merge(Scalar::with_url("/docs", doc))
}

/// Documents the two descriptive routes, which are not utoipa handlers.
pub fn document_extras(doc: &mut OpenApi) {
    use utoipa::openapi::path::{OperationBuilder, PathItem};
    use utoipa::openapi::{ContentBuilder, HttpMethod, ResponseBuilder};
    let yaml = OperationBuilder::new()
        .tag("operations")
        .summary(Some("This OpenAPI document, as YAML"))
        .response(
            "200",
            ResponseBuilder::new()
                .description("The document")
                .content("application/yaml", ContentBuilder::new().build()),
        )
        .build();
    let docs = OperationBuilder::new()
        .tag("operations")
        .summary(Some("A rendered API reference (HTML)"))
        .response(
            "200",
            ResponseBuilder::new()
                .description("The reference page")
                .content("text/html", ContentBuilder::new().build()),
        )
        .build();
    // Every /v1 operation reads or writes the store, so each may answer 503.
    let unavailable = ResponseBuilder::new()
        .description("The store is unavailable")
        .content(
            "application/problem+json",
            ContentBuilder::new()
                .schema(Some(utoipa::openapi::Ref::from_schema_name("Problem")))
                .build(),
        )
        .build();
    for (path, item) in doc.paths.paths.iter_mut() {
        if !path.starts_with("/v1/") {
            continue;
        }
        for op in [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        {
            op.responses
                .responses
                .entry("503".into())
                .or_insert_with(|| unavailable.clone().into());
        }
    }
    doc.paths
        .paths
        .insert("/openapi.yaml".into(), PathItem::new(HttpMethod::Get, yaml));
    doc.paths
        .paths
        .insert("/docs".into(), PathItem::new(HttpMethod::Get, docs));
}
