//! A thin client of Scaff's public REST API: exactly the calls a load tester makes, and
//! nothing that reaches into the server's internals.
//!
//! Every call returns the run object as JSON or a [`CallError`] whose [`CallError::kind`] is
//! the key errors are counted under (`http 409`, `transport timeout`, `run failed`, …). The
//! pure helpers at the bottom pick what the next call needs (run id, status, the form's resume
//! token, an approver's token) out of a response, and never panic on a malformed one.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Why one API call (or the run it drives) did not go as the workload expects.
#[derive(Debug, Clone, PartialEq)]
pub enum CallError {
    /// The server answered with an unexpected HTTP status.
    Http {
        /// The status code.
        status: u16,
        /// The problem document's `detail`, or the start of the body.
        detail: String,
    },
    /// The request did not get an answer: connect, timeout, a broken body.
    Transport {
        /// `connect`, `timeout`, `body`, `decode` or `request`.
        kind: &'static str,
        /// The client's message.
        detail: String,
    },
    /// The server answered, but the run is not where the workload expects it.
    Unexpected {
        /// A short stable key (`run failed`, `run waiting on approval`, `no resume_token`).
        kind: String,
        /// What was seen.
        detail: String,
    },
}

impl CallError {
    /// The key errors are counted under in reports.
    pub fn kind(&self) -> String {
        match self {
            CallError::Http { status, .. } => format!("http {status}"),
            CallError::Transport { kind, .. } => format!("transport {kind}"),
            CallError::Unexpected { kind, .. } => kind.clone(),
        }
    }

    /// The kind and the detail, for error samples.
    pub fn describe(&self) -> String {
        match self {
            CallError::Http { detail, .. }
            | CallError::Transport { detail, .. }
            | CallError::Unexpected { detail, .. } => format!("{}: {detail}", self.kind()),
        }
    }

    fn unexpected(kind: impl Into<String>, detail: impl Into<String>) -> Self {
        CallError::Unexpected {
            kind: kind.into(),
            detail: detail.into(),
        }
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl std::error::Error for CallError {}

fn transport(e: &reqwest::Error) -> CallError {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else if e.is_body() {
        "body"
    } else if e.is_decode() {
        "decode"
    } else {
        "request"
    };
    CallError::Transport {
        kind,
        detail: e.to_string(),
    }
}

/// What a start or resume call waits for before the server answers it (`--calls`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Calls {
    /// Send `wait_ms`: the server answers once the run has settled, so a call's time is also
    /// the observed time.
    #[default]
    Settled,
    /// Send no `wait_ms`: the server answers once it has durably accepted the call; the run is
    /// then followed with `GET /v1/executions/{id}?wait_ms=` until it settles.
    Ack,
}

impl Calls {
    /// `settled` or `ack`, as given on the command line and written in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Calls::Settled => "settled",
            Calls::Ack => "ack",
        }
    }
}

/// A client of one Scaff server.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    wait_ms: u64,
    calls: Calls,
}

