//! `GET /metrics` on both stores: runs counted by outcome and workflow, step and checkpoint
//! histograms, AI calls and tokens, the actor and waiting-run gauges, and HTTP requests by
//! route template (never by raw path). Each test has an app (and so a registry) of its own.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::on_both_stores;
use crate::support::{Reply, TestApp, TestDb, wait_for};

/// set → ai_generate → conditional → set; fails at the conditional when `inputs.score` is
/// missing.
const METERED: &str = r#"
id: metered
name: Metered
start_step: label
steps:
  - id: label
    type: set
    config: {values: {label: "'x'"}}
    next: write
  - id: write
    type: ai_generate
    config:
      prompt: "Summarize {{ inputs.topic }} as JSON."
      output_key: summary
      mock: {mode: success}
      json_schema:
        type: object
        properties:
          headline: {type: string, minLength: 5}
          risk: {type: string, enum: [low, medium, high]}
        required: [headline, risk]
    next: route
  - id: route
    type: conditional
    config: {when: "inputs.score > 5", then: high, else: low}
  - {id: high, type: set, config: {values: {lane: "'high'"}}}
  - {id: low, type: set, config: {values: {lane: "'low'"}}}
"#;

/// A form first: the run waits (passivated) until canceled.
const HELD: &str = r#"
id: held
name: Held
start_step: collect
steps:
  - id: collect
    type: form
    config:
      fields:
        - {key: topic, type: string, required: true}
"#;

/// One sample of the exposition: metric name, labels, value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the OpenMetrics text (comments skipped). Label values may hold `{`, `}` and `,`
/// (route templates do), so they are read as quoted strings.
fn parse(text: &str) -> Vec<Sample> {
    let mut samples = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (series, value) = line
            .rsplit_once(' ')
            .expect("a sample line ends with its value");
        let value: f64 = value.parse().expect("a numeric value");
        let (name, labels) = match series.split_once('{') {
            None => (series.to_string(), BTreeMap::new()),
            Some((name, rest)) => (name.to_string(), parse_labels(rest)),
        };
        samples.push(Sample {
            name,
            labels,
            value,
        });
    }
    samples
}

/// `key="value",key="value"}` → the pairs (escapes `\"`, `\\` and `\n` undone).
fn parse_labels(mut rest: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    loop {
        rest = rest.trim_start_matches(',');
        if rest.starts_with('}') || rest.is_empty() {
            return labels;
        }
        let (key, after) = rest.split_once("=\"").expect("key=\"value\"");
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next().expect("a closing quote") {
                (_, '\\') => match chars.next().expect("an escaped character").1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (i, '"') => break i,
                (_, c) => value.push(c),
            }
        };
        labels.insert(key.to_string(), value);
        rest = &after[end + 1..];
    }
}

/// The value of the sample named `name` whose labels include `want`, if there is one.
fn value(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && want
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).is_some_and(|x| x == v))
        })
        .map(|s| s.value)
}

async fn scrape(app: &TestApp) -> (Reply, Vec<Sample>) {
    let reply = app.get("/metrics").await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let samples = parse(&reply.text);
    (reply, samples)
}

async fn start(app: &TestApp, workflow: &str, inputs: Value) -> Reply {
    let reply = app
        .post(
            "/v1/executions",
            "application/json",
            json!({"workflow_id": workflow, "inputs": inputs, "wait_ms": 10000}).to_string(),
        )
        .await;
    assert_eq!(reply.status, 202, "{}", reply.text);
    reply
}

/// Scrapes until `check` holds for the samples (the actor counts a checkpoint right after the
/// store has it, which may be a moment after a client sees the run settle); the last scrape.
async fn scrape_until(app: &TestApp, what: &str, check: impl Fn(&[Sample]) -> bool) -> Vec<Sample> {
    let found = wait_for(Duration::from_secs(10), || async {
        let (_, samples) = scrape(app).await;
        check(&samples).then_some(samples)
    })
    .await;
    match found {
        Some(samples) => samples,
        None => {
            let (reply, _) = scrape(app).await;
            panic!("{what} never held; last scrape:\n{}", reply.text)
        }
    }
}

