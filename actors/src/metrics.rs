//! Prometheus metrics of one server: runs by outcome, step and checkpoint latencies, AI calls
//! and tokens, live actors, waiting runs, and HTTP requests (rate, errors, duration) by route.
//!
//! A [`Metrics`] is a registry of its own, never a process-wide static: each server (and each
//! test app) counts only what happened to it. The run actors record what every persisted
//! checkpoint carries ([`Metrics::record_checkpoint`]), so a count moves exactly when the store
//! has the fact it counts; the HTTP layer records requests ([`Metrics::record_http`]); the
//! scrape handler sets the gauges ([`Metrics::set_actors_live`], [`Metrics::set_runs_waiting`])
//! and renders the text ([`Metrics::encode`]).

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use scaff_core::run::events;
use scaff_core::store::Checkpoint;
use serde_json::Value as Json;

/// The content type of [`Metrics::encode`]'s text: the OpenMetrics exposition format, which
/// Prometheus negotiates and parses natively.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Step durations, in seconds: from a millisecond (pure steps) through model and HTTP calls
/// to the days a form or an approval may wait for a person.
const STEP_BUCKETS: [f64; 20] = [
    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
    3600.0, 14_400.0, 86_400.0, 259_200.0, 604_800.0,
];

/// Checkpoint (one fenced store transaction, retries included) durations, in seconds.
const CHECKPOINT_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// HTTP request durations (until the response head), in seconds.
/// Checkpoints per commit (group commit): powers of two up to the largest useful batch.
const BATCH_BUCKETS: [f64; 11] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];
const HTTP_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// What the template label says for a prompt written inline in the workflow (as `/v1/usage`).
const INLINE_TEMPLATE: &str = "(inline)";
/// What the provider or model label says when the event does not name one (as `/v1/usage`).
const UNKNOWN: &str = "(unknown)";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkflowLabels {
    workflow_id: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StepLabels {
    step_type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AiLabels {
    provider: String,
    model: String,
    template_id: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AiTokenLabels {
    provider: String,
    model: String,
    template_id: String,
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: &'static str,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpRouteLabels {
    method: &'static str,
    route: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn step_histogram() -> Histogram {
    Histogram::new(STEP_BUCKETS)
}

fn http_histogram() -> Histogram {
    Histogram::new(HTTP_BUCKETS)
}

/// One server's metrics: the registry and the families recorded into it. Cheap to share
/// behind an `Arc`; every recording method takes `&self`.
pub struct Metrics {
    registry: Registry,
    runs_started: Family<WorkflowLabels, Counter>,
    runs_completed: Family<WorkflowLabels, Counter>,
    runs_failed: Family<WorkflowLabels, Counter>,
    runs_canceled: Family<WorkflowLabels, Counter>,
    step_duration: HistogramFamily<StepLabels>,
    checkpoint_duration: Histogram,
    checkpoint_batch: Histogram,
    actors_live: Gauge,
    runs_waiting: Gauge,
    ai_calls: Family<AiLabels, Counter>,
    ai_tokens: Family<AiTokenLabels, Counter>,
    http_requests: Family<HttpLabels, Counter>,
    http_duration: HistogramFamily<HttpRouteLabels>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every family registered and nothing counted yet.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let runs_started = Family::<WorkflowLabels, Counter>::default();
        let runs_completed = Family::<WorkflowLabels, Counter>::default();
        let runs_failed = Family::<WorkflowLabels, Counter>::default();
        let runs_canceled = Family::<WorkflowLabels, Counter>::default();
        let step_duration: HistogramFamily<StepLabels> =
            Family::new_with_constructor(step_histogram);
        let checkpoint_duration = Histogram::new(CHECKPOINT_BUCKETS);
        let checkpoint_batch = Histogram::new(BATCH_BUCKETS);
        let actors_live = Gauge::default();
        let runs_waiting = Gauge::default();
        let ai_calls = Family::<AiLabels, Counter>::default();
        let ai_tokens = Family::<AiTokenLabels, Counter>::default();
        let http_requests = Family::<HttpLabels, Counter>::default();
        let http_duration: HistogramFamily<HttpRouteLabels> =
            Family::new_with_constructor(http_histogram);

        registry.register(
            "scaff_runs_started",
            "Runs that began executing, by workflow",
            runs_started.clone(),
        );
        registry.register(
            "scaff_runs_completed",
            "Runs that completed, by workflow",
            runs_completed.clone(),
        );
        registry.register(
            "scaff_runs_failed",
            "Runs that failed, by workflow",
            runs_failed.clone(),
        );
        registry.register(
            "scaff_runs_canceled",
            "Runs that were canceled, by workflow",
            runs_canceled.clone(),
        );
        registry.register_with_unit(
            "scaff_step_duration",
            "Step executions from start to end (waits for people included), by step type",
            Unit::Seconds,
            step_duration.clone(),
        );
        registry.register_with_unit(
            "scaff_checkpoint_duration",
            "Checkpoint writes, store retries included",
            Unit::Seconds,
            checkpoint_duration.clone(),
        );
        registry.register(
            "scaff_checkpoint_batch_size",
            "Checkpoints written per commit by the group-commit batcher",
            checkpoint_batch.clone(),
        );
        registry.register(
            "scaff_actors_live",
            "Run actors alive in this process (runs executing now)",
            actors_live.clone(),
        );
        registry.register(
            "scaff_runs_waiting",
            "Runs waiting for a person (passivated: no actor holds them), in the store",
            runs_waiting.clone(),
        );
        registry.register(
            "scaff_ai_calls",
            "Model calls of ai_generate steps, by provider, model and template",
            ai_calls.clone(),
        );
        registry.register(
            "scaff_ai_tokens",
            "Model tokens of ai_generate steps, by provider, model, template and direction",
            ai_tokens.clone(),
        );
        registry.register(
            "scaff_http_requests",
            "HTTP requests served, by method, route template and status",
            http_requests.clone(),
        );
        registry.register_with_unit(
            "scaff_http_request_duration",
            "HTTP request durations until the response head, by method and route template",
            Unit::Seconds,
            http_duration.clone(),
        );
        Self {
            registry,
            runs_started,
            runs_completed,
            runs_failed,
            runs_canceled,
            step_duration,
            checkpoint_duration,
            checkpoint_batch,
            actors_live,
            runs_waiting,
            ai_calls,
            ai_tokens,
            http_requests,
            http_duration,
        }
    }

    /// Counts what a checkpoint of a run of `workflow_id` carried, once it is persisted: run
    /// lifecycle events (started, completed, failed, canceled), step durations, AI calls and
    /// tokens. Call it only after the store accepted the checkpoint, so each fact counts once.
    pub fn record_checkpoint(&self, workflow_id: &str, cp: &Checkpoint) {
        let workflow = || WorkflowLabels {
            workflow_id: workflow_id.to_string(),
        };
        for event in &cp.events {
            match event.kind.as_str() {
                events::RUN_STARTED => {
                    self.runs_started.get_or_create(&workflow()).inc();
                }
                events::RUN_COMPLETED => {
                    self.runs_completed.get_or_create(&workflow()).inc();
                }
                events::RUN_FAILED => {
                    self.runs_failed.get_or_create(&workflow()).inc();
                }
                events::RUN_CANCELED => {
                    self.runs_canceled.get_or_create(&workflow()).inc();
                }
                crate::ai_step::events::RESPONSE => self.record_ai_response(&event.data),
                _ => {}
            }
        }
        for step in &cp.steps {
            let seconds = (step.finished_at - step.started_at)
                .to_std()
                .unwrap_or_default()
                .as_secs_f64();
            self.step_duration
                .get_or_create(&StepLabels {
                    step_type: step.step_type.clone(),
                })
                .observe(seconds);
        }
    }

    fn record_ai_response(&self, data: &Json) {
        let text = |key: &str, default: &str| {
            data.get(key)
                .and_then(Json::as_str)
                .unwrap_or(default)
                .to_string()
        };
        let tokens = |key: &str| data.get(key).and_then(Json::as_u64).unwrap_or(0);
        let labels = AiLabels {
            provider: text("provider", UNKNOWN),
            model: text("model", UNKNOWN),
            template_id: text("template_id", INLINE_TEMPLATE),
        };
        self.ai_calls.get_or_create(&labels).inc();
        for (direction, key) in [("prompt", "tokens_prompt"), ("output", "tokens_output")] {
            self.ai_tokens
                .get_or_create(&AiTokenLabels {
                    provider: labels.provider.clone(),
                    model: labels.model.clone(),
                    template_id: labels.template_id.clone(),
                    direction,
                })
                .inc_by(tokens(key));
        }
    }

    /// Observes how long a checkpoint write took (retries included).
    pub fn observe_checkpoint(&self, took: Duration) {
        self.checkpoint_duration.observe(took.as_secs_f64());
    }

    /// Observes how many checkpoints one group commit wrote.
    pub fn observe_checkpoint_batch(&self, size: usize) {
        self.checkpoint_batch.observe(size as f64);
    }

    /// Counts one HTTP request: its method, its route *template* (`/v1/executions/{id}`, or
    /// `unmatched` — never the raw path, so ids do not multiply the series), the status it got
    /// and how long it took to answer.
    pub fn record_http(&self, method: &str, route: &str, status: u16, took: Duration) {
        let method = http_method(method);
        self.http_requests
            .get_or_create(&HttpLabels {
                method,
                route: route.to_string(),
                status,
            })
            .inc();
        self.http_duration
            .get_or_create(&HttpRouteLabels {
                method,
                route: route.to_string(),
            })
            .observe(took.as_secs_f64());
    }

    /// Sets the number of run actors alive now.
    pub fn set_actors_live(&self, n: usize) {
        self.actors_live.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Sets the number of runs waiting (passivated) in the store.
    pub fn set_runs_waiting(&self, n: u64) {
        self.runs_waiting.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Renders every series in the OpenMetrics text format ([`CONTENT_TYPE`]).
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// The method as a label: the standard ones by name, anything else as `OTHER`, so a client
/// cannot add series by inventing methods.
fn http_method(method: &str) -> &'static str {
    const KNOWN: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
    ];
    KNOWN.into_iter().find(|m| *m == method).unwrap_or("OTHER")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use scaff_core::run::{Context, EventRecord, RunStatus, StepRecord, StepStatus};
    use serde_json::json;
    use uuid::Uuid;

    fn event(kind: &str, data: Json) -> EventRecord {
        EventRecord {
            seq: 1,
            kind: kind.into(),
            step_id: None,
            actor: None,
            data,
            created_at: Utc::now(),
        }
    }

    fn checkpoint(events: Vec<EventRecord>, steps: Vec<StepRecord>) -> Checkpoint {
        Checkpoint {
            run_id: Uuid::nil(),
            expected_version: 0,
            status: RunStatus::Running,
            current_step: None,
            context: Context::default(),
            step_state: None,
            waiting: None,
            error: None,
            steps,
            events,
            step_seq: 0,
            event_seq: 0,
            finished_at: None,
            at: Utc::now(),
            timers: Vec::new(),
            messages: Vec::new(),
            wake_at: None,
        }
    }

    #[test]
    fn a_checkpoint_counts_lifecycle_events_steps_and_ai_usage() {
        let m = Metrics::new();
        let t0 = Utc
            .timestamp_opt(1_800_000_000, 0)
            .single()
            .unwrap_or_default();
        let step = StepRecord {
            seq: 1,
            step_id: "s".into(),
            step_type: "set".into(),
            attempt: 1,
            status: StepStatus::Completed,
            input: None,
            output: None,
            error: None,
            started_at: t0,
            finished_at: t0 + chrono::Duration::milliseconds(20),
        };
        let cp = checkpoint(
            vec![
                event(events::RUN_STARTED, json!({})),
                event(
                    "ai.response",
                    json!({"provider": "mock", "model": "m1", "template_id": null,
                           "tokens_prompt": 7, "tokens_output": 3}),
                ),
                event(events::RUN_COMPLETED, json!({})),
            ],
            vec![step],
        );
        m.record_checkpoint("wf", &cp);
        m.observe_checkpoint(Duration::from_millis(3));
        m.record_http("GET", "/v1/executions/{id}", 200, Duration::from_millis(1));
        m.record_http("BREW", "unmatched", 404, Duration::from_millis(1));
        m.set_actors_live(2);
        let text = m.encode().unwrap_or_default();
        for line in [
            "scaff_runs_started_total{workflow_id=\"wf\"} 1",
            "scaff_runs_completed_total{workflow_id=\"wf\"} 1",
            "scaff_step_duration_seconds_count{step_type=\"set\"} 1",
            "scaff_checkpoint_duration_seconds_count 1",
            "scaff_actors_live 2",
            "scaff_ai_calls_total{provider=\"mock\",model=\"m1\",template_id=\"(inline)\"} 1",
            "scaff_ai_tokens_total{provider=\"mock\",model=\"m1\",template_id=\"(inline)\",direction=\"prompt\"} 7",
            "scaff_ai_tokens_total{provider=\"mock\",model=\"m1\",template_id=\"(inline)\",direction=\"output\"} 3",
            "scaff_http_requests_total{method=\"GET\",route=\"/v1/executions/{id}\",status=\"200\"} 1",
            "scaff_http_requests_total{method=\"OTHER\",route=\"unmatched\",status=\"404\"} 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
        assert!(text.ends_with("# EOF\n"));
    }
}
