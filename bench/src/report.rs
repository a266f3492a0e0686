//! Turning workload results into the JSON report (shaped like the peer harness's
//! `results/<engine>-<workload>.json`, so one script can tabulate Scaff next to the peers),
//! the Markdown tables printed on stdout, and the series drawn by `--chart`.
//!
//! Field names follow `shared/peers/README.md` (`completed_runs`, `errors`, `runs_per_s`,
//! `steps_per_s`, `run_latency_ms{p50,p95,p99,max}`, `per_step_overhead_ms`, `latency_ms{…}`
//! for W2, `rss_*_mib`, `parked`, `resume_to_complete_ms` for W3), plus `call_latency_ms`
//! (W2) and `rss_idle_mb`/`rss_parked_mb`/`rss_delta_mb` (W3, in MiB like the `_mib` fields).
//!
//! With `--calls ack` a call's figure is the acknowledgement alone and the "observed" figure
//! runs from the same instant until the run is seen settled; the tables then label each row
//! `call: … (ack)` or `observed: …`. With `--calls settled` the two are the same wait.

use serde_json::{Map, Value, json};

use crate::api::Calls;
use crate::stats::{Errors, Latency, round2, round3};
use crate::workloads::{W1_STEPS, W1Result, W2Result, W3Result};

/// Steps per W2 run (form, AI, approval).
pub const W2_STEPS: u64 = 3;
/// Steps per W3 run (form, set).
pub const W3_STEPS: u64 = 2;

/// What every report says about the setup.
#[derive(Debug, Clone, Default)]
pub struct Meta {
    /// `sqlite` or `postgres`, when known.
    pub store: Option<String>,
    /// Virtual users.
    pub concurrency: usize,
    /// Runs asked for (W3: runs to park).
    pub runs: usize,
    /// Uncounted warm-up runs.
    pub warmup: usize,
    /// `wait_ms` sent with starts and resumes (settled) and with the reads that follow a run.
    pub wait_ms: u64,
    /// What a start or resume call waited for (`--calls`).
    pub calls: Calls,
    /// Time cap of a phase, seconds.
    pub max_seconds: u64,
    /// The server's base URL.
    pub url: String,
    /// The `scaff` binary, when `all` started it.
    pub binary: Option<String>,
    /// `debug` or `release`, when known from the binary's path.
    pub build: Option<String>,
}

/// One workload's result.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// W1 chain10.
    W1(Box<W1Result>),
    /// W2 human loop.
    W2(Box<W2Result>),
    /// W3 parked.
    W3(Box<W3Result>),
}

impl Outcome {
    /// `W1`, `W2` or `W3`.
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::W1(_) => "W1",
            Outcome::W2(_) => "W2",
            Outcome::W3(_) => "W3",
        }
    }

    /// All errors of the workload.
    pub fn error_total(&self) -> u64 {
        match self {
            Outcome::W1(r) => r.errors.total(),
            Outcome::W2(r) => r.errors.total(),
            Outcome::W3(r) => r.park_errors.total() + r.resume_errors.total(),
        }
    }
}

fn per_s(n: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        round2(n as f64 / secs)
    } else {
        0.0
    }
}

fn summary(l: &Latency) -> Value {
    l.summary()
        .and_then(|s| serde_json::to_value(s).ok())
        .unwrap_or(Value::Null)
}

fn opt(x: Option<f64>) -> Value {
    x.map_or(Value::Null, |v| json!(round2(v)))
}

/// `{engine_cpu_s, engine_cpu_ms_per_run, loadavg1_start, loadavg1_end}` (the server is the
/// engine; PostgreSQL's CPU is not measured).
fn cpu_json(cpu_s: Option<f64>, runs: u64, load: (Option<f64>, Option<f64>)) -> Value {
    json!({
        "engine_cpu_s": cpu_s.map(round2),
        "engine_cpu_ms_per_run": cpu_ms_per_run(cpu_s, runs).map(round2),
        "loadavg1_start": load.0,
        "loadavg1_end": load.1,
    })
}

/// Server CPU milliseconds per run.
fn cpu_ms_per_run(cpu_s: Option<f64>, runs: u64) -> Option<f64> {
    cpu_s.filter(|_| runs > 0).map(|c| c * 1000.0 / runs as f64)
}

