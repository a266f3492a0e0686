//! `/v1/executions`: start runs (idempotently), read them, resume them with a token, cancel
//! them — and optionally wait (`wait_ms`) until a run settles instead of polling.

use std::time::Duration;

use axum::Json as JsonBody;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use chrono::{DateTime, Utc};
use scaff_actors::CommandError;
use scaff_core::diag::codes;
use scaff_core::run::machine::Rejection;
use scaff_core::run::{
    Context, EventRecord, Run, RunError, RunStatus, StepRecord, Waiting, WaitingInput, events,
};
use scaff_core::store::{CreatedRun, NewRun, RunCursor, RunQuery};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json, json};
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::AppState;
use super::auth::Caller;
use super::cursor;
use super::error::{ApiError, Problem, ProblemItem};
use super::extract::{ApiPath, ApiQuery};
use super::json::{ApiJson, OptionalJson};
use crate::tokens::TokenError;

/// The longest accepted idempotency key.
const MAX_IDEMPOTENCY_KEY: usize = 255;
const LIST_KIND: &str = "executions";

/// `POST /v1/executions`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartRequest {
    /// The workflow to run.
    pub workflow_id: String,
    /// A version to pin; the latest when absent.
    pub version: Option<i64>,
    /// The start payload, visible to steps as `inputs`.
    #[schema(value_type = Option<Object>)]
    pub inputs: Option<Map<String, Json>>,
    /// Who or what the run is for, visible as `profile`.
    #[schema(value_type = Option<Object>)]
    pub profile: Option<Map<String, Json>>,
    /// Makes the start safe to retry: the same key again returns the same run. The
    /// `Idempotency-Key` header works too.
    pub idempotency_key: Option<String>,
    /// Answer once the run settles (waiting or finished) or this many milliseconds pass.
    pub wait_ms: Option<u64>,
}

/// `POST /v1/executions/{id}/resume`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResumeRequest {
    /// The token from the waiting run (`resume_token`).
    pub resume_token: String,
    /// The form's values (a form wait).
    #[schema(value_type = Option<Object>)]
    pub inputs: Option<Map<String, Json>>,
    /// The approver's decision (an approval wait; exactly one, for the token's step).
    pub approvals: Option<Vec<ApprovalDecision>>,
    /// Answer once the run settles again or this many milliseconds pass.
    pub wait_ms: Option<u64>,
}

/// One approver's decision.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalDecision {
    /// The approval step decided on.
    pub step_id: String,
    /// Approve (`true`) or reject.
    pub approved: bool,
    /// A comment; the reason, for a rejection.
    pub comment: Option<String>,
}

/// An approver's own resume token.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApproverToken {
    /// The approver.
    pub approver: String,
    /// Their token, for `POST /v1/executions/{id}/resume` with `approvals`.
    pub resume_token: String,
    /// Whether they have decided already.
    pub decided: bool,
}

/// `wait_ms` as a query parameter (it may also be given in POST bodies).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WaitParams {
    /// Answer once the run settles (waiting or finished) or this many milliseconds pass.
    pub wait_ms: Option<u64>,
}

/// Filters for `GET /v1/executions`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only runs of this workflow.
    pub workflow_id: Option<String>,
    /// Only runs in this status (queued, running, waiting, completed, failed, canceled).
    pub status: Option<String>,
    /// Page size, 1–200 (default 50).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A run as clients see it.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunView {
    /// Run id.
    pub id: Uuid,
    /// Workflow id.
    pub workflow_id: String,
    /// The workflow version the run executes.
    pub workflow_version: i64,
    /// queued, running, waiting, completed, failed or canceled.
    pub status: String,
    /// The step executing or waited on.
    pub current_step: Option<String>,
    /// What the run waits for: the step, the kind (`form`, `approval`) and its fields.
    #[schema(value_type = Option<Object>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting: Option<Waiting>,
    /// The token that authorizes resuming a form wait (only while waiting on a form).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resume_token: Option<String>,
    /// Why the run failed.
    #[schema(value_type = Option<Object>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<RunError>,
    /// The idempotency key it was started with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// Who started it (`key:<name>`, `jwt:<sub>`); absent when authentication is off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// When it finished.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
}

/// One page of runs.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunList {
    /// Runs, newest first.
    pub items: Vec<RunView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// A step of the run's history.
