//! `/v1/workflows`: save, version, read, list and validate workflow definitions.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use chrono::{DateTime, Utc};
use scaff_core::diag::{Diagnostic, Location, codes};
use scaff_core::located::{Node, Value as LocatedValue};
use scaff_core::store::{
    NewWorkflowVersion, StoreError, TemplateStore, WorkflowQuery, WorkflowSummary, WorkflowVersion,
};
use scaff_core::workflow::{self, StepKind, Workflow};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::auth::Caller;
use super::body::{DefinitionSource, OptionalDefinition};
use super::cursor;
use super::error::{ApiError, Problem};
use super::extract::{ApiPath, ApiQuery};

/// A stored workflow version.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkflowResponse {
    /// Workflow id (from the file's `id`, or assigned by the server).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Free text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Version number, 1, 2, 3, … per id.
    pub version: i64,
    /// First step.
    pub start_step: String,
    /// When this version was saved.
    pub created_at: DateTime<Utc>,
    /// Who saved it, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// The canonical definition; posting it back is a valid definition.
    #[schema(value_type = Object)]
    pub definition: serde_json::Value,
    /// The text as it was posted.
    pub yaml: String,
}

impl From<WorkflowVersion> for WorkflowResponse {
    fn from(v: WorkflowVersion) -> Self {
        Self {
            id: v.id,
            name: v.name,
            description: v.description,
            version: v.version,
            start_step: v.start_step,
            created_at: v.created_at,
            created_by: v.created_by,
            definition: v.definition,
            yaml: v.source,
        }
    }
}

/// A workflow in a listing (its latest version).
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkflowListItem {
    /// Workflow id.
    pub id: String,
    /// Display name of the latest version.
    pub name: String,
    /// Description of the latest version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Latest version number.
    pub version: i64,
    /// First step of the latest version.
    pub start_step: String,
    /// When the latest version was saved.
    pub created_at: DateTime<Utc>,
    /// Who saved the latest version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
}

impl From<WorkflowSummary> for WorkflowListItem {
    fn from(s: WorkflowSummary) -> Self {
        Self {
            id: s.id,
            name: s.name,
            description: s.description,
            version: s.version,
            start_step: s.start_step,
            created_at: s.created_at,
            created_by: s.created_by,
        }
    }
}

/// One page of workflows.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkflowList {
    /// Workflows, ordered by id.
    pub items: Vec<WorkflowListItem>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Filters for `GET /v1/workflows`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only workflows whose name contains this text (case-insensitive).
    pub name: Option<String>,
    /// Page size, 1–200 (default 50).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// The answer to a successful validation.
#[derive(Debug, Serialize, ToSchema)]
pub struct ValidationResult {
    /// Always `true`; invalid definitions answer 422.
    pub valid: bool,
    /// The canonical definition the text would be saved as.
    #[schema(value_type = Object)]
    pub definition: serde_json::Value,
}

const LIST_KIND: &str = "workflows";

/// Parses a definition, turning its problems into a 422.
fn parse(src: &str) -> Result<Workflow, ApiError> {
    workflow::parse(src).map_err(ApiError::Invalid)
}

fn canonical(wf: &Workflow) -> Result<serde_json::Value, ApiError> {
    serde_json::to_value(wf)
        .map_err(|e| ApiError::Internal(format!("serializing a definition: {e}")))
}

/// The record to save: the id filled in, the author's `version` kept only as an expectation.
fn new_version(
    id: String,
    mut wf: Workflow,
    source: String,
    created_by: Option<String>,
) -> Result<NewWorkflowVersion, ApiError> {
    let expected_version = wf.version.take();
    wf.id = Some(id.clone());
    Ok(NewWorkflowVersion {
        id,
        name: wf.name.clone(),
        description: wf.description.clone(),
        definition: canonical(&wf)?,
        source,
        start_step: wf.start_step.clone(),
        created_by,
        expected_version,
    })
}

/// A definition posted under `/v1/workflows/{id}/…` must not name another id.
fn check_id_matches(src: &str, wf: &Workflow, id: &str) -> Result<(), ApiError> {
    match &wf.id {
        Some(own) if own != id => {
            let loc = id_location(src).unwrap_or(Location::new(1, 1));
            Err(ApiError::Invalid(vec![Diagnostic::new(
                codes::VALUE_INVALID,
                "id",
                loc,
                format!("the definition's id `{own}` differs from `{id}` in the URL"),
            )]))
        }
        _ => Ok(()),
    }
}

/// Where the top-level `id` is written, for the mismatch message.
fn id_location(src: &str) -> Option<Location> {
    let (root, _) = scaff_core::located::load(src, Default::default()).ok()?;
    match root.value {
        scaff_core::located::Value::Map(entries) => entries
            .into_iter()
            .find(|(k, _)| k.name == "id")
            .map(|(_, v)| v.loc),
        _ => None,
    }
}

