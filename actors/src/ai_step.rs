//! The `ai_generate` step: one provider call per execution, every attempt checkpointed.
//!
//! An execution renders the prompt (first attempt only; later ones continue the stored
//! conversation), calls the provider, and ends in one of three ways: a valid answer completes
//! the step; an invalid answer or a transient failure *continues* it — the conversation, the
//! validation errors and the counters become the run's step state, checkpointed before the
//! next attempt, so a crash never repeats a call already answered; running out of attempts,
//! or a permanent error, fails it. Every call is reported as `ai.request` / `ai.response`
//! events with provider, model, template, tokens, latency and retry count.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use scaff_core::ai::{
    AiError, AiProvider, AiRequest, AiResponse, ChatMessage, Role, SchemaViolation, extract_json,
    feedback,
};
use scaff_core::http::{HttpPort, SecretValues};
use scaff_core::run::step::{CompiledStep, CompiledWorkflow, StepEvent, StepOutcome};
use scaff_core::run::{Run, RunError};
use scaff_core::store::TemplateStore;
use scaff_core::workflow::{AiGenerateConfig, MockConfig, Provider, StepKind};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json, json};

use crate::api_step::{self, HttpStepSettings};
use crate::deps::{Execution, InlineExecutor, StepExecutor, StepResult};

/// Failure codes of `ai_generate` steps.
pub mod failure {
    /// Every answer broke the schema.
    pub const SCHEMA: &str = "ai.schema_validation_failed";
    /// The provider kept failing transiently (or timing out).
    pub const UNAVAILABLE: &str = "ai.provider_unavailable";
    /// The provider refused the request for good.
    pub const PROVIDER: &str = "ai.provider_error";
    /// The prompt could not be rendered.
    pub const RENDER: &str = "ai.prompt_render_failed";
}

/// Event names of AI calls.
pub mod events {
    /// A call is about to be made.
    pub const REQUEST: &str = "ai.request";
    /// A call ended (with an answer or an error).
    pub const RESPONSE: &str = "ai.response";
}

/// The longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// Defaults and limits of AI steps.
#[derive(Debug, Clone)]
pub struct AiSettings {
    /// Provider for steps that name none.
    pub default_provider: Provider,
    /// Mock behaviour for steps that set none.
    pub default_mock: MockConfig,
    /// Per-call timeout for steps that set none.
    pub timeout: Duration,
    /// Re-asks after an answer breaks the schema.
    pub max_schema_retries: u32,
    /// Retries after transient errors and timeouts.
    pub max_transient_retries: u32,
    /// First back-off after a transient error (doubling, with jitter).
    pub backoff_base: Duration,
    /// Longest back-off.
    pub backoff_cap: Duration,
    /// Back-offs at least this long park the run on a durable timer instead of a sleep.
    pub park_threshold: Duration,
    /// Secret holding the OpenAI API key, when the key lives in the secret store.
    pub openai_key_secret: Option<String>,
    /// Secret holding the Anthropic API key, when the key lives in the secret store.
    pub anthropic_key_secret: Option<String>,
}

impl Default for AiSettings {
    fn default() -> Self {
        Self {
            default_provider: Provider::Mock,
            default_mock: MockConfig {
                mode: scaff_core::workflow::MockMode::Success,
                fail_times: None,
            },
            timeout: Duration::from_secs(60),
            max_schema_retries: 2,
            max_transient_retries: 3,
            backoff_base: Duration::from_millis(500),
            backoff_cap: Duration::from_secs(30),
            park_threshold: crate::deps::PARK_THRESHOLD,
            openai_key_secret: None,
            anthropic_key_secret: None,
        }
    }
}

/// What an AI step keeps between attempts (the run's step state).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct AiState {
    system: Option<String>,
    messages: Vec<ChatMessage>,
    template_id: Option<String>,
    template_version: Option<i64>,
    prompt_hash: String,
    /// Answers received so far (valid or not).
    answers: u32,
    /// Transient failures so far.
    transient: u32,
    /// Wait this long before the next call (a back-off), in milliseconds.
    wait_ms: u64,
    last_errors: Vec<SchemaViolation>,
}

/// Prompt templates already loaded: (id, version) → (system, prompt).
type TemplateCache = Arc<Mutex<HashMap<(String, i64), (Option<String>, String)>>>;