fn cpu_cell(cpu_s: Option<f64>, runs: u64) -> String {
    cpu_ms_per_run(cpu_s, runs).map_or("–".to_string(), |c| format!("{c:.1}"))
}

fn errors_json(out: &mut Map<String, Value>, errors: &Errors) {
    out.insert("errors".into(), json!(errors.total()));
    out.insert("errors_by_kind".into(), json!(errors.by_kind()));
    out.insert("error_samples".into(), json!(errors.samples()));
}

fn common(meta: &Meta, workload: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("engine".into(), json!("scaff"));
    m.insert("workload".into(), json!(workload));
    m.insert("store".into(), json!(meta.store));
    m.insert("concurrency".into(), json!(meta.concurrency));
    m.insert("runs".into(), json!(meta.runs));
    m.insert(
        "params".into(),
        json!({
            "runs_target": meta.runs,
            "concurrency": meta.concurrency,
            "warmup_runs": meta.warmup,
            "wait_ms": meta.wait_ms,
            "calls": meta.calls.as_str(),
            "max_seconds": meta.max_seconds,
        }),
    );
    m.insert(
        "server".into(),
        json!({"url": meta.url, "binary": meta.binary, "build": meta.build}),
    );
    m.insert(
        "machine".into(),
        json!({"host_cpus": crate::sys::cpus(), "driver": "scaff-bench (REST API, same host)"}),
    );
    m.insert(
        "finished_at_unix_s".into(),
        json!(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        ),
    );
    m
}

/// The JSON report of one workload.
pub fn to_json(meta: &Meta, outcome: &Outcome) -> Value {
    let mut m = common(meta, outcome.name());
    match outcome {
        Outcome::W1(r) => {
            let secs = r.elapsed.as_secs_f64();
            let runs_per_s = per_s(r.completed, secs);
            m.insert("completed_runs".into(), json!(r.completed));
            m.insert("attempted_runs".into(), json!(r.attempted));
            errors_json(&mut m, &r.errors);
            m.insert("elapsed_s".into(), json!(round3(secs)));
            m.insert("runs_per_s".into(), json!(runs_per_s));
            m.insert(
                "steps_per_s".into(),
                json!(per_s(r.completed * W1_STEPS, secs)),
            );
            m.insert("steps_per_run".into(), json!(W1_STEPS));
            m.insert("run_latency_ms".into(), summary(&r.run));
            m.insert("start_call_latency_ms".into(), summary(&r.start_call));
            m.insert(
                "per_step_overhead_ms".into(),
                summary(&r.run.scaled_down(W1_STEPS)),
            );
            m.insert("rss_idle_mib".into(), opt(r.rss.idle));
            m.insert("rss_peak_mib".into(), opt(r.rss.peak));
            m.insert("cpu".into(), cpu_json(r.server_cpu_s, r.completed, r.load));
        }
        Outcome::W2(r) => {
            let secs = r.elapsed.as_secs_f64();
            m.insert("completed_runs".into(), json!(r.completed));
            m.insert("attempted_runs".into(), json!(r.attempted));
            errors_json(&mut m, &r.errors);
            m.insert("elapsed_s".into(), json!(round3(secs)));
            m.insert("runs_per_s".into(), json!(per_s(r.completed, secs)));
            m.insert(
                "steps_per_s".into(),
                json!(per_s(r.completed * W2_STEPS, secs)),
            );
            m.insert("steps_per_run".into(), json!(W2_STEPS));
            m.insert("run_latency_ms".into(), summary(&r.run));
            m.insert(
                "call_latency_ms".into(),
                json!({
                    "start": summary(&r.start),
                    "resume_form": summary(&r.resume_form),
                    "get_approvals": summary(&r.get_approvers),
                    "resume_approval": summary(&r.resume_approval),
                }),
            );
            m.insert(
                "latency_ms".into(),
                json!({
                    "start_call": summary(&r.start),
                    "start_to_waiting": summary(&r.start_to_waiting),
                    "resume1_call": summary(&r.resume_form),
                    "resume1_to_waiting": summary(&r.resume_form_to_waiting),
                    "resume2_call": summary(&r.resume_approval),
                    "resume2_to_completed": summary(&r.resume_approval_to_completed),
                    "run_total": summary(&r.run),
                }),
            );
            m.insert("rss_idle_mib".into(), opt(r.rss.idle));
            m.insert("rss_peak_mib".into(), opt(r.rss.peak));
            m.insert("cpu".into(), cpu_json(r.server_cpu_s, r.completed, r.load));
        }
        Outcome::W3(r) => {
            let park_secs = r.park_elapsed.as_secs_f64();
            let resume_secs = r.resume_elapsed.as_secs_f64();
            let mut all = r.park_errors.clone();
            all.merge(&r.resume_errors);
            let delta = match (r.rss_idle, r.rss_parked) {
                (Some(i), Some(p)) => Some(p - i),
                _ => None,
            };
            let per_run_kib = delta
                .filter(|_| r.parked > 0)
                .map(|d| d * 1024.0 / r.parked as f64);
            m.insert("started".into(), json!(r.started));
            m.insert("parked".into(), json!(r.parked));
            m.insert("completed_runs".into(), json!(r.resumed));
            errors_json(&mut m, &all);
            m.insert("park_errors".into(), json!(r.park_errors.total()));
            m.insert("resume_errors".into(), json!(r.resume_errors.total()));
            m.insert("time_to_all_parked_s".into(), json!(round3(park_secs)));
            m.insert("park_rate_per_s".into(), json!(per_s(r.parked, park_secs)));
            m.insert("start_call_latency_ms".into(), summary(&r.start_call));
            m.insert("start_to_parked_ms".into(), summary(&r.start));
            m.insert("rss_idle_mib".into(), opt(r.rss_idle));
            m.insert("rss_parked_mib".into(), opt(r.rss_parked));
            m.insert("rss_parked_minus_idle_mib".into(), opt(delta));
            m.insert("rss_per_parked_run_kib".into(), opt(per_run_kib));
            m.insert("rss_idle_mb".into(), opt(r.rss_idle));
            m.insert("rss_parked_mb".into(), opt(r.rss_parked));
            m.insert("rss_delta_mb".into(), opt(delta));
            m.insert("resume_requested".into(), json!(r.resume_requested));
            m.insert("resumed".into(), json!(r.resumed));
            m.insert("resume_elapsed_s".into(), json!(round3(resume_secs)));
            m.insert(
                "resume_runs_per_s".into(),
                json!(per_s(r.resumed, resume_secs)),
            );
            m.insert("runs_per_s".into(), json!(per_s(r.resumed, resume_secs)));
            m.insert(
                "steps_per_s".into(),
                json!(per_s(r.resumed * W3_STEPS, resume_secs)),
            );
            m.insert("resume_call_latency_ms".into(), summary(&r.resume_call));
            m.insert("resume_to_complete_ms".into(), summary(&r.resume));
            m.insert("run_latency_ms".into(), summary(&r.resume));
            m.insert(
                "cpu_park_phase".into(),
                cpu_json(r.park_cpu_s, r.parked, (r.load.0, None)),
            );
            m.insert(
                "cpu_resume_phase".into(),
                cpu_json(r.resume_cpu_s, r.resumed, (None, r.load.1)),
            );
        }
    }
    Value::Object(m)
}