/// The diagnostic code for an `ai_generate` step whose `template_id` names no stored template
/// (or version). Spelled here rather than in `scaff_core::diag::codes` because only the API,
/// which can reach the store, can tell; clients match on it like on every other code.
const TEMPLATE_UNKNOWN: &str = "template.unknown";

/// Every `ai_generate` step's `template_id` must name a stored template, and the pinned
/// version when it is written `id@v`; all that do not are reported at once.
async fn check_templates(
    templates: &dyn TemplateStore,
    src: &str,
    wf: &Workflow,
) -> Result<(), ApiError> {
    let mut problems = Vec::new();
    let mut root = None;
    for (i, step) in wf.steps.iter().enumerate() {
        let StepKind::AiGenerate(cfg) = &step.kind else {
            continue;
        };
        let Some(r) = &cfg.template_id else { continue };
        let missing = match r.version {
            Some(v) => match templates.template_version(&r.id, v).await? {
                Some(_) => None,
                None => Some(match templates.latest_template(&r.id).await? {
                    Some(latest) => format!(
                        "template `{}` has no version {v}; the latest is {}",
                        r.id, latest.version
                    ),
                    None => unknown_template(&r.id),
                }),
            },
            None => match templates.latest_template(&r.id).await? {
                Some(_) => None,
                None => Some(unknown_template(&r.id)),
            },
        };
        if let Some(message) = missing {
            let root = root.get_or_insert_with(|| {
                scaff_core::located::load(src, Default::default())
                    .ok()
                    .map(|(node, _)| node)
            });
            let loc = root
                .as_ref()
                .and_then(|n| template_id_location(n, i))
                .unwrap_or(Location::new(1, 1));
            problems.push(Diagnostic::new(
                TEMPLATE_UNKNOWN,
                format!("steps[{i}].config.template_id"),
                loc,
                message,
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Invalid(problems))
    }
}

fn unknown_template(id: &str) -> String {
    format!("template `{id}` does not exist; save it with POST /v1/templates first")
}

/// Where `steps[i].config.template_id`'s value is written in the posted text.
fn template_id_location(root: &Node, i: usize) -> Option<Location> {
    fn get<'a>(node: &'a Node, key: &str) -> Option<&'a Node> {
        match &node.value {
            LocatedValue::Map(entries) => {
                entries.iter().find(|(k, _)| k.name == key).map(|(_, v)| v)
            }
            _ => None,
        }
    }
    let step = match &get(root, "steps")?.value {
        LocatedValue::Seq(steps) => steps.get(i)?,
        _ => return None,
    };
    Some(get(get(step, "config")?, "template_id")?.loc)
}

fn created(
    location: String,
    saved: WorkflowVersion,
) -> (StatusCode, HeaderMap, Json<WorkflowResponse>) {
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_str(&location) {
        headers.insert(header::LOCATION, value);
    }
    (StatusCode::CREATED, headers, Json(saved.into()))
}

/// Save a new workflow (version 1).
#[utoipa::path(
    post, path = "/v1/workflows", tag = "workflows",
    request_body(description = "The workflow file: YAML, `{\"yaml\": \"…\"}`, or a JSON definition",
        content((String = "application/yaml"), (Object = "application/json"))),
    responses(
        (status = 201, description = "Saved as version 1", body = WorkflowResponse,
            headers(("Location" = String, description = "URL of the new workflow"))),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The id exists, or the stated version is not 1", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Unsupported media type", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Every problem, located", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_workflow(
    State(state): State<AppState>,
    caller: Caller,
    DefinitionSource(src): DefinitionSource,
) -> Result<(StatusCode, HeaderMap, Json<WorkflowResponse>), ApiError> {
    let wf = parse(&src)?;
    check_templates(state.store.as_ref(), &src, &wf).await?;
    let id = wf
        .id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let saved = state
        .store
        .create_workflow(new_version(id, wf, src, caller.actor())?)
        .await?;
    Ok(created(format!("/v1/workflows/{}", saved.id), saved))
}

