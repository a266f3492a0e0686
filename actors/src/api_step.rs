//! The `api_call` step: one HTTP request per execution, every attempt checkpointed.
//!
//! An execution renders the request (method, URL, headers, query, body) from the context,
//! sends it through the [`HttpPort`], and ends in one of three ways: an expected status
//! completes the step with `runtime[output_key] = {status, headers, body}`; a 5xx, a timeout
//! or a connection failure *continues* it — the attempt count and the back-off to wait become
//! the run's step state, checkpointed before the next attempt (so a crash repeats at most the
//! call in flight, and the downstream server can deduplicate it by its `Idempotency-Key`);
//! running out of retries, or a permanent failure (a 4xx, a refused or too large response, a
//! template that does not render), fails it. Every attempt is reported as `http.request` /
//! `http.response` events.
//!
//! # Templates
//! Every string of `url`, header values, query values and `body` (recursively; object keys are
//! literal) is a minijinja template over `{static, profile, inputs, runtime, secrets, run}`,
//! where `secrets` maps each secret's name to its value and `run` is
//! `{id, workflow_id, workflow_version, step_id}`. Strings without `{{`, `{%` or `{#` are used
//! as they are. In `body`, a string that is exactly one `{{ expr }}` (surrounding whitespace
//! ignored) keeps the value's JSON type: it is rendered as `{{ (expr) | tojson }}` and parsed
//! back, so `"{{ inputs.n }}"` sends the number `5`, not the string `"5"` (the string is first
//! rendered as it is, so that an undefined name is an error naming it rather than `null`).
//! URL, header and query templates always yield strings.
//!
//! # Body
//! An object, array, number or boolean body is sent as JSON (`content-type:
//! application/json` unless the step sets a content type); a string body is sent as it is
//! (`text/plain; charset=utf-8` unless set); a missing or `null` body sends none.
//!
//! # Secrets
//! The request sent carries the real values. What is recorded — the URL in events, the
//! response in the step output, error messages — has every secret value (and its
//! percent-encoded form) replaced by `[REDACTED]`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use scaff_core::http::{HttpError, HttpPort, HttpRequest, HttpResponse, SecretValues};
use scaff_core::run::step::{StepEvent, StepOutcome};
use scaff_core::run::{Run, RunError};
use scaff_core::workflow::{ApiCallConfig, DEFAULT_API_TIMEOUT_S};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json, json};

use crate::deps::{Execution, StepResult};

/// Failure codes of `api_call` steps.
pub mod failure {
    /// A template did not render (or the secrets could not be read).
    pub const RENDER: &str = "http.render_failed";
    /// The server answered with a status that is not expected and not retried (a 4xx).
    pub const STATUS: &str = "http.status";
    /// 5xx answers, timeouts or connection failures outlasted the retries.
    pub const UNAVAILABLE: &str = "http.unavailable";
    /// The response body is larger than the limit.
    pub const TOO_LARGE: &str = "http.response_too_large";
    /// The request is not allowed (scheme, host or address policy).
    pub const REFUSED: &str = "http.refused";
    /// The request could not be sent for another reason (an invalid URL or header, too many
    /// redirects, …).
    pub const REQUEST: &str = "http.request_failed";
}

/// Event names of HTTP calls.
pub mod events {
    /// A request is about to be sent.
    pub const REQUEST: &str = "http.request";
    /// A request ended (with a response or an error).
    pub const RESPONSE: &str = "http.response";
}

/// What secret values are replaced with wherever a request or response is recorded.
pub const REDACTED: &str = scaff_core::redact::REDACTED;

/// The header every request carries, `<run id>:<step id>`, the same across retries.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

/// Back-off and limits of `api_call` steps (the retry count is each step's `max_retries`).
#[derive(Debug, Clone)]
pub struct HttpStepSettings {
    /// First back-off after a retryable failure (doubling, with jitter).
    pub backoff_base: Duration,
    /// Longest back-off (a `Retry-After` asking for more is capped too).
    pub backoff_cap: Duration,
    /// How much of an unexpected response's body goes into the failure message, in bytes.
    pub max_error_body: usize,
    /// Back-offs at least this long park the run on a durable timer instead of a sleep.
    pub park_threshold: Duration,
}