impl Api {
    /// A client of the server at `base` (e.g. `http://127.0.0.1:8080`), keeping up to
    /// `concurrency` idle connections. With [`Calls::Settled`] every start and resume asks the
    /// server to wait up to `wait_ms` for the run to settle; with [`Calls::Ack`] they ask for
    /// no wait. [`Api::settle`] waits up to `wait_ms` per read either way.
    pub fn new(base: &str, concurrency: usize, wait_ms: u64, calls: Calls) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(concurrency.max(1))
            .timeout(Duration::from_millis(wait_ms) + Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(10))
            .tcp_nodelay(true)
            .build()?;
        Ok(Api {
            http,
            base: base.trim_end_matches('/').to_string(),
            wait_ms,
            calls,
        })
    }

    /// The `wait_ms` a start or resume sends: `--wait-ms` when settled, none when ack.
    fn call_wait_ms(&self) -> Option<u64> {
        match self.calls {
            Calls::Settled => Some(self.wait_ms),
            Calls::Ack => None,
        }
    }

    /// The body of `POST /v1/executions`.
    fn start_body(&self, workflow_id: &str, inputs: Value) -> Value {
        with_wait(
            json!({"workflow_id": workflow_id, "inputs": inputs}),
            self.call_wait_ms(),
        )
    }

    /// The body of a form's `POST /v1/executions/{id}/resume`.
    fn resume_form_body(&self, token: &str, inputs: Value) -> Value {
        with_wait(
            json!({"resume_token": token, "inputs": inputs}),
            self.call_wait_ms(),
        )
    }

    /// The body of an approver's `POST /v1/executions/{id}/resume`.
    fn resume_approval_body(
        &self,
        token: &str,
        step_id: &str,
        approved: bool,
        comment: &str,
    ) -> Value {
        with_wait(
            json!({
                "resume_token": token,
                "approvals": [{"step_id": step_id, "approved": approved, "comment": comment}],
            }),
            self.call_wait_ms(),
        )
    }

    /// `GET /healthz` answers 200.
    pub async fn healthy(&self) -> Result<(), CallError> {
        let resp = self
            .http
            .get(format!("{}/healthz", self.base))
            .send()
            .await
            .map_err(|e| transport(&e))?;
        expect_status(resp, &[200]).await.map(|_| ())
    }

    /// Saves the workflow `yaml` (whose `id:` is `id`) unless a workflow with that id exists.
    /// Returns whether it was created. Nothing is added when it exists.
    pub async fn ensure_workflow(&self, id: &str, yaml: &str) -> Result<bool, CallError> {
        let resp = self
            .http
            .post(format!("{}/v1/workflows", self.base))
            .header(reqwest::header::CONTENT_TYPE, "application/yaml")
            .body(yaml.to_string())
            .send()
            .await
            .map_err(|e| transport(&e))?;
        if resp.status().as_u16() == 409 {
            let resp = self
                .http
                .get(format!("{}/v1/workflows/{id}", self.base))
                .send()
                .await
                .map_err(|e| transport(&e))?;
            return expect_status(resp, &[200]).await.map(|_| false);
        }
        expect_status(resp, &[201]).await.map(|_| true)
    }

    /// `POST /v1/executions` (with `wait_ms` unless ack): the run as the server answers it
    /// (202).
    pub async fn start(&self, workflow_id: &str, inputs: Value) -> Result<Value, CallError> {
        let body = self.start_body(workflow_id, inputs);
        let resp = self
            .http
            .post(format!("{}/v1/executions", self.base))
            .json(&body)
            .send()
            .await
            .map_err(|e| transport(&e))?;
        expect_status(resp, &[202, 200]).await
    }

    /// `POST /v1/executions/{id}/resume` with a form's `inputs` (and `wait_ms` unless ack).
    pub async fn resume_form(
        &self,
        run_id: &str,
        token: &str,
        inputs: Value,
    ) -> Result<Value, CallError> {
        self.resume(run_id, self.resume_form_body(token, inputs))
            .await
    }

    /// `POST /v1/executions/{id}/resume` with one approver's decision (and `wait_ms` unless
    /// ack).
    pub async fn resume_approval(
        &self,
        run_id: &str,
        token: &str,
        step_id: &str,
        approved: bool,
        comment: &str,
    ) -> Result<Value, CallError> {
        self.resume(
            run_id,
            self.resume_approval_body(token, step_id, approved, comment),
        )
        .await
    }

    async fn resume(&self, run_id: &str, body: Value) -> Result<Value, CallError> {
        let resp = self
            .http
            .post(format!("{}/v1/executions/{run_id}/resume", self.base))
            .json(&body)
            .send()
            .await
            .map_err(|e| transport(&e))?;
        expect_status(resp, &[200]).await
    }

    /// `GET /v1/executions/{id}/approvals`: the approvers of the approval the run waits on,
    /// each with their own resume token.
    pub async fn approvals(&self, run_id: &str) -> Result<Value, CallError> {
        let resp = self
            .http
            .get(format!("{}/v1/executions/{run_id}/approvals", self.base))
            .send()
            .await
            .map_err(|e| transport(&e))?;
        expect_status(resp, &[200]).await
    }

    /// `GET /v1/executions/{id}?wait_ms=…`.
    pub async fn get(&self, run_id: &str, wait_ms: u64) -> Result<Value, CallError> {
        let resp = self
            .http
            .get(format!(
                "{}/v1/executions/{run_id}?wait_ms={wait_ms}",
                self.base
            ))
            .send()
            .await
            .map_err(|e| transport(&e))?;
        expect_status(resp, &[200]).await
    }

    /// Polls (with the full `--wait-ms` per read, whatever `--calls` is) until the run has
    /// settled (`waiting` or terminal), for at most `limit`. A run answered still `queued` or
    /// `running` (an ack, or a `wait_ms` that ran out) is read again; one that has not settled
    /// within `limit` is an error.
    pub async fn settle(&self, run: Value, limit: Duration) -> Result<Value, CallError> {
        let started = Instant::now();
        let mut run = run;
        loop {
            let status = status(&run).unwrap_or("");
            if !matches!(status, "queued" | "running") {
                return Ok(run);
            }
            let left = limit.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Err(CallError::unexpected(
                    "run not settled",
                    format!("still {status} after {} ms", limit.as_millis()),
                ));
            }
            let id = run_id(&run)
                .ok_or_else(|| CallError::unexpected("no run id", "the run object has no `id`"))?
                .to_string();
            run = self.get(&id, poll_wait_ms(left, self.wait_ms)).await?;
        }
    }
}