/// Save the next version of a workflow.
#[utoipa::path(
    post, path = "/v1/workflows/{id}/versions", tag = "workflows",
    params(("id" = String, Path, description = "Workflow id")),
    request_body(description = "The workflow file: YAML, `{\"yaml\": \"…\"}`, or a JSON definition",
        content((String = "application/yaml"), (Object = "application/json"))),
    responses(
        (status = 201, description = "Saved as the next version", body = WorkflowResponse,
            headers(("Location" = String, description = "URL of the new version"))),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such workflow", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The stated version is not the next one", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Unsupported media type", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Every problem, located", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn add_version(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    DefinitionSource(src): DefinitionSource,
) -> Result<(StatusCode, HeaderMap, Json<WorkflowResponse>), ApiError> {
    let wf = parse(&src)?;
    check_id_matches(&src, &wf, &id)?;
    check_templates(state.store.as_ref(), &src, &wf).await?;
    let saved = state
        .store
        .add_workflow_version(new_version(id, wf, src, caller.actor())?)
        .await?;
    Ok(created(
        format!("/v1/workflows/{}/versions/{}", saved.id, saved.version),
        saved,
    ))
}

/// List workflows (latest versions), by id.
#[utoipa::path(
    get, path = "/v1/workflows", tag = "workflows", params(ListParams),
    responses(
        (status = 200, description = "One page", body = WorkflowList),
        (status = 400, description = "Bad limit or cursor", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_workflows(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<WorkflowList>, ApiError> {
    let query = WorkflowQuery {
        name_contains: params.name.filter(|n| !n.is_empty()),
        after_id: params
            .cursor
            .as_deref()
            .map(|c| cursor::decode(LIST_KIND, c))
            .transpose()?,
        limit: cursor::limit(params.limit)?,
    };
    let page = state.store.list_workflows(&query).await?;
    Ok(Json(WorkflowList {
        items: page.items.into_iter().map(Into::into).collect(),
        next_cursor: page.next_after.map(|k| cursor::encode(LIST_KIND, &k)),
    }))
}

/// The latest version of a workflow.
#[utoipa::path(
    get, path = "/v1/workflows/{id}", tag = "workflows",
    params(("id" = String, Path, description = "Workflow id")),
    responses(
        (status = 200, description = "The latest version", body = WorkflowResponse),
        (status = 404, description = "No such workflow", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_workflow(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<WorkflowResponse>, ApiError> {
    state
        .store
        .latest_workflow(&id)
        .await?
        .map(|v| Json(v.into()))
        .ok_or_else(|| ApiError::NotFound(format!("workflow `{id}` does not exist")))
}

/// One version of a workflow.
#[utoipa::path(
    get, path = "/v1/workflows/{id}/versions/{version}", tag = "workflows",
    params(("id" = String, Path, description = "Workflow id"), ("version" = i64, Path, description = "Version number")),
    responses(
        (status = 200, description = "That version", body = WorkflowResponse),
        (status = 400, description = "The version is not a number", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such workflow or version", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_version(
    State(state): State<AppState>,
    ApiPath((id, version)): ApiPath<(String, i64)>,
) -> Result<Json<WorkflowResponse>, ApiError> {
    state
        .store
        .workflow_version(&id, version)
        .await?
        .map(|v| Json(v.into()))
        .ok_or_else(|| ApiError::NotFound(format!("workflow `{id}` has no version {version}")))
}

/// Check a posted definition without saving it.
#[utoipa::path(
    post, path = "/v1/workflows/validate", tag = "workflows",
    request_body(description = "The workflow file: YAML, `{\"yaml\": \"…\"}`, or a JSON definition",
        content((String = "application/yaml"), (Object = "application/json"))),
    responses(
        (status = 200, description = "Valid", body = ValidationResult),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Unsupported media type", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Every problem, located", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn validate_posted(
    State(state): State<AppState>,
    DefinitionSource(src): DefinitionSource,
) -> Result<Json<ValidationResult>, ApiError> {
    let mut wf = parse(&src)?;
    check_templates(state.store.as_ref(), &src, &wf).await?;
    // What would be saved: the author's `version` is an expectation, not part of it.
    wf.version = None;
    Ok(Json(ValidationResult {
        valid: true,
        definition: canonical(&wf)?,
    }))
}

/// Check a stored workflow against today's rules, or (with a body) a candidate next version
/// of it; nothing is saved.
#[utoipa::path(
    post, path = "/v1/workflows/{id}/validate", tag = "workflows",
    params(("id" = String, Path, description = "Workflow id")),
    request_body(description = "Optional: a candidate definition for this workflow; without a body the stored latest version is checked",
        content((String = "application/yaml"), (Object = "application/json"))),
    responses(
        (status = 200, description = "Valid", body = ValidationResult),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such workflow", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The stated version is not the next one", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Unsupported media type", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Every problem, located", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn validate_stored(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    OptionalDefinition(posted): OptionalDefinition,
) -> Result<Json<ValidationResult>, ApiError> {
    let stored = state
        .store
        .latest_workflow(&id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("workflow `{id}` does not exist")))?;
    let candidate = posted.is_some();
    let src = posted.unwrap_or(stored.source);
    let wf = parse(&src)?;
    check_id_matches(&src, &wf, &id)?;
    check_templates(state.store.as_ref(), &src, &wf).await?;
    // A candidate is checked as the next version would be saved, stated version included.
    if let Some(expected) = wf.version.filter(|v| candidate && *v != stored.version + 1) {
        return Err(StoreError::VersionMismatch {
            expected,
            latest: stored.version,
        }
        .into());
    }
    let saved = new_version(id, wf, src, None)?;
    Ok(Json(ValidationResult {
        valid: true,
        definition: saved.definition,
    }))
}