impl Default for HttpStepSettings {
    fn default() -> Self {
        Self {
            backoff_base: Duration::from_millis(500),
            backoff_cap: Duration::from_secs(30),
            max_error_body: 2048,
            park_threshold: crate::deps::PARK_THRESHOLD,
        }
    }
}

/// What an `api_call` step keeps between attempts (the run's step state).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct ApiState {
    /// Attempts made so far.
    attempts: u32,
    /// Wait this long before the next attempt (a back-off), in milliseconds.
    wait_ms: u64,
}

/// The execution of an `api_call` step for `run`, as a task.
pub(crate) fn execute(
    http: Arc<dyn HttpPort>,
    secrets: Option<Arc<dyn SecretValues>>,
    settings: HttpStepSettings,
    cfg: &ApiCallConfig,
    step_id: &str,
    next: Option<String>,
    run: &Run,
) -> Execution {
    let call = ApiCall {
        http,
        secrets,
        settings,
        cfg: cfg.clone(),
        step_id: step_id.to_string(),
        next,
        run: run.clone(),
    };
    Execution::Pending(Box::pin(call.run()))
}

/// Everything one attempt needs, owned, so it can run in a task.
struct ApiCall {
    http: Arc<dyn HttpPort>,
    secrets: Option<Arc<dyn SecretValues>>,
    settings: HttpStepSettings,
    cfg: ApiCallConfig,
    step_id: String,
    next: Option<String>,
    run: Run,
}

/// How one attempt ended, before deciding what it means for the step.
enum Attempt {
    Answered(HttpResponse),
    Error(HttpError),
}

impl ApiCall {
    async fn run(self) -> StepResult {
        let mut state = self
            .run
            .step_state
            .clone()
            .and_then(|s| serde_json::from_value::<ApiState>(s).ok())
            .unwrap_or_default();
        if state.wait_ms > 0 {
            tokio::time::sleep(Duration::from_millis(state.wait_ms)).await;
            state.wait_ms = 0;
        }
        state.attempts += 1;

        let secrets = match &self.secrets {
            Some(port) => match port.values().await {
                Ok(values) => values,
                Err(e) => {
                    return self.fail(failure::RENDER, format!("reading secrets: {e}"), Vec::new());
                }
            },
            None => BTreeMap::new(),
        };
        let redactor = Redactor::new(secrets.values());
        let request = match self.render(&secrets) {
            Ok(r) => r,
            Err(message) => {
                return self.fail(failure::RENDER, redactor.text(&message), Vec::new());
            }
        };
        let shown_url = redactor.text(&request.url);
        let mut events = vec![StepEvent {
            kind: events::REQUEST.into(),
            data: json!({
                "method": request.method,
                "url": shown_url,
                "attempt": state.attempts,
            }),
        }];

        let span = tracing::info_span!(
            "http.call",
            run_id = %self.run.id,
            step_id = %self.step_id,
            workflow_id = %self.run.workflow_id,
            workflow_version = self.run.workflow_version,
            method = %request.method,
            url = %shown_url,
            attempt = i64::from(state.attempts),
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            // OpenTelemetry HTTP client conventions.
            http.request.method = %request.method,
            url.full = %shown_url,
            http.response.status_code = tracing::field::Empty,
            error.type = tracing::field::Empty,
        );
        let started = Instant::now();
        let guard = request.timeout + Duration::from_secs(5);
        let timeout = request.timeout;
        let send = tracing::Instrument::instrument(self.http.send(request.clone()), span.clone());
        let attempt = match tokio::time::timeout(guard, send).await {
            Ok(Ok(response)) => Attempt::Answered(response),
            Ok(Err(e)) => Attempt::Error(e),
            Err(_) => Attempt::Error(HttpError::Timeout(timeout)),
        };
        let latency_ms = started.elapsed().as_millis() as u64;
        let mut data = json!({"latency_ms": latency_ms, "attempt": state.attempts});
        match &attempt {
            Attempt::Answered(r) => {
                span.record("http.response.status_code", i64::from(r.status));
                if r.status >= 400 {
                    span.record("otel.status_code", "ERROR");
                    span.record("error.type", r.status.to_string().as_str());
                }
                data["status"] = json!(r.status);
                span.in_scope(|| tracing::info!(status = r.status, latency_ms, "http.response"));
            }
            Attempt::Error(e) => {
                let error = redactor.text(&e.to_string());
                span.record("otel.status_code", "ERROR");
                span.record("error.type", http_error_type(e));
                data["status"] = Json::Null;
                span.in_scope(|| tracing::warn!(error = %error, latency_ms, "http.response"));
                data["error"] = json!(error);
            }
        }
        events.push(StepEvent {
            kind: events::RESPONSE.into(),
            data,
        });

        match attempt {
            Attempt::Answered(response) => self.answered(
                state,
                &request.method,
                &shown_url,
                response,
                &redactor,
                events,
            ),
            Attempt::Error(error) => {
                let message = redactor.text(&error.to_string());
                match error {
                    HttpError::Timeout(_) | HttpError::Connect(_) => {
                        self.retry(state, message, None, events)
                    }
                    HttpError::TooLarge(_) => self.fail(failure::TOO_LARGE, message, events),
                    HttpError::Refused(_) => self.fail(failure::REFUSED, message, events),
                    HttpError::Other(_) => self.fail(failure::REQUEST, message, events),
                }
            }
        }
    }