/// The `wait_ms` of one `GET` while settling: `wait_ms` (at least 1), but no more than the
/// time `left`.
fn poll_wait_ms(left: Duration, wait_ms: u64) -> u64 {
    u64::try_from(left.as_millis())
        .unwrap_or(u64::MAX)
        .min(wait_ms.max(1))
}

/// `body` with `wait_ms` added when there is one.
fn with_wait(mut body: Value, wait_ms: Option<u64>) -> Value {
    if let (Some(ms), Some(map)) = (wait_ms, body.as_object_mut()) {
        map.insert("wait_ms".into(), json!(ms));
    }
    body
}

async fn expect_status(resp: reqwest::Response, ok: &[u16]) -> Result<Value, CallError> {
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.map_err(|e| transport(&e))?;
    if !ok.contains(&status) {
        return Err(CallError::Http {
            status,
            detail: problem_detail(&bytes),
        });
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| CallError::unexpected("response not JSON", format!("status {status}: {e}")))
}

/// The `detail` of a problem document, else the first 200 characters of the body.
pub fn problem_detail(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<Value>(body)
        && let Some(d) = v.get("detail").and_then(Value::as_str)
    {
        return d.to_string();
    }
    String::from_utf8_lossy(body).chars().take(200).collect()
}

/// The run's `id`.
pub fn run_id(run: &Value) -> Option<&str> {
    run.get("id").and_then(Value::as_str)
}

/// The run's `status`.
pub fn status(run: &Value) -> Option<&str> {
    run.get("status").and_then(Value::as_str)
}

/// What the run waits on (`form`, `approval`), when it is waiting.
pub fn waiting_kind(run: &Value) -> Option<&str> {
    run.get("waiting")?.get("kind").and_then(Value::as_str)
}

/// The step the run waits on, when it is waiting.
pub fn waiting_step(run: &Value) -> Option<&str> {
    run.get("waiting")
        .and_then(|w| w.get("step_id"))
        .and_then(Value::as_str)
        .or_else(|| run.get("current_step").and_then(Value::as_str))
}

/// The run's own `resume_token` (the one a form wait is resumed with).
pub fn form_token(run: &Value) -> Option<&str> {
    run.get("resume_token").and_then(Value::as_str)
}

/// An approver's token from a run object that carries `approver_tokens` (servers before
/// `GET /v1/executions/{id}/approvals`): the first approver who has not decided yet, with the
/// step waited on.
pub fn approver_token(run: &Value) -> Option<(&str, &str)> {
    let step = waiting_step(run)?;
    first_undecided(run.get("approver_tokens")?).map(|token| (token, step))
}

/// An approver's token from a `GET /v1/executions/{id}/approvals` answer
/// (`{step_id, min_approvals, approvers: [{approver, resume_token, decided}]}`): the first
/// approver who has not decided yet, with the step.
pub fn approver_token_from_approvals(answer: &Value) -> Option<(&str, &str)> {
    let step = answer.get("step_id").and_then(Value::as_str)?;
    first_undecided(answer.get("approvers")?).map(|token| (token, step))
}