/// Executes `ai_generate` steps through a provider, `api_call` steps through the HTTP port
/// (when one is given: [`DefaultExecutor::with_http`]); every other step inline.
pub struct DefaultExecutor {
    provider: Arc<dyn AiProvider>,
    templates: Arc<dyn TemplateStore>,
    settings: AiSettings,
    cache: TemplateCache,
    http: Option<Arc<dyn HttpPort>>,
    secrets: Option<Arc<dyn SecretValues>>,
    http_settings: HttpStepSettings,
}

impl DefaultExecutor {
    /// An executor calling `provider`, reading prompt templates from `templates`.
    pub fn new(
        provider: Arc<dyn AiProvider>,
        templates: Arc<dyn TemplateStore>,
        settings: AiSettings,
    ) -> Self {
        Self {
            provider,
            templates,
            settings,
            cache: Arc::default(),
            http: None,
            secrets: None,
            http_settings: HttpStepSettings::default(),
        }
    }

    /// Sends `api_call` requests through `http`; without it they fail as not executable.
    pub fn with_http(mut self, http: Arc<dyn HttpPort>) -> Self {
        self.http = Some(http);
        self
    }

    /// Reads the values `{{ secrets.<name> }}` renders (and redacts) from `secrets`; without
    /// it, `secrets` is an empty map.
    pub fn with_secrets(mut self, secrets: Arc<dyn SecretValues>) -> Self {
        self.secrets = Some(secrets);
        self
    }

    /// Back-off and limits of `api_call` steps.
    pub fn with_http_settings(mut self, settings: HttpStepSettings) -> Self {
        self.http_settings = settings;
        self
    }
}

impl StepExecutor for DefaultExecutor {
    fn execute(
        &self,
        wf: &Arc<CompiledWorkflow>,
        step_id: &str,
        run: &Run,
        attempt: i32,
    ) -> Execution {
        if let (Some(CompiledStep::ApiCall), Some(def), Some(http)) =
            (wf.step(step_id), wf.def.step(step_id), &self.http)
            && let StepKind::ApiCall(cfg) = &def.kind
        {
            return api_step::execute(
                http.clone(),
                self.secrets.clone(),
                self.http_settings.clone(),
                cfg,
                step_id,
                def.next.clone(),
                run,
            );
        }
        let (Some(CompiledStep::AiGenerate { schema }), Some(def)) =
            (wf.step(step_id), wf.def.step(step_id))
        else {
            return InlineExecutor.execute(wf, step_id, run, attempt);
        };
        let StepKind::AiGenerate(cfg) = &def.kind else {
            return InlineExecutor.execute(wf, step_id, run, attempt);
        };
        let call = Call {
            provider: self.provider.clone(),
            templates: self.templates.clone(),
            cache: self.cache.clone(),
            settings: self.settings.clone(),
            cfg: cfg.clone(),
            schema: schema.clone(),
            step_id: step_id.to_string(),
            next: def.next.clone(),
            run: run.clone(),
            secrets: self.secrets.clone(),
        };
        Execution::Pending(Box::pin(call.run()))
    }
}

/// Everything one attempt needs, owned, so it can run in a task.
struct Call {
    provider: Arc<dyn AiProvider>,
    templates: Arc<dyn TemplateStore>,
    cache: TemplateCache,
    settings: AiSettings,
    cfg: AiGenerateConfig,
    schema: Arc<scaff_core::ai::SchemaCheck>,
    step_id: String,
    next: Option<String>,
    run: Run,
    secrets: Option<Arc<dyn SecretValues>>,
}

fn fail(code: &str, step_id: &str, message: String, events: Vec<StepEvent>) -> StepResult {
    (
        StepOutcome::Failed(RunError {
            code: code.to_string(),
            message,
            step_id: Some(step_id.to_string()),
        }),
        events,
    )
}