    /// Decides what a response means: success, a retry (5xx) or a failure.
    fn answered(
        &self,
        state: ApiState,
        method: &str,
        url: &str,
        response: HttpResponse,
        redactor: &Redactor,
        events: Vec<StepEvent>,
    ) -> StepResult {
        let status = response.status;
        let expected = if self.cfg.expect_status.is_empty() {
            (200..300).contains(&status)
        } else {
            self.cfg.expect_status.contains(&status)
        };
        if expected {
            return (self.done(result_json(&response, redactor)), events);
        }
        // Redact first: a secret cut in half by the truncation would no longer be recognized.
        let body = truncate(
            &redactor.text(&String::from_utf8_lossy(&response.body)),
            self.settings.max_error_body,
        );
        if status >= 500 {
            let retry_after = header(&response.headers, "retry-after")
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let message = format!("{method} {url} answered {status}: {body}");
            return self.retry(state, message, retry_after, events);
        }
        self.fail(
            failure::STATUS,
            format!("{method} {url} answered {status}: {body}"),
            events,
        )
    }

    /// A retryable failure: another attempt after a back-off, or the end of the budget.
    fn retry(
        &self,
        mut state: ApiState,
        message: String,
        retry_after: Option<Duration>,
        events: Vec<StepEvent>,
    ) -> StepResult {
        if state.attempts > self.cfg.max_retries {
            return self.fail(
                failure::UNAVAILABLE,
                format!("{} attempts failed; the last: {message}", state.attempts),
                events,
            );
        }
        let wait = self.backoff(state.attempts, retry_after);
        let (wait_ms, retry_at) = crate::deps::back_off(wait, self.settings.park_threshold);
        state.wait_ms = wait_ms;
        (
            StepOutcome::Continue {
                state: serde_json::to_value(&state).unwrap_or(Json::Null),
                retry_at,
            },
            events,
        )
    }

    /// Exponential back-off with jitter (deterministic per run, step and attempt), at least
    /// what the server asked for with `Retry-After`, at most the cap.
    fn backoff(&self, failures: u32, retry_after: Option<Duration>) -> Duration {
        let exp = self
            .settings
            .backoff_base
            .saturating_mul(1u32 << failures.saturating_sub(1).min(16));
        let seed = fnv(&format!("{}:{}:{failures}", self.run.id, self.step_id));
        let jitter = exp.mul_f64((seed % 1000) as f64 / 1000.0 * 0.5);
        (exp + jitter)
            .max(retry_after.unwrap_or_default())
            .min(self.settings.backoff_cap)
    }

    fn done(&self, result: Json) -> StepOutcome {
        let mut updates = Map::new();
        let key = self.cfg.output_key.clone().unwrap_or(self.step_id.clone());
        updates.insert(key, result);
        StepOutcome::Done {
            output: Json::Object(updates.clone()),
            updates,
            next: self.next.clone(),
        }
    }