fn first_undecided(list: &Value) -> Option<&str> {
    list.as_array()?
        .iter()
        .filter(|t| !t.get("decided").and_then(Value::as_bool).unwrap_or(false))
        .find_map(|t| t.get("resume_token").and_then(Value::as_str))
}

/// Checks that the run is `waiting` on a wait of `kind`; the error names what it is instead.
pub fn expect_waiting<'a>(run: &'a Value, kind: &str) -> Result<&'a Value, CallError> {
    match (status(run), waiting_kind(run)) {
        (Some("waiting"), Some(k)) if k == kind => Ok(run),
        (Some("waiting"), other) => Err(CallError::unexpected(
            format!("run waiting on {}", other.unwrap_or("?")),
            format!("expected a {kind} wait: {}", brief(run)),
        )),
        (other, _) => Err(not_there(run, other, &format!("waiting on a {kind}"))),
    }
}

/// Checks that the run is `completed`; the error names what it is instead.
pub fn expect_completed(run: &Value) -> Result<&Value, CallError> {
    match status(run) {
        Some("completed") => Ok(run),
        other => Err(not_there(run, other, "completed")),
    }
}

fn not_there(run: &Value, status: Option<&str>, expected: &str) -> CallError {
    CallError::unexpected(
        format!("run {}", status.unwrap_or("without status")),
        format!("expected {expected}: {}", brief(run)),
    )
}