#[derive(Debug, Serialize, ToSchema)]
pub struct StepView {
    /// Position in the history, from 1.
    pub seq: i32,
    /// Step id.
    pub step_id: String,
    /// Step type.
    pub step_type: String,
    /// Attempt number.
    pub attempt: i32,
    /// completed, failed or canceled.
    pub status: String,
    /// What the step was given.
    #[schema(value_type = Option<Object>)]
    pub input: Option<Json>,
    /// What it produced.
    #[schema(value_type = Option<Object>)]
    pub output: Option<Json>,
    /// Why it failed.
    #[schema(value_type = Option<Object>)]
    pub error: Option<RunError>,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: DateTime<Utc>,
    /// How long it took, in milliseconds.
    pub duration_ms: i64,
}

/// A run's step history.
#[derive(Debug, Serialize, ToSchema)]
pub struct StepList {
    /// Steps in execution order.
    pub items: Vec<StepView>,
}

/// A lifecycle or audit event.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventView {
    /// Order within the run, from 1.
    pub seq: i32,
    /// Event name, e.g. `run.waiting`.
    pub kind: String,
    /// The step concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step_id: Option<String>,
    /// Who caused it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// Details.
    #[schema(value_type = Object)]
    pub data: Json,
    /// When it happened.
    pub created_at: DateTime<Utc>,
}

impl From<EventRecord> for EventView {
    fn from(e: EventRecord) -> Self {
        EventView {
            seq: e.seq,
            kind: e.kind,
            step_id: e.step_id,
            actor: e.actor,
            data: e.data,
            created_at: e.created_at,
        }
    }
}

/// A run's events.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventList {
    /// Events in order.
    pub items: Vec<EventView>,
}

/// The run's data.
#[derive(Debug, Serialize, ToSchema)]
pub struct ContextView {
    /// Constants from the workflow.
    #[serde(rename = "static")]
    #[schema(value_type = Object)]
    pub static_data: Map<String, Json>,
    /// Given at start.
    #[schema(value_type = Object)]
    pub profile: Map<String, Json>,
    /// The start payload.
    #[schema(value_type = Object)]
    pub inputs: Map<String, Json>,
    /// Step outputs.
    #[schema(value_type = Object)]
    pub runtime: Map<String, Json>,
}

impl AppState {
    fn view(&self, run: Run) -> RunView {
        let resume_token = self.tokens.issue(&run, self.clock.now());
        RunView {
            id: run.id,
            workflow_id: run.workflow_id,
            workflow_version: run.workflow_version,
            status: run.status.as_str().to_string(),
            current_step: run.current_step,
            waiting: run.waiting,
            resume_token,
            error: run.error,
            idempotency_key: run.idempotency_key,
            created_by: run.created_by,
            created_at: run.created_at,
            updated_at: run.updated_at,
            finished_at: run.finished_at,
        }
    }

    /// The run as `caller` may see it: the resume token of a form wait authorizes a resume,
    /// so only callers who may resume (operators and admins) see it.
    fn view_for(&self, caller: &Caller, run: Run) -> RunView {
        let mut view = self.view(run);
        if !caller.at_least(self, scaff_core::store::Role::Operator) {
            view.resume_token = None;
        }
        view
    }

    fn wait_duration(&self, wait_ms: Option<u64>) -> Result<Duration, ApiError> {
        let ms = wait_ms.unwrap_or(0);
        let max = self.max_wait.as_millis() as u64;
        if ms > max {
            return Err(ApiError::BadRequest {
                detail: format!("`wait_ms` {ms} is more than the maximum of {max}"),
                errors: Vec::new(),
            });
        }
        Ok(Duration::from_millis(ms))
    }

    /// The run now, or once it settles within `wait`; `watcher` subscribed to the run before
    /// `run` was read or answered by a command.
    async fn settled(
        &self,
        watcher: scaff_actors::Watcher,
        run: Run,
        wait: Duration,
    ) -> Result<Run, ApiError> {
        Ok(self.runtime.settle(watcher, run, wait).await?)
    }
}

/// Parses a `status` filter: absent, or one of the run statuses (400 otherwise).
pub(crate) fn status_filter(status: Option<&str>) -> Result<Option<RunStatus>, ApiError> {
    status
        .map(|s| {
            RunStatus::parse(s).ok_or_else(|| {
                bad_request(&format!(
                    "`status` must be one of queued, running, waiting, completed, failed, canceled; got `{s}`"
                ))
            })
        })
        .transpose()
}