impl Call {
    async fn run(self) -> StepResult {
        let mut state = match self
            .run
            .step_state
            .clone()
            .map(serde_json::from_value::<AiState>)
        {
            Some(Ok(s)) => s,
            _ => match self.first_state().await {
                Ok(s) => s,
                Err(message) => return fail(failure::RENDER, &self.step_id, message, Vec::new()),
            },
        };
        if state.wait_ms > 0 {
            tokio::time::sleep(Duration::from_millis(state.wait_ms)).await;
            state.wait_ms = 0;
        }
        let provider = self.cfg.provider.unwrap_or(self.settings.default_provider);
        let api_key = match self.api_key(provider).await {
            Ok(key) => key,
            Err(message) => return fail(failure::PROVIDER, &self.step_id, message, Vec::new()),
        };
        let request = AiRequest {
            provider,
            model: self.cfg.model.clone(),
            system: state.system.clone(),
            messages: state.messages.clone(),
            json_schema: self.cfg.json_schema.clone(),
            schema_name: self.step_id.clone(),
            temperature: self.cfg.temperature,
            max_tokens: self.cfg.max_tokens,
            timeout: self
                .cfg
                .timeout_s
                .map_or(self.settings.timeout, Duration::from_secs_f64),
            mock: Some(
                self.cfg
                    .mock
                    .clone()
                    .unwrap_or(self.settings.default_mock.clone()),
            ),
            attempt: state.answers + 1,
            api_key,
        };
        let retry_count = state.answers + state.transient;
        let base = json!({
            "provider": provider_name(provider),
            "model": request.model,
            "template_id": state.template_id,
            "template_version": state.template_version,
            "prompt_hash": state.prompt_hash,
            "retry_count": retry_count,
        });
        let mut events = vec![StepEvent {
            kind: events::REQUEST.into(),
            data: base.clone(),
        }];
        let started = Instant::now();
        let guard = request.timeout + Duration::from_secs(5);
        let span = tracing::info_span!(
            "ai.call",
            run_id = %self.run.id,
            step_id = %self.step_id,
            workflow_id = %self.run.workflow_id,
            workflow_version = self.run.workflow_version,
            provider = provider_name(provider),
            template_id = state.template_id.as_deref().unwrap_or(""),
            // Integers as i64: OpenTelemetry has no unsigned type (a u64 would become a string).
            retry_count = i64::from(retry_count),
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            // OpenTelemetry GenAI semantic conventions.
            gen_ai.system = provider_name(provider),
            gen_ai.provider.name = provider_name(provider),
            gen_ai.operation.name = "chat",
            gen_ai.request.model = tracing::field::Empty,
            gen_ai.request.temperature = tracing::field::Empty,
            gen_ai.request.max_tokens = tracing::field::Empty,
            gen_ai.response.model = tracing::field::Empty,
            gen_ai.usage.input_tokens = tracing::field::Empty,
            gen_ai.usage.output_tokens = tracing::field::Empty,
            error.type = tracing::field::Empty,
        );
        if let Some(model) = &request.model {
            span.record("gen_ai.request.model", model.as_str());
        }
        if let Some(t) = request.temperature {
            span.record("gen_ai.request.temperature", t);
        }
        if let Some(m) = request.max_tokens {
            span.record("gen_ai.request.max_tokens", otel_int(m));
        }
        let call = tracing::Instrument::instrument(self.provider.generate(&request), span.clone());
        let result = match tokio::time::timeout(guard, call).await {
            Ok(r) => r,
            Err(_) => Err(AiError::Timeout(request.timeout)),
        };
        let latency_ms = started.elapsed().as_millis() as u64;
        match &result {
            Ok(r) => {
                span.record("gen_ai.response.model", r.model.as_str());
                span.record("gen_ai.usage.input_tokens", otel_int(r.tokens_prompt));
                span.record("gen_ai.usage.output_tokens", otel_int(r.tokens_output));
            }
            Err(e) => {
                span.record("otel.status_code", "ERROR");
                span.record("error.type", ai_error_type(e));
            }
        }
        span.in_scope(|| match &result {
            Ok(r) => tracing::info!(
                model = %r.model,
                tokens_prompt = r.tokens_prompt,
                tokens_output = r.tokens_output,
                latency_ms,
                "ai.response"
            ),
            Err(e) => tracing::warn!(error = %e, latency_ms, "ai.response"),
        });
        match result {
            Ok(response) => self.answered(state, response, base, latency_ms, events),
            Err(error) => {
                events.push(response_event(
                    &base,
                    None,
                    latency_ms,
                    Some(&error.to_string()),
                    None,
                ));
                self.failed_call(state, error, events)
            }
        }
    }