fn ms(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

fn mib(x: Option<f64>) -> String {
    x.map_or("–".to_string(), |v| format!("{v:.1}"))
}

fn latency_row(workload: &str, what: &str, l: &Latency, rate: &str, steps: &str) -> String {
    match l.summary() {
        Some(s) => format!(
            "| {workload} | {what} | {} | {rate} | {steps} | {} | {} | {} | {} | {} |",
            s.n,
            ms(s.p50),
            ms(s.p90),
            ms(s.p95),
            ms(s.p99),
            ms(s.max)
        ),
        None => format!("| {workload} | {what} | 0 | {rate} | {steps} | – | – | – | – | – |"),
    }
}

/// The Markdown tables for these results: latencies and throughput, memory, errors.
pub fn table(meta: &Meta, outcomes: &[Outcome]) -> String {
    let mut out = String::new();
    let ack = meta.calls == Calls::Ack;
    out.push_str(&format!(
        "scaff-bench · engine scaff · store {} · C={} · runs {} · warm-up {}{} · {}{}\n\n",
        meta.store.as_deref().unwrap_or("?"),
        meta.concurrency,
        meta.runs,
        meta.warmup,
        if ack { " · calls ack" } else { "" },
        meta.url,
        meta.build
            .as_deref()
            .map(|b| format!(" · {b} build"))
            .unwrap_or_default(),
    ));
    out.push_str(
        "| workload | measure | n | runs/s | steps/s | p50 | p90 | p95 | p99 | max (ms) |\n",
    );
    out.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for o in outcomes {
        match o {
            Outcome::W1(r) => {
                let secs = r.elapsed.as_secs_f64();
                let rate = format!("{:.1}", per_s(r.completed, secs));
                let steps = format!("{:.0}", per_s(r.completed * W1_STEPS, secs));
                out.push_str(&latency_row(
                    "W1",
                    "run: start → completed",
                    &r.run,
                    &rate,
                    &steps,
                ));
                out.push('\n');
                out.push_str(&latency_row(
                    "W1",
                    "per step (run ÷ 10)",
                    &r.run.scaled_down(W1_STEPS),
                    "",
                    "",
                ));
                out.push('\n');
                if ack {
                    out.push_str(&latency_row(
                        "W1",
                        "call: start (ack)",
                        &r.start_call,
                        "",
                        "",
                    ));
                    out.push('\n');
                }
            }
            Outcome::W2(r) => {
                let secs = r.elapsed.as_secs_f64();
                let rate = format!("{:.1}", per_s(r.completed, secs));
                let steps = format!("{:.0}", per_s(r.completed * W2_STEPS, secs));
                let settled_rows = [
                    (
                        "run: start → completed",
                        &r.run,
                        rate.as_str(),
                        steps.as_str(),
                    ),
                    ("call: start (→ form wait)", &r.start, "", ""),
                    (
                        "call: resume form (→ approval wait)",
                        &r.resume_form,
                        "",
                        "",
                    ),
                    (
                        "call: GET approvals (approver token)",
                        &r.get_approvers,
                        "",
                        "",
                    ),
                    (
                        "call: resume approval (→ completed)",
                        &r.resume_approval,
                        "",
                        "",
                    ),
                ];
                let ack_rows = [
                    (
                        "run: start → completed",
                        &r.run,
                        rate.as_str(),
                        steps.as_str(),
                    ),
                    ("call: start (ack)", &r.start, "", ""),
                    ("observed: start → form wait", &r.start_to_waiting, "", ""),
                    ("call: resume form (ack)", &r.resume_form, "", ""),
                    (
                        "observed: resume form → approval wait",
                        &r.resume_form_to_waiting,
                        "",
                        "",
                    ),
                    ("call: GET approvals", &r.get_approvers, "", ""),
                    ("call: resume approval (ack)", &r.resume_approval, "", ""),
                    (
                        "observed: resume approval → completed",
                        &r.resume_approval_to_completed,
                        "",
                        "",
                    ),
                ];
                let rows: &[(&str, &Latency, &str, &str)] =
                    if ack { &ack_rows } else { &settled_rows };
                for (what, l, rate, steps) in rows {
                    out.push_str(&latency_row("W2", what, l, rate, steps));
                    out.push('\n');
                }
            }
            Outcome::W3(r) => {
                let parks = format!("{:.1}", per_s(r.parked, r.park_elapsed.as_secs_f64()));
                let resumes = format!("{:.1}", per_s(r.resumed, r.resume_elapsed.as_secs_f64()));
                let rows: &[(&str, &Latency, &str)] = if ack {
                    &[
                        ("call: park start (ack)", &r.start_call, ""),
                        ("observed: park start → waiting", &r.start, &parks),
                        ("call: resume (ack)", &r.resume_call, ""),
                        ("observed: resume → completed", &r.resume, &resumes),
                    ]
                } else {
                    &[
                        ("park: start → waiting", &r.start, &parks),
                        ("resume → completed", &r.resume, &resumes),
                    ]
                };
                for (what, l, rate) in rows {
                    out.push_str(&latency_row("W3", what, l, rate, ""));
                    out.push('\n');
                }
            }
        }
    }

    out.push_str("\n| workload | runs done / taken | errors | elapsed (s) | server CPU ms / run | RSS idle → peak or parked (MiB) | parked − idle (MiB) | KiB / parked run |\n");
    out.push_str("|---|---:|---:|---:|---:|---|---:|---:|\n");
    for o in outcomes {
        match o {
            Outcome::W1(r) => out.push_str(&format!(
                "| W1 | {} / {} | {} | {:.1} | {} | {} → {} | – | – |\n",
                r.completed,
                r.attempted,
                r.errors.total(),
                r.elapsed.as_secs_f64(),
                cpu_cell(r.server_cpu_s, r.completed),
                mib(r.rss.idle),
                mib(r.rss.peak)
            )),
            Outcome::W2(r) => out.push_str(&format!(
                "| W2 | {} / {} | {} | {:.1} | {} | {} → {} | – | – |\n",
                r.completed,
                r.attempted,
                r.errors.total(),
                r.elapsed.as_secs_f64(),
                cpu_cell(r.server_cpu_s, r.completed),
                mib(r.rss.idle),
                mib(r.rss.peak)
            )),
            Outcome::W3(r) => {
                let delta = match (r.rss_idle, r.rss_parked) {
                    (Some(i), Some(p)) => Some(p - i),
                    _ => None,
                };
                let per_run = delta
                    .filter(|_| r.parked > 0)
                    .map(|d| d * 1024.0 / r.parked as f64);
                out.push_str(&format!(
                    "| W3 | parked {} / {}, resumed {} / {} | {} | {:.1} + {:.1} | {} + {} | {} → {} | {} | {} |\n",
                    r.parked,
                    r.started,
                    r.resumed,
                    r.resume_requested,
                    r.park_errors.total() + r.resume_errors.total(),
                    r.park_elapsed.as_secs_f64(),
                    r.resume_elapsed.as_secs_f64(),
                    cpu_cell(r.park_cpu_s, r.parked),
                    cpu_cell(r.resume_cpu_s, r.resumed),
                    mib(r.rss_idle),
                    mib(r.rss_parked),
                    delta.map_or("–".into(), |d| format!("{d:.1}")),
                    per_run.map_or("–".into(), |k| format!("{k:.2}")),
                ));
            }
        }
    }

    let mut any_errors = false;
    for o in outcomes {
        let errors = match o {
            Outcome::W1(r) => r.errors.clone(),
            Outcome::W2(r) => r.errors.clone(),
            Outcome::W3(r) => {
                let mut e = r.park_errors.clone();
                e.merge(&r.resume_errors);
                e
            }
        };
        if errors.total() > 0 {
            if !any_errors {
                out.push_str("\nErrors by kind:\n");
                any_errors = true;
            }
            out.push_str(&format!("- {}: {}\n", o.name(), errors.one_line()));
            if let Some(sample) = errors.samples().first() {
                out.push_str(&format!("  e.g. {sample}\n"));
            }
        }
    }
    out
}

/// The latency distributions to draw: `(label, curve)` for each measured call or run. With
/// [`Calls::Ack`] the acknowledged calls are labelled `(ack)` and W1 and W3 add their calls.
pub fn chart_series(calls: Calls, outcomes: &[Outcome]) -> Vec<(String, Vec<(f64, f64)>)> {
    const POINTS: usize = 120;
    let ack = calls == Calls::Ack;
    let call = |name: &str| {
        if ack {
            format!("{name} (ack)")
        } else {
            name.to_string()
        }
    };
    let mut series = Vec::new();
    for o in outcomes {
        match o {
            Outcome::W1(r) => {
                series.push(("W1 run".to_string(), r.run.curve(POINTS)));
                if ack {
                    series.push((call("W1 start"), r.start_call.curve(POINTS)));
                }
            }
            Outcome::W2(r) => {
                series.push(("W2 run".to_string(), r.run.curve(POINTS)));
                series.push((call("W2 start"), r.start.curve(POINTS)));
                series.push((call("W2 resume form"), r.resume_form.curve(POINTS)));
                series.push((
                    "W2 GET approvals".to_string(),
                    r.get_approvers.curve(POINTS),
                ));
                series.push((call("W2 resume approval"), r.resume_approval.curve(POINTS)));
            }
            Outcome::W3(r) => {
                if ack {
                    series.push((call("W3 park start"), r.start_call.curve(POINTS)));
                }
                series.push(("W3 park".to_string(), r.start.curve(POINTS)));
                if ack {
                    series.push((call("W3 resume"), r.resume_call.curve(POINTS)));
                }
                series.push(("W3 resume→completed".to_string(), r.resume.curve(POINTS)));
            }
        }
    }
    series.retain(|(_, c)| !c.is_empty());
    series
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::workloads::Rss;

    fn meta() -> Meta {
        Meta {
            store: Some("sqlite".into()),
            concurrency: 50,
            runs: 300,
            warmup: 30,
            wait_ms: 30_000,
            calls: Calls::Settled,
            max_seconds: 300,
            url: "http://127.0.0.1:1".into(),
            binary: None,
            build: Some("debug".into()),
        }
    }

    fn latency(values_ms: &[u64]) -> Latency {
        let mut l = Latency::new();
        for v in values_ms {
            l.record(Duration::from_millis(*v));
        }
        l
    }

    fn w1() -> W1Result {
        let mut errors = Errors::default();
        errors.add("http 503".into(), "http 503: unavailable".into());
        W1Result {
            attempted: 5,
            completed: 4,
            errors,
            elapsed: Duration::from_secs(2),
            run: latency(&[100, 200, 300, 400]),
            start_call: latency(&[1, 2, 3, 4]),
            rss: Rss {
                idle: Some(20.0),
                peak: Some(30.5),
            },
            server_cpu_s: Some(2.0),
            load: (Some(1.0), Some(2.0)),
        }
    }

    #[test]
    fn w1_report_has_the_peer_fields() {
        let v = to_json(&meta(), &Outcome::W1(Box::new(w1())));
        assert_eq!(v["engine"], "scaff");
        assert_eq!(v["workload"], "W1");
        assert_eq!(v["store"], "sqlite");
        assert_eq!(v["concurrency"], 50);
        assert_eq!(v["runs"], 300);
        assert_eq!(v["completed_runs"], 4);
        assert_eq!(v["errors"], 1);
        assert_eq!(v["errors_by_kind"]["http 503"], 1);
        assert_eq!(v["runs_per_s"], 2.0);
        assert_eq!(v["steps_per_s"], 20.0);
        for k in ["p50", "p90", "p95", "p99", "max", "n", "mean"] {
            assert!(v["run_latency_ms"][k].is_number(), "run_latency_ms.{k}");
            assert!(v["per_step_overhead_ms"][k].is_number(), "per_step.{k}");
        }
        assert_eq!(v["rss_peak_mib"], 30.5);
        assert_eq!(v["cpu"]["loadavg1_start"], 1.0);
        assert_eq!(v["cpu"]["engine_cpu_s"], 2.0);
        assert_eq!(v["cpu"]["engine_cpu_ms_per_run"], 500.0);
    }

    #[test]
    fn w2_report_has_per_call_latencies_in_both_shapes() {
        let r = W2Result {
            attempted: 2,
            completed: 2,
            elapsed: Duration::from_secs(1),
            run: latency(&[50, 60]),
            start: latency(&[10, 20]),
            start_to_waiting: latency(&[10, 20]),
            resume_form: latency(&[15, 25]),
            resume_form_to_waiting: latency(&[15, 25]),
            resume_approval: latency(&[5, 6]),
            resume_approval_to_completed: latency(&[5, 6]),
            ..W2Result::default()
        };
        let v = to_json(&meta(), &Outcome::W2(Box::new(r)));
        assert_eq!(v["workload"], "W2");
        for call in ["start", "resume_form", "resume_approval"] {
            assert!(v["call_latency_ms"][call]["p95"].is_number(), "{call}");
        }
        for k in [
            "start_call",
            "start_to_waiting",
            "resume1_call",
            "resume1_to_waiting",
            "resume2_call",
            "resume2_to_completed",
            "run_total",
        ] {
            assert!(v["latency_ms"][k]["p99"].is_number(), "{k}");
        }
        assert_eq!(v["runs_per_s"], 2.0);
        assert_eq!(v["errors"], 0);
        assert_eq!(v["rss_idle_mib"], Value::Null);
    }

    #[test]
    fn w3_report_has_rss_figures_and_resume_latency() {
        let r = W3Result {
            started: 1000,
            parked: 1000,
            park_elapsed: Duration::from_secs(10),
            start: latency(&[5; 10]),
            rss_idle: Some(40.0),
            rss_parked: Some(50.0),
            resume_requested: 100,
            resumed: 100,
            resume_elapsed: Duration::from_secs(2),
            resume: latency(&[7; 100]),
            ..W3Result::default()
        };
        let v = to_json(&meta(), &Outcome::W3(Box::new(r)));
        assert_eq!(v["workload"], "W3");
        assert_eq!(v["parked"], 1000);
        assert_eq!(v["rss_idle_mb"], 40.0);
        assert_eq!(v["rss_parked_mb"], 50.0);
        assert_eq!(v["rss_delta_mb"], 10.0);
        assert_eq!(v["rss_parked_minus_idle_mib"], 10.0);
        assert_eq!(v["rss_per_parked_run_kib"], 10.24);
        assert_eq!(v["park_rate_per_s"], 100.0);
        assert_eq!(v["resumed"], 100);
        assert_eq!(v["completed_runs"], 100);
        assert!(v["resume_to_complete_ms"]["p99"].is_number());
    }

    #[test]
    fn empty_results_give_nulls_not_panics() {
        let v = to_json(&meta(), &Outcome::W1(Box::default()));
        assert_eq!(v["run_latency_ms"], Value::Null);
        assert_eq!(v["runs_per_s"], 0.0);
        let v = to_json(&meta(), &Outcome::W3(Box::default()));
        assert_eq!(v["rss_delta_mb"], Value::Null);
        assert_eq!(v["rss_per_parked_run_kib"], Value::Null);
        let t = table(&meta(), &[Outcome::W2(Box::default())]);
        assert!(t.contains("| W2 | run: start → completed | 0 |"), "{t}");
    }

    #[test]
    fn table_lists_every_workload_and_the_errors() {
        let t = table(
            &meta(),
            &[
                Outcome::W1(Box::new(w1())),
                Outcome::W2(Box::default()),
                Outcome::W3(Box::default()),
            ],
        );
        assert!(t.contains("store sqlite"), "{t}");
        assert!(
            t.contains("| W1 | run: start → completed | 4 | 2.0 | 20 |"),
            "{t}"
        );
        assert!(t.contains("| W1 | per step (run ÷ 10) | 4 |"), "{t}");
        assert!(t.contains("| W3 | resume → completed |"), "{t}");
        assert!(
            t.contains("| W1 | 4 / 5 | 1 | 2.0 | 500.0 | 20.0 → 30.5 |"),
            "{t}"
        );
        assert!(t.contains("- W1: http 503×1"), "{t}");
    }

    fn ack_meta() -> Meta {
        Meta {
            calls: Calls::Ack,
            ..meta()
        }
    }

    /// A W2 result whose call and observed figures differ, as they do with `--calls ack`.
    fn w2_ack() -> W2Result {
        W2Result {
            attempted: 2,
            completed: 2,
            elapsed: Duration::from_secs(1),
            run: latency(&[300, 400]),
            start: latency(&[3, 4]),
            start_to_waiting: latency(&[30, 40]),
            resume_form: latency(&[5, 6]),
            resume_form_to_waiting: latency(&[150, 160]),
            get_approvers: latency(&[1, 2]),
            resume_approval: latency(&[7, 8]),
            resume_approval_to_completed: latency(&[70, 80]),
            ..W2Result::default()
        }
    }

    fn w3_ack() -> W3Result {
        W3Result {
            started: 10,
            parked: 10,
            park_elapsed: Duration::from_secs(1),
            start: latency(&[20; 10]),
            start_call: latency(&[2; 10]),
            resume_requested: 5,
            resumed: 5,
            resume_elapsed: Duration::from_secs(1),
            resume: latency(&[50; 5]),
            resume_call: latency(&[4; 5]),
            ..W3Result::default()
        }
    }

    #[test]
    fn ack_tables_label_each_row_by_what_was_timed() {
        let t = table(
            &ack_meta(),
            &[
                Outcome::W1(Box::new(w1())),
                Outcome::W2(Box::new(w2_ack())),
                Outcome::W3(Box::new(w3_ack())),
            ],
        );
        assert!(t.contains("warm-up 30 · calls ack · http://"), "{t}");
        for row in [
            "| W1 | run: start → completed | 4 |",
            "| W1 | call: start (ack) | 4 |",
            "| W2 | run: start → completed | 2 |",
            "| W2 | call: start (ack) | 2 |",
            "| W2 | observed: start → form wait | 2 |",
            "| W2 | call: resume form (ack) | 2 |",
            "| W2 | observed: resume form → approval wait | 2 |",
            "| W2 | call: GET approvals | 2 |",
            "| W2 | call: resume approval (ack) | 2 |",
            "| W2 | observed: resume approval → completed | 2 |",
            "| W3 | call: park start (ack) | 10 |",
            "| W3 | observed: park start → waiting | 10 | 10.0 |",
            "| W3 | call: resume (ack) | 5 |",
            "| W3 | observed: resume → completed | 5 | 5.0 |",
        ] {
            assert!(t.contains(row), "missing {row}:\n{t}");
        }
        for settled_only in [
            "(→ form wait)",
            "(→ completed)",
            "| W3 | resume → completed |",
        ] {
            assert!(!t.contains(settled_only), "{settled_only}:\n{t}");
        }
    }

    #[test]
    fn settled_tables_keep_the_labels_they_always_had() {
        let t = table(
            &meta(),
            &[
                Outcome::W1(Box::new(w1())),
                Outcome::W2(Box::new(w2_ack())),
                Outcome::W3(Box::new(w3_ack())),
            ],
        );
        assert!(!t.contains("calls"), "{t}");
        assert!(!t.contains("(ack)") && !t.contains("observed"), "{t}");
        for row in [
            "| W2 | call: start (→ form wait) | 2 |",
            "| W2 | call: resume form (→ approval wait) | 2 |",
            "| W2 | call: GET approvals (approver token) | 2 |",
            "| W2 | call: resume approval (→ completed) | 2 |",
            "| W3 | park: start → waiting | 10 | 10.0 |",
            "| W3 | resume → completed | 5 | 5.0 |",
        ] {
            assert!(t.contains(row), "missing {row}:\n{t}");
        }
    }

    #[test]
    fn json_names_the_calls_mode_and_keeps_calls_apart_from_observed_times() {
        let settled = to_json(&meta(), &Outcome::W1(Box::new(w1())));
        assert_eq!(settled["params"]["calls"], "settled");
        assert_eq!(settled["params"]["wait_ms"], 30_000);

        let v = to_json(&ack_meta(), &Outcome::W1(Box::new(w1())));
        assert_eq!(v["params"]["calls"], "ack");
        assert_eq!(v["params"]["wait_ms"], 30_000);
        assert!(
            v["start_call_latency_ms"]["max"].as_f64() < Some(10.0),
            "{v}"
        );
        assert!(v["run_latency_ms"]["max"].as_f64() > Some(300.0), "{v}");

        let v = to_json(&ack_meta(), &Outcome::W2(Box::new(w2_ack())));
        let max = |k: &str| v["latency_ms"][k]["max"].as_f64().unwrap_or(f64::NAN);
        assert!(
            max("start_call") < 5.0 && max("start_to_waiting") > 30.0,
            "{v}"
        );
        assert!(
            max("resume1_call") < 7.0 && max("resume1_to_waiting") > 150.0,
            "{v}"
        );
        assert!(
            max("resume2_call") < 9.0 && max("resume2_to_completed") > 70.0,
            "{v}"
        );
        assert!(max("run_total") > 300.0, "{v}");
        assert_eq!(
            v["call_latency_ms"]["resume_approval"],
            v["latency_ms"]["resume2_call"]
        );

        let v = to_json(&ack_meta(), &Outcome::W3(Box::new(w3_ack())));
        let max = |k: &str| v[k]["max"].as_f64().unwrap_or(f64::NAN);
        assert!(max("start_call_latency_ms") < 3.0, "{v}");
        assert!(max("start_to_parked_ms") > 19.0, "{v}");
        assert!(max("resume_call_latency_ms") < 5.0, "{v}");
        assert!(max("resume_to_complete_ms") > 49.0, "{v}");
        assert_eq!(v["resume_call_latency_ms"]["n"], 5);
    }

    #[test]
    fn ack_chart_series_label_the_acknowledged_calls() {
        let names: Vec<String> = chart_series(
            Calls::Ack,
            &[
                Outcome::W1(Box::new(w1())),
                Outcome::W2(Box::new(w2_ack())),
                Outcome::W3(Box::new(w3_ack())),
            ],
        )
        .into_iter()
        .map(|(name, _)| name)
        .collect();
        for name in [
            "W1 start (ack)",
            "W2 start (ack)",
            "W2 resume approval (ack)",
            "W3 park start (ack)",
            "W3 resume (ack)",
            "W3 resume→completed",
        ] {
            assert!(names.iter().any(|n| n == name), "{name}: {names:?}");
        }
    }

    #[test]
    fn chart_series_skip_empty_distributions() {
        let s = chart_series(
            Calls::Settled,
            &[Outcome::W1(Box::new(w1())), Outcome::W2(Box::default())],
        );
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].0, "W1 run");
    }
}