/// A one-line description of a run for error samples: status, step and error.
fn brief(run: &Value) -> String {
    let mut s = format!(
        "id={} status={}",
        run_id(run).unwrap_or("?"),
        status(run).unwrap_or("?")
    );
    if let Some(step) = run.get("current_step").and_then(Value::as_str) {
        s.push_str(&format!(" step={step}"));
    }
    if let Some(err) = run.get("error").filter(|e| !e.is_null()) {
        let text = err.to_string();
        s.push_str(&format!(
            " error={}",
            text.chars().take(160).collect::<String>()
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn approval_wait() -> Value {
        json!({
            "id": "r1", "status": "waiting", "current_step": "sign_off",
            "waiting": {"step_id": "sign_off", "kind": "approval", "approvers": ["a@x", "b@x"]},
            "resume_token": "run-token",
            "approver_tokens": [
                {"approver": "a@x", "resume_token": "tok-a", "decided": true},
                {"approver": "b@x", "resume_token": "tok-b", "decided": false}
            ]
        })
    }

    #[test]
    fn picks_the_first_undecided_approvers_token_and_the_step() {
        assert_eq!(
            approver_token(&approval_wait()),
            Some(("tok-b", "sign_off"))
        );
    }

    #[test]
    fn no_approver_token_when_all_decided_or_absent_or_malformed() {
        let mut run = approval_wait();
        run["approver_tokens"][1]["decided"] = json!(true);
        assert_eq!(approver_token(&run), None);
        assert_eq!(approver_token(&json!({"status": "waiting"})), None);
        assert_eq!(
            approver_token(&json!({"waiting": {"step_id": "s"}, "approver_tokens": "nope"})),
            None
        );
        assert_eq!(approver_token(&json!(null)), None);
    }

    #[test]
    fn picks_an_undecided_approver_from_the_approvals_answer() {
        let answer = json!({
            "step_id": "review", "min_approvals": 2,
            "approvers": [
                {"approver": "editor@x", "resume_token": "tok-e", "decided": true},
                {"approver": "max@x", "resume_token": "tok-m", "decided": false}
            ]
        });
        assert_eq!(
            approver_token_from_approvals(&answer),
            Some(("tok-m", "review"))
        );
        assert_eq!(
            approver_token_from_approvals(&json!({"approvers": []})),
            None
        );
        assert_eq!(
            approver_token_from_approvals(&json!({"step_id": "s", "approvers": []})),
            None
        );
        assert_eq!(
            approver_token_from_approvals(&json!({"step_id": "s", "approvers": {"a": 1}})),
            None
        );
    }

    #[test]
    fn step_falls_back_to_current_step() {
        let run = json!({"current_step": "s9", "approver_tokens": [{"resume_token": "t"}]});
        assert_eq!(approver_token(&run), Some(("t", "s9")));
    }

    #[test]
    fn picks_the_form_token_and_fields() {
        let run = json!({"id": "r2", "status": "waiting", "resume_token": "eyJ",
                         "waiting": {"step_id": "brief", "kind": "form"}});
        assert_eq!(form_token(&run), Some("eyJ"));
        assert_eq!(run_id(&run), Some("r2"));
        assert_eq!(waiting_kind(&run), Some("form"));
        assert_eq!(form_token(&json!({"resume_token": 5})), None);
        assert!(expect_waiting(&run, "form").is_ok());
    }

    #[test]
    fn unexpected_states_are_named_by_what_was_seen() {
        let failed = json!({"id": "r", "status": "failed", "current_step": "s2",
                            "error": {"code": "step.failed", "message": "boom"}});
        let e = expect_completed(&failed).expect_err("failed is not completed");
        assert_eq!(e.kind(), "run failed");
        assert!(e.describe().contains("boom"), "{}", e.describe());

        let approval = approval_wait();
        let e = expect_waiting(&approval, "form").expect_err("approval is not a form");
        assert_eq!(e.kind(), "run waiting on approval");

        let e = expect_waiting(&json!({}), "form").expect_err("no status");
        assert_eq!(e.kind(), "run without status");
    }

    #[test]
    fn error_kinds_for_counting() {
        let http = CallError::Http {
            status: 409,
            detail: "the token was already used".into(),
        };
        assert_eq!(http.kind(), "http 409");
        assert_eq!(http.to_string(), "http 409: the token was already used");
        let t = CallError::Transport {
            kind: "timeout",
            detail: "x".into(),
        };
        assert_eq!(t.kind(), "transport timeout");
    }

    fn api(calls: Calls) -> Api {
        Api::new("http://127.0.0.1:9", 4, 30_000, calls).expect("a client")
    }

    #[test]
    fn settled_calls_send_wait_ms_with_starts_and_resumes() {
        let a = api(Calls::Settled);
        assert_eq!(
            a.start_body("w", json!({"bench": 1})),
            json!({"workflow_id": "w", "inputs": {"bench": 1}, "wait_ms": 30_000})
        );
        assert_eq!(
            a.resume_form_body("tok", json!({"value": 2})),
            json!({"resume_token": "tok", "inputs": {"value": 2}, "wait_ms": 30_000})
        );
        assert_eq!(
            a.resume_approval_body("tok-a", "review", true, "ok"),
            json!({
                "resume_token": "tok-a",
                "approvals": [{"step_id": "review", "approved": true, "comment": "ok"}],
                "wait_ms": 30_000
            })
        );
    }

    #[test]
    fn ack_calls_send_no_wait_ms() {
        let a = api(Calls::Ack);
        assert_eq!(
            a.start_body("w", json!({"bench": 1})),
            json!({"workflow_id": "w", "inputs": {"bench": 1}})
        );
        assert_eq!(
            a.resume_form_body("tok", json!({"value": 2})),
            json!({"resume_token": "tok", "inputs": {"value": 2}})
        );
        let approval = a.resume_approval_body("tok-a", "review", false, "no");
        assert_eq!(
            approval,
            json!({
                "resume_token": "tok-a",
                "approvals": [{"step_id": "review", "approved": false, "comment": "no"}]
            })
        );
        assert!(approval.get("wait_ms").is_none());
    }

    #[test]
    fn settling_reads_wait_the_full_wait_ms_unless_less_time_is_left() {
        let limit = Duration::from_secs(120);
        assert_eq!(poll_wait_ms(limit, 30_000), 30_000);
        assert_eq!(poll_wait_ms(Duration::from_millis(250), 30_000), 250);
        assert_eq!(poll_wait_ms(limit, 0), 1);
        assert_eq!(Calls::default(), Calls::Settled);
        assert_eq!(
            (Calls::Settled.as_str(), Calls::Ack.as_str()),
            ("settled", "ack")
        );
    }

    #[test]
    fn problem_detail_reads_problem_documents_and_falls_back_to_the_body() {
        let body = br#"{"type":"urn:scaff:problem:conflict","status":409,"detail":"nope"}"#;
        assert_eq!(problem_detail(body), "nope");
        assert_eq!(problem_detail(b"plain text"), "plain text");
        assert_eq!(problem_detail(&[b'x'; 500]).len(), 200);
        assert_eq!(problem_detail(&[0xff, 0xfe]), "\u{fffd}\u{fffd}");
    }
}