    /// The provider's key from the secret store, when the server keeps it there.
    async fn api_key(&self, provider: Provider) -> Result<Option<String>, String> {
        let name = match provider {
            Provider::Openai => self.settings.openai_key_secret.as_ref(),
            Provider::Anthropic => self.settings.anthropic_key_secret.as_ref(),
            Provider::Mock => None,
        };
        let (Some(name), Some(secrets)) = (name, &self.secrets) else {
            return Ok(None);
        };
        let values = secrets.values().await?;
        values
            .get(name)
            .cloned()
            .map(Some)
            .ok_or_else(|| format!("the provider key secret `{name}` is not set"))
    }

    /// Renders the prompt and system text for the first attempt.
    async fn first_state(&self) -> Result<AiState, String> {
        let mut ctx = self.run.context.to_json();
        if let Json::Object(map) = &mut ctx {
            for name in &self.cfg.variables {
                if let Some(v) = self.run.context.runtime.get(name) {
                    map.insert(name.clone(), v.clone());
                }
            }
        }
        let (template_id, template_version, system_src, prompt_src) = match &self.cfg.template_id {
            Some(r) => {
                let version = r
                    .version
                    .or_else(|| self.run.pins.get(&r.id).copied())
                    .ok_or_else(|| {
                        format!("template `{}` was not pinned when the run started", r.id)
                    })?;
                let (system, prompt) = self.template(&r.id, version).await?;
                (Some(r.id.clone()), Some(version), system, prompt)
            }
            None => (
                None,
                None,
                None,
                self.cfg.prompt.clone().unwrap_or_default(),
            ),
        };
        let system_src = self.cfg.system.clone().or(system_src);
        let render = |src: &str| {
            scaff_core::template::render(src, &ctx)
                .map_err(|e| format!("rendering the prompt: {}", e.message))
        };
        let prompt = render(&prompt_src)?;
        let system = system_src.as_deref().map(render).transpose()?;
        Ok(AiState {
            prompt_hash: fnv_hex(&format!("{}\u{0}{prompt}", system.as_deref().unwrap_or(""))),
            system,
            messages: vec![ChatMessage {
                role: Role::User,
                content: prompt,
            }],
            template_id,
            template_version,
            ..AiState::default()
        })
    }

    async fn template(&self, id: &str, version: i64) -> Result<(Option<String>, String), String> {
        let key = (id.to_string(), version);
        if let Some(hit) = self.cache.lock().ok().and_then(|c| c.get(&key).cloned()) {
            return Ok(hit);
        }
        let found = self
            .templates
            .template_version(id, version)
            .await
            .map_err(|e| format!("loading template `{id}@{version}`: {e}"))?
            .ok_or_else(|| format!("template `{id}@{version}` does not exist"))?;
        let value = (found.system, found.prompt);
        if let Ok(mut c) = self.cache.lock() {
            c.insert(key, value.clone());
        }
        Ok(value)
    }

    fn answered(
        &self,
        mut state: AiState,
        response: AiResponse,
        base: Json,
        latency_ms: u64,
        mut events: Vec<StepEvent>,
    ) -> StepResult {
        state.answers += 1;
        let parsed = extract_json(&response.text);
        let violations = match &parsed {
            Ok(value) => self.schema.violations(value),
            Err(why) => vec![SchemaViolation {
                path: String::new(),
                message: why.clone(),
            }],
        };
        events.push(response_event(
            &base,
            Some(&response),
            latency_ms,
            None,
            Some(&violations),
        ));
        if violations.is_empty()
            && let Ok(value) = parsed
        {
            return (self.done(value), events);
        }
        if state.answers > self.settings.max_schema_retries {
            let summary: Vec<String> = violations
                .iter()
                .map(|v| {
                    format!(
                        "{}: {}",
                        if v.path.is_empty() { "(root)" } else { &v.path },
                        v.message
                    )
                })
                .collect();
            return fail(
                failure::SCHEMA,
                &self.step_id,
                format!(
                    "{} answers broke the schema; the last: {}",
                    state.answers,
                    summary.join("; ")
                ),
                events,
            );
        }
        state.messages.push(ChatMessage {
            role: Role::Assistant,
            content: response.text,
        });
        state.messages.push(ChatMessage {
            role: Role::User,
            content: feedback(&violations),
        });
        state.last_errors = violations;
        (continue_with(&state), events)
    }