    fn fail(&self, code: &str, message: String, events: Vec<StepEvent>) -> StepResult {
        (
            StepOutcome::Failed(RunError {
                code: code.to_string(),
                message,
                step_id: Some(self.step_id.clone()),
            }),
            events,
        )
    }

    /// The request, every template rendered.
    fn render(&self, secrets: &BTreeMap<String, String>) -> Result<HttpRequest, String> {
        let mut ctx = self.run.context.to_json();
        if let Json::Object(map) = &mut ctx {
            map.insert("secrets".into(), json!(secrets));
            map.insert(
                "run".into(),
                json!({
                    "id": self.run.id.to_string(),
                    "workflow_id": self.run.workflow_id,
                    "workflow_version": self.run.workflow_version,
                    "step_id": self.step_id,
                }),
            );
        }
        let mut url = render_string(&self.cfg.url, &ctx).map_err(|e| format!("url: {e}"))?;
        if !self.cfg.query.is_empty() {
            let mut pairs = String::new();
            for (name, src) in &self.cfg.query {
                let value = render_string(src, &ctx).map_err(|e| format!("query.{name}: {e}"))?;
                if !pairs.is_empty() {
                    pairs.push('&');
                }
                pairs.push_str(&percent_encode(name));
                pairs.push('=');
                pairs.push_str(&percent_encode(&value));
            }
            url = with_query(&url, &pairs);
        }
        let mut headers = Vec::with_capacity(self.cfg.headers.len() + 2);
        for (name, src) in &self.cfg.headers {
            let value = render_string(src, &ctx).map_err(|e| format!("headers.{name}: {e}"))?;
            headers.push((name.clone(), value));
        }
        if header(&headers, IDEMPOTENCY_HEADER).is_none() {
            headers.push((
                IDEMPOTENCY_HEADER.to_string(),
                format!("{}:{}:{}", self.run.id, self.step_id, self.run.step_seq),
            ));
        }
        let body = match &self.cfg.body {
            None => None,
            Some(src) => Some(render_json(src, &ctx, "body")?),
        };
        let body = match body {
            None | Some(Json::Null) => None,
            Some(Json::String(text)) => {
                default_header(&mut headers, "content-type", "text/plain; charset=utf-8");
                Some(text.into_bytes())
            }
            Some(value) => {
                default_header(&mut headers, "content-type", "application/json");
                Some(serde_json::to_vec(&value).map_err(|e| format!("body: {e}"))?)
            }
        };
        let timeout = Duration::try_from_secs_f64(self.cfg.timeout_s)
            .ok()
            .filter(|t| !t.is_zero())
            .unwrap_or(Duration::from_secs_f64(DEFAULT_API_TIMEOUT_S));
        Ok(HttpRequest {
            method: self.cfg.method.to_ascii_uppercase(),
            url,
            headers,
            body,
            timeout,
        })
    }
}

/// `{status, headers, body}` of a response: header names lower-case (repeated headers joined
/// with `, `), the body JSON-parsed when the response says it is JSON and it parses, else text.
fn result_json(response: &HttpResponse, redactor: &Redactor) -> Json {
    let mut headers = Map::new();
    for (name, value) in &response.headers {
        let name = name.to_ascii_lowercase();
        let value = redactor.text(value);
        match headers.get_mut(&name) {
            Some(Json::String(existing)) => {
                existing.push_str(", ");
                existing.push_str(&value);
            }
            _ => {
                headers.insert(name, Json::String(value));
            }
        }
    }
    let is_json = header(&response.headers, "content-type").is_some_and(|ct| {
        let mime = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        mime == "application/json" || mime.ends_with("+json") || mime == "text/json"
    });
    let body = is_json
        .then(|| serde_json::from_slice::<Json>(&response.body).ok())
        .flatten()
        .map(|v| redactor.json(v))
        .unwrap_or_else(|| Json::String(redactor.text(&String::from_utf8_lossy(&response.body))));
    json!({"status": response.status, "headers": headers, "body": body})
}

/// The value of a header (names compared case-insensitively).
fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Adds a header unless one of that name is set already.
fn default_header(headers: &mut Vec<(String, String)>, name: &str, value: &str) {
    if header(headers, name).is_none() {
        headers.push((name.to_string(), value.to_string()));
    }
}