async fn runs_steps_ai_and_http_are_counted(db: &TestDb) {
    let app = TestApp::new(db).await;
    for src in [METERED, HELD] {
        let reply = app.post_yaml("/v1/workflows", src).await;
        assert_eq!(reply.status, 201, "{}", reply.text);
    }

    let done = start(&app, "metered", json!({"topic": "rust", "score": 7})).await;
    assert_eq!(done.json["status"], "completed", "{}", done.text);
    let failed = start(&app, "metered", json!({"topic": "rust"})).await;
    assert_eq!(failed.json["status"], "failed", "{}", failed.text);
    let held = start(&app, "held", json!({})).await;
    assert_eq!(held.json["status"], "waiting", "{}", held.text);
    let held_id = held.json["id"].as_str().expect("id").to_string();
    let read = app.get(&format!("/v1/executions/{held_id}")).await;
    assert_eq!(read.status, 200, "{}", read.text);

    // The waiting run is passivated: the store counts it, no actor holds it.
    let (reply, _) = scrape(&app).await;
    assert!(
        reply
            .content_type()
            .starts_with("application/openmetrics-text"),
        "{}",
        reply.content_type()
    );
    assert!(reply.text.ends_with("# EOF\n"));
    scrape_until(&app, "one waiting run, no live actor", |s| {
        value(s, "scaff_runs_waiting", &[]) == Some(1.0)
            && value(s, "scaff_actors_live", &[]) == Some(0.0)
    })
    .await;

    let canceled = app
        .post(
            &format!("/v1/executions/{held_id}/cancel"),
            "application/json",
            json!({"reason": "metrics test"}).to_string(),
        )
        .await;
    assert_eq!(canceled.json["status"], "canceled", "{}", canceled.text);

    let metered = [("workflow_id", "metered")];
    let held_wf = [("workflow_id", "held")];
    let s = scrape_until(&app, "every run counted", |s| {
        value(s, "scaff_runs_completed_total", &metered) == Some(1.0)
            && value(s, "scaff_runs_failed_total", &metered) == Some(1.0)
            && value(s, "scaff_runs_canceled_total", &held_wf) == Some(1.0)
            && value(s, "scaff_runs_waiting", &[]) == Some(0.0)
    })
    .await;

    // Runs by outcome and workflow: exactly what happened, nothing more.
    assert_eq!(value(&s, "scaff_runs_started_total", &metered), Some(2.0));
    assert_eq!(value(&s, "scaff_runs_started_total", &held_wf), Some(1.0));
    assert_eq!(value(&s, "scaff_runs_completed_total", &held_wf), None);
    assert_eq!(value(&s, "scaff_runs_failed_total", &held_wf), None);
    assert_eq!(value(&s, "scaff_runs_canceled_total", &metered), None);

    // Steps by type: `label` in both runs and `high` in the completed one.
    let set = [("step_type", "set")];
    assert_eq!(
        value(&s, "scaff_step_duration_seconds_count", &set),
        Some(3.0)
    );
    assert_eq!(
        value(
            &s,
            "scaff_step_duration_seconds_bucket",
            &[("step_type", "set"), ("le", "+Inf")]
        ),
        Some(3.0)
    );
    assert_eq!(
        value(
            &s,
            "scaff_step_duration_seconds_count",
            &[("step_type", "conditional")]
        ),
        Some(2.0)
    );
    assert_eq!(
        value(
            &s,
            "scaff_step_duration_seconds_count",
            &[("step_type", "ai_generate")]
        ),
        Some(2.0)
    );

    // Checkpoints were timed.
    let checkpoints = value(&s, "scaff_checkpoint_duration_seconds_count", &[]).unwrap_or(0.0);
    assert!(checkpoints >= 3.0, "{checkpoints} checkpoints");
    assert!(value(&s, "scaff_checkpoint_duration_seconds_sum", &[]).is_some());

    // AI: one successful call per run that reached the step, with its tokens.
    let calls: f64 = s
        .iter()
        .filter(|x| x.name == "scaff_ai_calls_total")
        .inspect(|x| {
            assert_eq!(
                x.labels.get("template_id").map(String::as_str),
                Some("(inline)")
            );
            assert!(x.labels.contains_key("provider") && x.labels.contains_key("model"));
        })
        .map(|x| x.value)
        .sum();
    assert_eq!(calls, 2.0);
    for direction in ["prompt", "output"] {
        let tokens: f64 = s
            .iter()
            .filter(|x| {
                x.name == "scaff_ai_tokens_total"
                    && x.labels.get("direction").is_some_and(|d| d == direction)
            })
            .map(|x| x.value)
            .sum();
        assert!(tokens > 0.0, "no {direction} tokens");
    }

    // Gauges are always present.
    assert!(value(&s, "scaff_actors_live", &[]).is_some());

    // HTTP by route template: the starts under `/v1/executions`, the read under its template,
    // and no series names a run id.
    let starts = [
        ("method", "POST"),
        ("route", "/v1/executions"),
        ("status", "202"),
    ];
    assert_eq!(value(&s, "scaff_http_requests_total", &starts), Some(3.0));
    assert_eq!(
        value(
            &s,
            "scaff_http_requests_total",
            &[
                ("method", "GET"),
                ("route", "/v1/executions/{id}"),
                ("status", "200")
            ]
        ),
        Some(1.0)
    );
    assert!(
        value(
            &s,
            "scaff_http_request_duration_seconds_count",
            &[("method", "POST"), ("route", "/v1/executions")]
        )
        .is_some_and(|n| n >= 3.0)
    );
    for id in [held_id.as_str(), done.json["id"].as_str().expect("id")] {
        assert!(!s.iter().any(|x| x.labels.values().any(|v| v.contains(id))));
    }
}

async fn unmatched_paths_share_one_series(db: &TestDb) {
    let app = TestApp::new(db).await;
    for n in 0..3 {
        let reply = app.get(&format!("/no/such/path/{n}")).await;
        assert_eq!(reply.status, 404);
    }
    let (_, s) = scrape(&app).await;
    assert_eq!(
        value(
            &s,
            "scaff_http_requests_total",
            &[("method", "GET"), ("route", "unmatched"), ("status", "404")]
        ),
        Some(3.0)
    );
    assert!(
        !s.iter()
            .any(|x| x.labels.values().any(|v| v.contains("/no/such")))
    );
    // A fresh app counts nothing of another's runs: the registry is per app, not global.
    assert!(!s.iter().any(|x| x.name == "scaff_runs_started_total"));
}

on_both_stores!(
    runs_steps_ai_and_http_are_counted,
    unmatched_paths_share_one_series
);