    fn failed_call(
        &self,
        mut state: AiState,
        error: AiError,
        events: Vec<StepEvent>,
    ) -> StepResult {
        let retry_after = match &error {
            AiError::Permanent(message) => {
                return fail(failure::PROVIDER, &self.step_id, message.clone(), events);
            }
            AiError::Transient { retry_after, .. } => *retry_after,
            AiError::Timeout(_) => None,
        };
        state.transient += 1;
        if state.transient > self.settings.max_transient_retries {
            return fail(
                failure::UNAVAILABLE,
                &self.step_id,
                format!("{} failed calls; the last: {error}", state.transient),
                events,
            );
        }
        let wait = backoff(
            &self.settings,
            state.transient,
            retry_after,
            &self.run,
            &state,
        );
        let (wait_ms, retry_at) = crate::deps::back_off(wait, self.settings.park_threshold);
        state.wait_ms = wait_ms;
        (continue_at(&state, retry_at), events)
    }

    fn done(&self, value: Json) -> StepOutcome {
        let mut updates = Map::new();
        match (&self.cfg.output_key, value) {
            (Some(key), v) => {
                updates.insert(key.clone(), v);
            }
            (None, Json::Object(map)) => updates = map,
            (None, other) => {
                updates.insert(self.step_id.clone(), other);
            }
        }
        StepOutcome::Done {
            output: Json::Object(updates.clone()),
            updates,
            next: self.next.clone(),
        }
    }
}

fn continue_with(state: &AiState) -> StepOutcome {
    continue_at(state, None)
}

fn continue_at(state: &AiState, retry_at: Option<chrono::DateTime<chrono::Utc>>) -> StepOutcome {
    StepOutcome::Continue {
        state: serde_json::to_value(state).unwrap_or(Json::Null),
        retry_at,
    }
}

fn response_event(
    base: &Json,
    response: Option<&AiResponse>,
    latency_ms: u64,
    error: Option<&str>,
    violations: Option<&[SchemaViolation]>,
) -> StepEvent {
    let mut data = base.clone();
    if let Json::Object(map) = &mut data {
        map.insert("latency_ms".into(), json!(latency_ms));
        map.insert(
            "tokens_prompt".into(),
            json!(response.map_or(0, |r| r.tokens_prompt)),
        );
        map.insert(
            "tokens_output".into(),
            json!(response.map_or(0, |r| r.tokens_output)),
        );
        if let Some(r) = response {
            map.insert("model".into(), json!(r.model));
            map.insert("raw_output".into(), json!(r.text));
        }
        if let Some(v) = violations {
            map.insert("valid".into(), json!(v.is_empty()));
            map.insert("errors".into(), json!(v));
        }
        if let Some(e) = error {
            map.insert("error".into(), json!(e));
        }
    }
    StepEvent {
        kind: events::RESPONSE.into(),
        data,
    }
}

/// Exponential back-off with jitter (deterministic per run and attempt), at least what the
/// provider asked for with `Retry-After`, at most the cap.
fn backoff(
    settings: &AiSettings,
    failures: u32,
    retry_after: Option<Duration>,
    run: &Run,
    state: &AiState,
) -> Duration {
    let exp = settings
        .backoff_base
        .saturating_mul(1u32 << failures.saturating_sub(1).min(16));
    let jitter_seed = fnv(&format!("{}{}{}", run.id, state.prompt_hash, failures));
    let jitter = exp.mul_f64((jitter_seed % 1000) as f64 / 1000.0 * 0.5);
    // A provider's Retry-After is honoured up to ten minutes (long waits park the run on a
    // durable timer, see `back_off`).
    let asked = retry_after.unwrap_or_default().min(MAX_RETRY_AFTER);
    let wait = (exp + jitter).max(asked);
    wait.min(settings.backoff_cap.max(asked))
}

/// A count as an OpenTelemetry integer (i64; there is no unsigned type).
fn otel_int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The `error.type` of a failed call (OpenTelemetry conventions: a low-cardinality class).
fn ai_error_type(e: &AiError) -> &'static str {
    match e {
        AiError::Timeout(_) => "timeout",
        AiError::Transient { .. } => "transient",
        AiError::Permanent(_) => "permanent",
    }
}

fn provider_name(p: Provider) -> &'static str {
    match p {
        Provider::Mock => "mock",
        Provider::Openai => "openai",
        Provider::Anthropic => "anthropic",
    }
}

/// FNV-1a: a small, stable, dependency-free hash (prompt fingerprints and jitter, not security).
fn fnv(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn fnv_hex(s: &str) -> String {
    format!("{:016x}", fnv(s))
}