/// Whether `src` needs rendering at all.
fn is_template(src: &str) -> bool {
    src.contains("{{") || src.contains("{%") || src.contains("{#")
}

/// Renders a template to text.
fn render_string(src: &str, ctx: &Json) -> Result<String, String> {
    if !is_template(src) {
        return Ok(src.to_string());
    }
    scaff_core::template::render(src, ctx).map_err(|e| e.message)
}

/// The expression of a string that is exactly one `{{ expr }}` (whitespace around it and
/// `-`/`+` whitespace control ignored).
fn single_expression(src: &str) -> Option<&str> {
    let inner = src.trim().strip_prefix("{{")?.strip_suffix("}}")?;
    let inner = inner.strip_prefix(['-', '+']).unwrap_or(inner);
    let inner = inner.strip_suffix(['-', '+']).unwrap_or(inner).trim();
    let nested = ["{{", "}}", "{%", "%}", "{#", "#}"]
        .iter()
        .any(|d| inner.contains(d));
    (!inner.is_empty() && !nested).then_some(inner)
}

/// Renders a body value: strings as templates (one `{{ expr }}` keeps its JSON type), arrays
/// and objects recursively (keys literal).
fn render_json(value: &Json, ctx: &Json, path: &str) -> Result<Json, String> {
    Ok(match value {
        Json::String(src) => match single_expression(src) {
            Some(expr) => {
                // `tojson` turns an undefined value into `null`; rendering the string as it is
                // first makes a missing name the error strict undefined reports, naming it.
                scaff_core::template::render(src, ctx)
                    .map_err(|e| format!("{path}: {}", e.message))?;
                let text =
                    scaff_core::template::render(&format!("{{{{ ({expr}) | tojson }}}}"), ctx)
                        .map_err(|e| format!("{path}: {}", e.message))?;
                serde_json::from_str(&text)
                    .map_err(|e| format!("{path}: `{expr}` did not yield JSON: {e}"))?
            }
            None => Json::String(render_string(src, ctx).map_err(|e| format!("{path}: {e}"))?),
        },
        Json::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                out.push(render_json(item, ctx, &format!("{path}[{i}]"))?);
            }
            Json::Array(out)
        }
        Json::Object(map) => {
            let mut out = Map::with_capacity(map.len());
            for (k, v) in map {
                out.insert(k.clone(), render_json(v, ctx, &format!("{path}.{k}"))?);
            }
            Json::Object(out)
        }
        other => other.clone(),
    })
}

/// Percent-encodes everything but the unreserved characters (RFC 3986), for query names and
/// values.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// `url` with `pairs` appended to its query (before any fragment).
fn with_query(url: &str, pairs: &str) -> String {
    let (base, fragment) = match url.split_once('#') {
        Some((b, f)) => (b, Some(f)),
        None => (url, None),
    };
    let sep = if !base.contains('?') {
        "?"
    } else if base.ends_with('?') || base.ends_with('&') {
        ""
    } else {
        "&"
    };
    let mut out = format!("{base}{sep}{pairs}");
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    out
}

/// At most `max` bytes of `s` (cut at a character boundary), marked when cut.
fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes in all)", &s[..end], s.len())
}

/// Secret values only — the core redaction filter with its patterns off (the step's result is
/// the run's own data; the events it records pass the full filter when checkpointed).
struct Redactor(scaff_core::redact::Redactor);

impl Redactor {
    fn new<'a>(values: impl Iterator<Item = &'a String>) -> Self {
        Self(scaff_core::redact::Redactor::new(
            values,
            scaff_core::redact::Patterns::Off,
        ))
    }

    fn text(&self, s: &str) -> String {
        self.0.text(s).into_owned()
    }

    fn json(&self, value: Json) -> Json {
        self.0.json_owned(value)
    }
}