/// Parses a run id; an id that is not a UUID names no run.
pub(crate) fn run_id(id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id).map_err(|_| ApiError::NotFound(format!("execution `{id}` does not exist")))
}

/// The stored run named by a path id, or 404.
pub(crate) async fn existing_run(state: &AppState, id: &str) -> Result<Run, ApiError> {
    let id = run_id(id)?;
    state.store.get_run(id).await?.ok_or_else(|| not_found(id))
}

fn not_found(id: Uuid) -> ApiError {
    ApiError::NotFound(format!("execution `{id}` does not exist"))
}

/// The hash that tells a retried start from a different request under the same key.
fn fingerprint(req: &StartRequest) -> String {
    let canonical = sorted(&json!({
        "workflow_id": req.workflow_id,
        "version": req.version,
        "inputs": req.inputs.clone().unwrap_or_default(),
        "profile": req.profile.clone().unwrap_or_default(),
    }));
    let digest = Sha256::digest(canonical.to_string().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The template version each `ai_generate` step will use, fixed now so that retries and
/// rehydrated runs render the same prompt: a pinned `id@v` as written, otherwise the latest.
async fn pin_templates(
    state: &AppState,
    def: &scaff_core::workflow::Workflow,
) -> Result<std::collections::BTreeMap<String, i64>, ApiError> {
    let mut pins = std::collections::BTreeMap::new();
    for step in &def.steps {
        let scaff_core::workflow::StepKind::AiGenerate(cfg) = &step.kind else {
            continue;
        };
        // Explicit `id@v` references need no pin; the rest take the latest version now.
        let Some(r) = cfg.template_id.as_ref().filter(|r| r.version.is_none()) else {
            continue;
        };
        if pins.contains_key(&r.id) {
            continue;
        }
        let version = state
            .store
            .latest_template(&r.id)
            .await?
            .map(|t| t.version)
            .ok_or_else(|| {
                ApiError::Conflict(format!(
                    "step `{}` uses template `{}`, which does not exist",
                    step.id, r.id
                ))
            })?;
        pins.insert(r.id.clone(), version);
    }
    Ok(pins)
}

/// The value with every object's keys sorted, so key order never changes a fingerprint.
fn sorted(value: &Json) -> Json {
    match value {
        Json::Object(map) => {
            let mut entries: Vec<(&String, &Json)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            Json::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k.clone(), sorted(v)))
                    .collect(),
            )
        }
        Json::Array(items) => Json::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// Refuses text with NUL characters (U+0000) anywhere in `value`: PostgreSQL cannot store them
/// in JSON, and no workflow needs them.
fn refuse_nul(value: &Json, path: &str) -> Result<(), ApiError> {
    match scaff_core::run::find_nul(value) {
        Some(at) => Err(ApiError::InvalidInput {
            detail: "text may not contain NUL characters (U+0000)".into(),
            errors: vec![ProblemItem {
                path: if at.is_empty() {
                    path.to_string()
                } else {
                    format!("{path}.{at}")
                },
                line: None,
                column: None,
                code: codes::BODY_INVALID.into(),
                message: "contains a NUL character (U+0000)".into(),
            }],
        }),
        None => Ok(()),
    }
}

fn idempotency_key(headers: &HeaderMap, body: Option<&str>) -> Result<Option<String>, ApiError> {
    let header = match headers.get("idempotency-key") {
        Some(v) => Some(
            v.to_str()
                .map_err(|_| bad_request("the Idempotency-Key header must be visible ASCII"))?
                .to_string(),
        ),
        None => None,
    };
    let key = match (header, body) {
        (Some(h), Some(b)) if h != b => {
            return Err(bad_request(
                "the Idempotency-Key header and the body's `idempotency_key` differ",
            ));
        }
        (Some(h), _) => Some(h),
        (None, b) => b.map(str::to_string),
    };
    match key {
        Some(k) if k.is_empty() || k.len() > MAX_IDEMPOTENCY_KEY => Err(bad_request(&format!(
            "an idempotency key must be 1–{MAX_IDEMPOTENCY_KEY} characters"
        ))),
        k => Ok(k),
    }
}

fn unprocessable(detail: &str) -> ApiError {
    ApiError::InvalidInput {
        detail: detail.to_string(),
        errors: Vec::new(),
    }
}

fn bad_request(detail: &str) -> ApiError {
    ApiError::BadRequest {
        detail: detail.to_string(),
        errors: Vec::new(),
    }
}

/// Maps a refused command to its HTTP answer.
fn command_error(e: CommandError, run_id: Uuid) -> ApiError {
    match e {
        CommandError::NotFound => not_found(run_id),
        CommandError::Rejected(r) => match r {
            Rejection::Terminal(status) => ApiError::Conflict(format!(
                "the execution is {status}; it cannot change any more"
            )),
            Rejection::NotWaiting(status) => {
                ApiError::Conflict(format!("the execution is {status}, not waiting for input"))
            }
            Rejection::WrongStep { waiting_on } => ApiError::Conflict(format!(
                "the token is for another step; the execution waits on `{waiting_on}`"
            )),
            Rejection::Stale => ApiError::Conflict(
                "the token was already used: the execution has moved on since it was issued".into(),
            ),
            Rejection::Invalid(errors) => ApiError::InvalidInput {
                detail: format!(
                    "{} input value(s) are invalid; the execution still waits",
                    errors.len()
                ),
                errors: errors
                    .into_iter()
                    .map(|e| ProblemItem {
                        path: format!("inputs.{}", e.field),
                        line: None,
                        column: None,
                        code: codes::INPUT_INVALID.into(),
                        message: format!("`{}` {}", e.field, e.message),
                    })
                    .collect(),
            },
            Rejection::WrongInput(why) => ApiError::InvalidInput {
                detail: why.to_string(),
                errors: Vec::new(),
            },
            Rejection::NotApprover(who) => {
                ApiError::Forbidden(format!("{who} is not an approver of this step"))
            }
            Rejection::AlreadyDecided(who) => {
                ApiError::Conflict(format!("{who} has already decided on this step"))
            }
        },
        CommandError::Conflict => {
            ApiError::Conflict("the execution changed concurrently; read it and retry".into())
        }
        CommandError::Store(e) => e.into(),
        CommandError::Workflow(why) => ApiError::Internal(why),
        CommandError::Unresponsive(why) => ApiError::Unavailable(why),
    }
}

impl From<CommandError> for ApiError {
    fn from(e: CommandError) -> Self {
        command_error(e, Uuid::nil())
    }
}

/// Start a run of a workflow.
#[utoipa::path(
    post, path = "/v1/executions", tag = "executions",
    request_body = StartRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes the start safe to retry"), WaitParams),
    responses(
        (status = 202, description = "Started", body = RunView, headers(("Location" = String, description = "URL of the run"))),
        (status = 200, description = "The run an earlier request with this idempotency key started", body = RunView),
        (status = 400, description = "Malformed JSON or parameters", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such workflow or version", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The idempotency key was used for a different request", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The body does not fit", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn start(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<WaitParams>,
    ApiJson(req): ApiJson<StartRequest>,
) -> Result<(StatusCode, HeaderMap, JsonBody<RunView>), ApiError> {
    let wait = state.wait_duration(req.wait_ms.or(query.wait_ms))?;
    let key = idempotency_key(&headers, req.idempotency_key.as_deref())?;
    for (name, part) in [("inputs", &req.inputs), ("profile", &req.profile)] {
        if let Some(map) = part {
            refuse_nul(&Json::Object(map.clone()), name)?;
        }
    }
    // The compiled version (cached, shared with the runs): no definition is read or parsed
    // per start once a version is in use.
    let version = match req.version {
        Some(v) => Some(v),
        None => state.store.latest_version(&req.workflow_id).await?,
    };
    let workflow = match version {
        Some(v) => state.runtime.workflow(&req.workflow_id, v).await?,
        None => None,
    }
    .ok_or_else(|| {
        ApiError::NotFound(match req.version {
            Some(v) => format!("workflow `{}` has no version {v}", req.workflow_id),
            None => format!("workflow `{}` does not exist", req.workflow_id),
        })
    })?;
    let static_data = workflow.def.static_data.clone();
    let now = state.clock.now();
    let new = NewRun {
        id: Uuid::now_v7(),
        workflow_id: workflow.id.clone(),
        workflow_version: workflow.version,
        context: Context {
            static_data,
            profile: req.profile.clone().unwrap_or_default(),
            inputs: req.inputs.clone().unwrap_or_default(),
            runtime: Map::new(),
        },
        pins: pin_templates(&state, &workflow.def).await?,
        request_fingerprint: key.as_ref().map(|_| fingerprint(&req)),
        idempotency_key: key,
        created_by: caller.actor(),
        created_at: now,
        events: vec![EventRecord {
            seq: 1,
            kind: events::RUN_CREATED.into(),
            step_id: None,
            actor: caller.actor(),
            data: json!({"workflow_id": workflow.id, "workflow_version": workflow.version}),
            created_at: now,
        }],
    };
    let created_events = new.events.clone();
    // Before the run exists, so no transition of it is missed.
    let watcher = state.runtime.watch_run(new.id);
    let (status, run) = match state.runtime.create_run(new).await {
        Ok(CreatedRun::New(run)) => {
            // Before the launch, so live streams see `run.created` ahead of the run's own.
            state.runtime.publish_created(&run, &created_events);
            let runtime = state.runtime.with_trace_parent(traceparent(&headers));
            runtime.launch(run.clone()).await?;
            let run = state.settled(watcher, run, wait).await?;
            (StatusCode::ACCEPTED, run)
        }
        Ok(CreatedRun::Existing(run)) => {
            // The first request may have died between creating and launching the run.
            if matches!(run.status, RunStatus::Queued | RunStatus::Running) {
                let runtime = state.runtime.with_trace_parent(traceparent(&headers));
                runtime.launch(run.clone()).await?;
            }
            let run = match wait.is_zero() {
                true => run,
                false => state
                    .runtime
                    .wait_settled(run.id, wait)
                    .await?
                    .unwrap_or(run),
            };
            (StatusCode::OK, run)
        }
        Err(scaff_core::store::StoreError::Conflict(_)) => {
            return Err(ApiError::Conflict(
                "this idempotency key was already used to start a different execution".into(),
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&format!("/v1/executions/{}", run.id)) {
        headers.insert(header::LOCATION, v);
    }
    Ok((status, headers, JsonBody(state.view(run))))
}

/// List runs, newest first.
#[utoipa::path(
    get, path = "/v1/executions", tag = "executions", params(ListParams),
    responses(
        (status = 200, description = "One page", body = RunList),
        (status = 400, description = "Bad filter, limit or cursor", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<JsonBody<RunList>, ApiError> {
    let status = status_filter(params.status.as_deref())?;
    let before = params
        .cursor
        .as_deref()
        .map(|c| decode_run_cursor(&cursor::decode(LIST_KIND, c)?))
        .transpose()?;
    let query = RunQuery {
        workflow_id: params.workflow_id,
        status,
        before,
        limit: cursor::limit(params.limit)?,
    };
    let page = state.store.list_runs(&query).await?;
    Ok(JsonBody(RunList {
        next_cursor: page.next_after.map(|c| {
            cursor::encode(
                LIST_KIND,
                &format!("{}_{}", c.created_at.timestamp_micros(), c.id),
            )
        }),
        items: page
            .items
            .into_iter()
            .map(|r| state.view_for(&caller, r))
            .collect(),
    }))
}

fn decode_run_cursor(key: &str) -> Result<RunCursor, ApiError> {
    let bad = || bad_request("`cursor` is not a cursor this listing issued");
    let (micros, id) = key.split_once('_').ok_or_else(bad)?;
    // Years 1970–9999 only: anything else is no cursor we issued (and would overflow SQL).
    let created_at = micros
        .parse::<i64>()
        .ok()
        .filter(|m| (0..=253_402_300_799_000_000).contains(m))
        .and_then(DateTime::<Utc>::from_timestamp_micros)
        .ok_or_else(bad)?;
    let id = Uuid::parse_str(id).map_err(|_| bad())?;
    Ok(RunCursor { created_at, id })
}

/// Read a run.
#[utoipa::path(
    get, path = "/v1/executions/{id}", tag = "executions",
    params(("id" = String, Path, description = "Run id"), WaitParams),
    responses(
        (status = 200, description = "The run", body = RunView),
        (status = 404, description = "No such run", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<WaitParams>,
) -> Result<JsonBody<RunView>, ApiError> {
    let wait = state.wait_duration(query.wait_ms)?;
    let watcher = state.runtime.watch_run(run_id(&id)?);
    let run = existing_run(&state, &id).await?;
    let run = state.settled(watcher, run, wait).await?;
    Ok(JsonBody(state.view_for(&caller, run)))
}

/// Read a run's context: `static`, `profile`, `inputs`, `runtime`.
#[utoipa::path(
    get, path = "/v1/executions/{id}/context", tag = "executions",
    params(("id" = String, Path, description = "Run id")),
    responses(
        (status = 200, description = "The context", body = ContextView),
        (status = 404, description = "No such run", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn context(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<JsonBody<ContextView>, ApiError> {
    let run = existing_run(&state, &id).await?;
    let c = run.context;
    Ok(JsonBody(ContextView {
        static_data: c.static_data,
        profile: c.profile,
        inputs: c.inputs,
        runtime: c.runtime,
    }))
}

/// Read a run's step history, with timings and outputs.
#[utoipa::path(
    get, path = "/v1/executions/{id}/steps", tag = "executions",
    params(("id" = String, Path, description = "Run id")),
    responses(
        (status = 200, description = "The steps, in order", body = StepList),
        (status = 404, description = "No such run", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn steps(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<JsonBody<StepList>, ApiError> {
    let id = existing_run(&state, &id).await?.id;
    let items = state
        .store
        .run_steps(id)
        .await?
        .into_iter()
        .map(|s: StepRecord| StepView {
            duration_ms: (s.finished_at - s.started_at).num_milliseconds().max(0),
            seq: s.seq,
            step_id: s.step_id,
            step_type: s.step_type,
            attempt: s.attempt,
            status: s.status.as_str().to_string(),
            input: s.input,
            output: s.output,
            error: s.error,
            started_at: s.started_at,
            finished_at: s.finished_at,
        })
        .collect();
    Ok(JsonBody(StepList { items }))
}

/// Read a run's lifecycle and audit events.
#[utoipa::path(
    get, path = "/v1/executions/{id}/events", tag = "executions",
    params(("id" = String, Path, description = "Run id")),
    responses(
        (status = 200, description = "The events, in order", body = EventList),
        (status = 404, description = "No such run", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn run_events(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<JsonBody<EventList>, ApiError> {
    let id = existing_run(&state, &id).await?.id;
    let items = state
        .store
        .run_events(id)
        .await?
        .into_iter()
        .map(EventView::from)
        .collect();
    Ok(JsonBody(EventList { items }))
}

/// Resume a waiting run: a form's values with the run's `resume_token`, or an approver's
/// decision (`approvals`) with that approver's own token.
#[utoipa::path(
    post, path = "/v1/executions/{id}/resume", tag = "executions",
    params(("id" = String, Path, description = "Run id"), WaitParams),
    request_body = ResumeRequest,
    responses(
        (status = 200, description = "Accepted; the run continues", body = RunView),
        (status = 401, description = "The token is invalid, expired, or for another run", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token's holder is not an approver of the step", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such run", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The run is not waiting on that step, or the token was already used", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid input, each field named; the run still waits", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn resume(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<WaitParams>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<ResumeRequest>,
) -> Result<JsonBody<RunView>, ApiError> {
    let wait = state.wait_duration(req.wait_ms.or(query.wait_ms))?;
    // The segment this resume starts is linked to the caller's trace.
    let runtime = state.runtime.with_trace_parent(traceparent(&headers));
    let id = run_id(&id)?;
    if let Some(inputs) = &req.inputs {
        refuse_nul(&Json::Object(inputs.clone()), "inputs")?;
    }
    let claims = state
        .tokens
        .verify(&req.resume_token)
        .map_err(|e| match e {
            TokenError::Expired => ApiError::Unauthorized("the resume token has expired".into()),
            TokenError::Invalid => ApiError::Unauthorized("the resume token is not valid".into()),
        })?;
    if claims.sub != id {
        return Err(ApiError::Unauthorized(
            "the resume token is for another execution".into(),
        ));
    }
    let watcher = runtime.watch_run(id);
    let run = match (&claims.who, req.approvals) {
        (Some(approver), Some(decisions)) => {
            if req.inputs.is_some() {
                return Err(unprocessable(
                    "an approver's token takes `approvals`, not `inputs`",
                ));
            }
            let [decision] = <[ApprovalDecision; 1]>::try_from(decisions).map_err(|_| {
                unprocessable("give exactly one decision, for the step your token names")
            })?;
            if decision.step_id != claims.step {
                return Err(ApiError::Conflict(format!(
                    "the token is for step `{}`, not `{}`",
                    claims.step, decision.step_id
                )));
            }
            runtime
                .decide(
                    id,
                    &claims.step,
                    claims.ver,
                    approver,
                    decision.approved,
                    decision.comment,
                )
                .await
        }
        (Some(_), None) => {
            return Err(unprocessable(
                "an approver's token takes `approvals: [{step_id, approved, comment}]`",
            ));
        }
        (None, Some(_)) => {
            return Err(unprocessable(
                "`approvals` need an approver's own token (from GET /v1/executions/{id}/approvals)",
            ));
        }
        (None, None) => {
            runtime
                .submit(
                    id,
                    &claims.step,
                    claims.ver,
                    req.inputs.unwrap_or_default(),
                    // The token alone may authorize a resume: then it is the actor.
                    Some(caller.actor().unwrap_or_else(|| "resume-token".to_string())),
                )
                .await
        }
    }
    .map_err(|e| command_error(e, id))?;
    let run = state.settled(watcher, run, wait).await?;
    Ok(JsonBody(state.view(run)))
}

/// The W3C `traceparent` header a request carries, if any (checked when it is used: one that
/// does not parse is ignored).
fn traceparent(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 128)
}

/// The approvers of the approval a run waits on, each with their own token.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApprovalTokens {
    /// The approval step waited on.
    pub step_id: String,
    /// Approvals needed.
    pub min_approvals: u32,
    /// Each approver, whether they decided, and their token.
    pub approvers: Vec<ApproverToken>,
}

/// Each approver's own resume token for the approval a run waits on. Approvers are sent
/// theirs when the wait begins; this is how an operator hands one out again. The tokens are
/// not shown in the run's other representations.
#[utoipa::path(
    get, path = "/v1/executions/{id}/approvals", tag = "executions",
    params(("id" = String, Path, description = "Run id")),
    responses(
        (status = 200, description = "The approvers and their tokens", body = ApprovalTokens),
        (status = 404, description = "No such run", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The run is not waiting on an approval", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn approval_tokens(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<JsonBody<ApprovalTokens>, ApiError> {
    let run = existing_run(&state, &id).await?;
    let now = state.clock.now();
    let Some(waiting) = run
        .waiting
        .as_ref()
        .filter(|_| run.status == RunStatus::Waiting)
    else {
        return Err(ApiError::Conflict(format!(
            "the execution is {}, not waiting on an approval",
            run.status
        )));
    };
    let WaitingInput::Approval {
        approvers,
        min_approvals,
        decisions,
        ..
    } = &waiting.input
    else {
        return Err(ApiError::Conflict(
            "the execution waits on a form, not an approval".into(),
        ));
    };
    let approvers = approvers
        .iter()
        .filter_map(|a| {
            Some(ApproverToken {
                approver: a.clone(),
                resume_token: state.tokens.issue_for(&run, a, now)?,
                decided: decisions
                    .iter()
                    .any(|d| d.approver.to_lowercase() == a.to_lowercase()),
            })
        })
        .collect();
    Ok(JsonBody(ApprovalTokens {
        step_id: waiting.step_id.clone(),
        min_approvals: *min_approvals,
        approvers,
    }))
}

/// Optional body of a cancel.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {
    /// Why, for the audit trail.
    pub reason: Option<String>,
}

/// Cancel a run that has not finished; the running step's result is discarded.
#[utoipa::path(
    post, path = "/v1/executions/{id}/cancel", tag = "executions",
    params(("id" = String, Path, description = "Run id")),
    request_body(content = Option<CancelRequest>, description = "Optional"),
    responses(
        (status = 200, description = "Canceled", body = RunView),
        (status = 404, description = "No such run", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The run has already finished", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    OptionalJson(req): OptionalJson<CancelRequest>,
) -> Result<JsonBody<RunView>, ApiError> {
    let id = run_id(&id)?;
    let run = state
        .runtime
        .cancel(id, caller.actor(), req.reason)
        .await
        .map_err(|e| command_error(e, id))?;
    Ok(JsonBody(state.view(run)))
}