/// FNV-1a: a small, stable hash for jitter (not security).
fn fnv(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The `error.type` of a request that got no response (a low-cardinality class).
fn http_error_type(e: &HttpError) -> &'static str {
    match e {
        HttpError::Timeout(_) => "timeout",
        HttpError::Connect(_) => "connect",
        HttpError::TooLarge(_) => "response_too_large",
        HttpError::Refused(_) => "refused",
        HttpError::Other(_) => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Json {
        json!({
            "static": {"base": "http://h"},
            "inputs": {"n": 5, "name": "Ann", "tags": ["a", "b"], "f": 1.5},
            "runtime": {},
            "profile": {},
            "secrets": {"token": "s3cr3t"},
        })
    }

    #[test]
    fn a_single_expression_keeps_its_json_type() {
        let body = json!({
            "n": "{{ inputs.n }}",
            "f": " {{- inputs.f -}} ",
            "tags": "{{inputs.tags}}",
            "text": "n={{ inputs.n }}",
            "name": "{{ inputs.name }}",
            "nested": [{"x": "{{ inputs.n + 1 }}"}, "{{ inputs.tags | length }}"],
            "literal": 3,
        });
        let out = render_json(&body, &ctx(), "body").expect("renders");
        assert_eq!(
            out,
            json!({
                "n": 5, "f": 1.5, "tags": ["a", "b"], "text": "n=5", "name": "Ann",
                "nested": [{"x": 6}, 2], "literal": 3,
            })
        );
    }

    #[test]
    fn an_undefined_name_is_a_render_error_with_its_path() {
        let err = render_json(&json!({"a": ["{{ inputs.missing }}"]}), &ctx(), "body")
            .expect_err("undefined");
        assert!(err.starts_with("body.a[0]"), "{err}");
        assert!(err.contains("missing"), "{err}");
    }

    #[test]
    fn single_expressions_are_recognized() {
        assert_eq!(single_expression(" {{ a.b }} "), Some("a.b"));
        assert_eq!(single_expression("{{- a -}}"), Some("a"));
        assert_eq!(single_expression("{{ a }}{{ b }}"), None);
        assert_eq!(single_expression("x {{ a }}"), None);
        assert_eq!(single_expression("{{ }}"), None);
    }

    #[test]
    fn query_pairs_are_encoded_and_appended() {
        assert_eq!(with_query("http://h/p", "a=1"), "http://h/p?a=1");
        assert_eq!(with_query("http://h/p?x=2", "a=1"), "http://h/p?x=2&a=1");
        assert_eq!(with_query("http://h/p?", "a=1"), "http://h/p?a=1");
        assert_eq!(with_query("http://h/p#top", "a=1"), "http://h/p?a=1#top");
        assert_eq!(percent_encode("a b&c=d/é~"), "a%20b%26c%3Dd%2F%C3%A9~");
    }

    #[test]
    fn secrets_are_redacted_raw_and_encoded() {
        let values = ["p@ss word".to_string(), "abcd".to_string()];
        let r = Redactor::new(values.iter());
        assert_eq!(
            r.text("u?k=p%40ss%20word&x=abcd p@ss word"),
            "u?k=[REDACTED]&x=[REDACTED] [REDACTED]"
        );
        assert_eq!(
            r.json(json!({"abcd": ["xabcdx", 1]})),
            json!({"[REDACTED]": ["x[REDACTED]x", 1]})
        );
    }

    #[test]
    fn long_bodies_are_truncated_at_a_character_boundary() {
        let s = "é".repeat(10);
        let t = truncate(&s, 5);
        assert!(t.starts_with("éé…"), "{t}");
        assert_eq!(truncate("short", 10), "short");
    }

    #[test]
    fn json_responses_are_parsed_and_others_kept_as_text() {
        let r = Redactor::new(std::iter::empty());
        let resp = |ct: &str, body: &str| HttpResponse {
            status: 200,
            headers: vec![
                ("content-type".into(), ct.into()),
                ("x-a".into(), "1".into()),
                ("X-A".into(), "2".into()),
            ],
            body: body.as_bytes().to_vec(),
        };
        let j = result_json(
            &resp("application/json; charset=utf-8", r#"{"ok":true}"#),
            &r,
        );
        assert_eq!(j["body"], json!({"ok": true}));
        assert_eq!(j["headers"]["x-a"], "1, 2");
        let t = result_json(&resp("text/plain", r#"{"ok":true}"#), &r);
        assert_eq!(t["body"], r#"{"ok":true}"#);
        let bad = result_json(&resp("application/problem+json", "not json"), &r);
        assert_eq!(bad["body"], "not json");
    }
}
