//! The three reference workloads of `shared/peers/WORKLOADS.md`, driven over the REST API in
//! a closed loop: `concurrency` virtual users each take the next run number, drive that run to
//! its end, and take another, until `runs` runs were taken or the time cap is reached.
//!
//! - **W1 chain10**: start with `wait_ms` until the run completes (10 `set` steps).
//! - **W2 human loop**: start (waits on the form) → resume with the form's values (waits on
//!   the approval) → read the approvers' tokens (`GET /v1/executions/{id}/approvals`) →
//!   resume with one approver's decision (completed). Each call is timed.
//! - **W3 parked**: park N runs on a form, read the server's RSS, then resume a random 1,000
//!   of them to completion.
//!
//! With `--calls settled` (the default) every start and resume sends `wait_ms`, so one call
//! returns once the run has settled; a run still `running` when `wait_ms` ran out is followed
//! with `GET …?wait_ms=` (timed as part of the call's "observed" figure). With `--calls ack`
//! starts and resumes send no `wait_ms`: the call is timed until the server acknowledges it,
//! and the run is then followed with `GET …?wait_ms=` until it settles (the "observed"
//! figure, from the same instant). Failures are counted by kind, never panicked on.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand::seq::SliceRandom;
use serde_json::json;

use crate::api::{self, Api, CallError};
use crate::stats::{Errors, Latency};
use crate::sys::{self, RssSampler};

/// Id of the W1 workflow on the server.
pub const W1_ID: &str = "bench_w1";
/// Id of the W2 workflow on the server.
pub const W2_ID: &str = "bench_w2";
/// Id of the W3 workflow on the server.
pub const W3_ID: &str = "bench_w3";
/// Steps per W1 run.
pub const W1_STEPS: u64 = 10;

/// The W1 workflow: `examples/chain10.yaml` under a fixed id.
pub fn w1_yaml() -> String {
    format!(
        "id: {W1_ID}\n{}",
        include_str!("../../examples/chain10.yaml")
    )
}

/// The W2 workflow: `examples/human_loop.yaml` under a fixed id.
pub fn w2_yaml() -> String {
    format!(
        "id: {W2_ID}\n{}",
        include_str!("../../examples/human_loop.yaml")
    )
}

/// The W3 workflow: a form to park on, then one `set` step.
pub fn w3_yaml() -> String {
    format!(
        "id: {W3_ID}
name: bench_w3
description: W3 parked - waits on a form, then one set step.
start_step: wait
steps:
  - id: wait
    type: form
    config:
      fields:
        - {{key: value, type: integer, required: true}}
    next: done
  - {{id: done, type: set, config: {{values: {{done: \"runtime.value + 1\"}}}}, next: null}}
"
    )
}

/// How long a run may take to settle after its call before it counts as an error.
const SETTLE_LIMIT: Duration = Duration::from_secs(120);

/// What a workload is asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// Runs to complete (W3: runs to park).
    pub runs: usize,
    /// Virtual users (runs in flight).
    pub concurrency: usize,
    /// Uncounted runs before the measured phase.
    pub warmup: usize,
    /// No new run is taken after this long (the ones in flight finish).
    pub max_time: Duration,
    /// W3: how many parked runs to resume.
    pub resume: usize,
    /// The server's process id, for RSS figures.
    pub server_pid: Option<u32>,
    /// Draw progress bars on stderr.
    pub progress: bool,
}

/// RSS of the server around a measured phase, in MiB.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rss {
    /// Before the phase.
    pub idle: Option<f64>,
    /// The peak sampled during the phase.
    pub peak: Option<f64>,
}

/// W1's figures.
#[derive(Debug, Clone, Default)]
pub struct W1Result {
    /// Runs started in the measured phase.
    pub attempted: u64,
    /// Runs observed completed.
    pub completed: u64,
    /// Errors by kind.
    pub errors: Errors,
    /// The measured phase, first start to last run drained.
    pub elapsed: Duration,
    /// Start call → completed observed, per completed run.
    pub run: Latency,
    /// The start call alone, per completed run (with `--calls settled` it waits for the run
    /// to settle too).
    pub start_call: Latency,
    /// Server RSS.
    pub rss: Rss,
    /// CPU seconds the server used in the measured phase.
    pub server_cpu_s: Option<f64>,
    /// 1-minute load average before and after.
    pub load: (Option<f64>, Option<f64>),
}

/// W2's figures.
#[derive(Debug, Clone, Default)]
pub struct W2Result {
    /// Runs started in the measured phase.
    pub attempted: u64,
    /// Runs observed completed.
    pub completed: u64,
    /// Errors by kind.
    pub errors: Errors,
    /// The measured phase.
    pub elapsed: Duration,
    /// Start → completed, per completed run.
    pub run: Latency,
    /// The start call (with `wait_ms`: until it answers, normally waiting on the form).
    pub start: Latency,
    /// Start call → the run observed waiting on the form.
    pub start_to_waiting: Latency,
    /// The form resume call.
    pub resume_form: Latency,
    /// Form resume → observed waiting on the approval.
    pub resume_form_to_waiting: Latency,
    /// `GET /v1/executions/{id}/approvals` for an approver's token (zero-cost when the run
    /// object carries the tokens).
    pub get_approvers: Latency,
    /// The approval resume call.
    pub resume_approval: Latency,
    /// Approval resume → observed completed.
    pub resume_approval_to_completed: Latency,
    /// Server RSS.
    pub rss: Rss,
    /// CPU seconds the server used in the measured phase.
    pub server_cpu_s: Option<f64>,
    /// 1-minute load average before and after.
    pub load: (Option<f64>, Option<f64>),
}

/// W3's figures.
#[derive(Debug, Clone, Default)]
pub struct W3Result {
    /// Runs started to park.
    pub started: u64,
    /// Runs observed waiting on their form.
    pub parked: u64,
    /// Errors of the park phase.
    pub park_errors: Errors,
    /// From the first start until every run was observed parked.
    pub park_elapsed: Duration,
    /// Start call → observed parked.
    pub start: Latency,
    /// The start call alone, per parked run.
    pub start_call: Latency,
    /// Server RSS before parking (after warm-up), MiB.
    pub rss_idle: Option<f64>,
    /// Server RSS with every run parked, MiB.
    pub rss_parked: Option<f64>,
    /// Runs picked to resume.
    pub resume_requested: u64,
    /// Runs resumed and observed completed.
    pub resumed: u64,
    /// Errors of the resume phase.
    pub resume_errors: Errors,
    /// The resume phase.
    pub resume_elapsed: Duration,
    /// Resume call → observed completed.
    pub resume: Latency,
    /// The resume call alone, per resumed run.
    pub resume_call: Latency,
    /// CPU seconds the server used to park the runs.
    pub park_cpu_s: Option<f64>,
    /// CPU seconds the server used to resume them.
    pub resume_cpu_s: Option<f64>,
    /// 1-minute load average before the park phase and after the resume phase.
    pub load: (Option<f64>, Option<f64>),
}

/// A progress bar on stderr (hidden when `enabled` is false or stderr is not a terminal).
pub fn bar(len: usize, label: &str, enabled: bool) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::with_draw_target(Some(len as u64), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{prefix:>12} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec}, eta {eta})",
    ) {
        pb.set_style(style);
    }
    pb.set_prefix(label.to_string());
    pb
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs `f(0..total)` with `concurrency` virtual users, each awaiting its run before taking
/// the next number; stops taking numbers after `max_time`. Returns the elapsed time (until the
/// last run in flight finished) and how many runs were taken.
pub async fn closed_loop<F, Fut>(
    total: usize,
    concurrency: usize,
    max_time: Duration,
    pb: &ProgressBar,
    f: F,
) -> (Duration, usize)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let f = Arc::new(f);
    let next = Arc::new(AtomicUsize::new(0));
    let taken = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut users = tokio::task::JoinSet::new();
    for _ in 0..concurrency.clamp(1, total.max(1)) {
        let (f, next, taken, pb) = (f.clone(), next.clone(), taken.clone(), pb.clone());
        users.spawn(async move {
            loop {
                if started.elapsed() >= max_time {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                taken.fetch_add(1, Ordering::Relaxed);
                f(i).await;
                pb.inc(1);
            }
        });
    }
    while let Some(joined) = users.join_next().await {
        if let Err(e) = joined {
            eprintln!("scaff-bench: a virtual user stopped: {e}");
        }
    }
    pb.finish_and_clear();
    (started.elapsed(), taken.load(Ordering::Relaxed))
}

/// One W1 run; returns how long the start call took.
async fn w1_once(api: &Api, i: usize) -> Result<Duration, CallError> {
    let t0 = Instant::now();
    let run = api.start(W1_ID, json!({"bench": i})).await?;
    let call = t0.elapsed();
    let run = api.settle(run, SETTLE_LIMIT).await?;
    api::expect_completed(&run)?;
    Ok(call)
}

/// W1 chain10: `opts.runs` runs of 10 checkpointed steps, each timed until completed.
pub async fn w1(api: &Api, opts: &Options) -> anyhow::Result<W1Result> {
    api.ensure_workflow(W1_ID, &w1_yaml()).await?;
    warmup(api, opts, "W1", |a, i| async move {
        w1_once(&a, i).await.map(drop)
    })
    .await;

    let result = Arc::new(Mutex::new(W1Result::default()));
    let rss_idle = opts.server_pid.and_then(sys::rss_mib);
    let sampler = opts.server_pid.map(RssSampler::start);
    let cpu_start = opts.server_pid.and_then(sys::cpu_seconds);
    let load_start = sys::loadavg1();
    let pb = bar(opts.runs, "W1 chain10", opts.progress);
    let (a, r) = (api.clone(), result.clone());
    let (elapsed, taken) = closed_loop(opts.runs, opts.concurrency, opts.max_time, &pb, move |i| {
        let (a, r) = (a.clone(), r.clone());
        async move {
            let t0 = Instant::now();
            let outcome = w1_once(&a, i).await;
            let took = t0.elapsed();
            let mut r = lock(&r);
            match outcome {
                Ok(call) => {
                    r.completed += 1;
                    r.run.record(took);
                    r.start_call.record(call);
                }
                Err(e) => r.errors.add(e.kind(), e.describe()),
            }
        }
    })
    .await;
    let mut out = std::mem::take(&mut *lock(&result));
    out.attempted = taken as u64;
    out.elapsed = elapsed;
    out.rss = Rss {
        idle: rss_idle,
        peak: sampler.and_then(RssSampler::stop),
    };
    out.server_cpu_s = sys::cpu_since(opts.server_pid, cpu_start);
    out.load = (load_start, sys::loadavg1());
    Ok(out)
}

/// The timings of one W2 run.
#[derive(Debug, Clone, Copy)]
struct W2Times {
    start: Duration,
    start_to_waiting: Duration,
    resume_form: Duration,
    resume_form_to_waiting: Duration,
    get_approvers: Duration,
    resume_approval: Duration,
    resume_approval_to_completed: Duration,
    total: Duration,
}

async fn w2_once(api: &Api, i: usize) -> Result<W2Times, CallError> {
    let t0 = Instant::now();
    let run = api.start(W2_ID, json!({"bench": i})).await?;
    let start = t0.elapsed();
    let run = api.settle(run, SETTLE_LIMIT).await?;
    let start_to_waiting = t0.elapsed();
    api::expect_waiting(&run, "form")?;
    let id = api::run_id(&run)
        .ok_or_else(|| missing("no run id", "the started run has no `id`"))?
        .to_string();
    let token = api::form_token(&run)
        .ok_or_else(|| missing("no resume_token", "the form wait has no `resume_token`"))?
        .to_string();

    let t1 = Instant::now();
    let inputs = json!({"topic": format!("bench topic {i}"), "priority": (i % 5) + 1});
    let run = api.resume_form(&id, &token, inputs).await?;
    let resume_form = t1.elapsed();
    let run = api.settle(run, SETTLE_LIMIT).await?;
    let resume_form_to_waiting = t1.elapsed();
    api::expect_waiting(&run, "approval")?;
    // Servers that put approver tokens on the run object spare the extra call.
    let t_approvers = Instant::now();
    let (token, step) = match api::approver_token(&run) {
        Some((t, s)) => (t.to_string(), s.to_string()),
        None => {
            let answer = api.approvals(&id).await?;
            api::approver_token_from_approvals(&answer)
                .map(|(t, s)| (t.to_string(), s.to_string()))
                .ok_or_else(|| {
                    missing(
                        "no approver token",
                        "GET /v1/executions/{id}/approvals has no undecided approver",
                    )
                })?
        }
    };
    let get_approvers = t_approvers.elapsed();

    let t2 = Instant::now();
    let run = api
        .resume_approval(&id, &token, &step, true, "approved by scaff-bench")
        .await?;
    let resume_approval = t2.elapsed();
    let run = api.settle(run, SETTLE_LIMIT).await?;
    let resume_approval_to_completed = t2.elapsed();
    api::expect_completed(&run)?;
    Ok(W2Times {
        start,
        start_to_waiting,
        resume_form,
        resume_form_to_waiting,
        get_approvers,
        resume_approval,
        resume_approval_to_completed,
        total: t0.elapsed(),
    })
}

fn missing(kind: &str, detail: &str) -> CallError {
    CallError::Unexpected {
        kind: kind.to_string(),
        detail: detail.to_string(),
    }
}

/// W2 human loop: `opts.runs` runs of start → form → (mock AI) → approval → completed.
pub async fn w2(api: &Api, opts: &Options) -> anyhow::Result<W2Result> {
    api.ensure_workflow(W2_ID, &w2_yaml()).await?;
    warmup(api, opts, "W2", |a, i| async move {
        w2_once(&a, i).await.map(drop)
    })
    .await;

    let result = Arc::new(Mutex::new(W2Result::default()));
    let rss_idle = opts.server_pid.and_then(sys::rss_mib);
    let sampler = opts.server_pid.map(RssSampler::start);
    let cpu_start = opts.server_pid.and_then(sys::cpu_seconds);
    let load_start = sys::loadavg1();
    let pb = bar(opts.runs, "W2 human", opts.progress);
    let (a, r) = (api.clone(), result.clone());
    let (elapsed, taken) = closed_loop(opts.runs, opts.concurrency, opts.max_time, &pb, move |i| {
        let (a, r) = (a.clone(), r.clone());
        async move {
            let outcome = w2_once(&a, i).await;
            let mut r = lock(&r);
            match outcome {
                Ok(t) => {
                    r.completed += 1;
                    r.run.record(t.total);
                    r.start.record(t.start);
                    r.start_to_waiting.record(t.start_to_waiting);
                    r.resume_form.record(t.resume_form);
                    r.resume_form_to_waiting.record(t.resume_form_to_waiting);
                    r.get_approvers.record(t.get_approvers);
                    r.resume_approval.record(t.resume_approval);
                    r.resume_approval_to_completed
                        .record(t.resume_approval_to_completed);
                }
                Err(e) => r.errors.add(e.kind(), e.describe()),
            }
        }
    })
    .await;
    let mut out = std::mem::take(&mut *lock(&result));
    out.attempted = taken as u64;
    out.elapsed = elapsed;
    out.rss = Rss {
        idle: rss_idle,
        peak: sampler.and_then(RssSampler::stop),
    };
    out.server_cpu_s = sys::cpu_since(opts.server_pid, cpu_start);
    out.load = (load_start, sys::loadavg1());
    Ok(out)
}

/// A run parked on its form: its id and the token that resumes it.
#[derive(Debug, Clone)]
struct Parked {
    id: String,
    token: String,
}

/// Parks one W3 run; returns it and how long the start call took.
async fn w3_park(api: &Api, i: usize) -> Result<(Parked, Duration), CallError> {
    let t0 = Instant::now();
    let run = api.start(W3_ID, json!({"bench": i})).await?;
    let call = t0.elapsed();
    let run = api.settle(run, SETTLE_LIMIT).await?;
    api::expect_waiting(&run, "form")?;
    let id = api::run_id(&run).ok_or_else(|| missing("no run id", "the run has no `id`"))?;
    let token = api::form_token(&run)
        .ok_or_else(|| missing("no resume_token", "the form wait has no `resume_token`"))?;
    let parked = Parked {
        id: id.to_string(),
        token: token.to_string(),
    };
    Ok((parked, call))
}

/// Resumes one parked W3 run to completion; returns how long the resume call took.
async fn w3_resume(api: &Api, p: &Parked, i: usize) -> Result<Duration, CallError> {
    let value = i64::try_from(i).unwrap_or(0);
    let t0 = Instant::now();
    let run = api
        .resume_form(&p.id, &p.token, json!({"value": value}))
        .await?;
    let call = t0.elapsed();
    let run = api.settle(run, SETTLE_LIMIT).await?;
    api::expect_completed(&run)?;
    Ok(call)
}

/// W3 parked: park `opts.runs` runs on a form, read the server's RSS, then resume a random
/// `opts.resume` of them (all when fewer parked) and time each until it completes.
pub async fn w3(api: &Api, opts: &Options) -> anyhow::Result<W3Result> {
    api.ensure_workflow(W3_ID, &w3_yaml()).await?;
    warmup(api, opts, "W3", |a, i| async move {
        let (parked, _) = w3_park(&a, i).await?;
        w3_resume(&a, &parked, i).await.map(drop)
    })
    .await;

    let load_start = sys::loadavg1();
    // Let the warm-up's work settle before reading the idle figure.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_idle = opts.server_pid.and_then(sys::rss_mib);
    let cpu_park_start = opts.server_pid.and_then(sys::cpu_seconds);

    // Park phase.
    struct ParkState {
        parked: Vec<Parked>,
        start: Latency,
        start_call: Latency,
        errors: Errors,
    }
    let state = Arc::new(Mutex::new(ParkState {
        parked: Vec::with_capacity(opts.runs),
        start: Latency::new(),
        start_call: Latency::new(),
        errors: Errors::default(),
    }));
    let pb = bar(opts.runs, "W3 park", opts.progress);
    let (a, s) = (api.clone(), state.clone());
    let (park_elapsed, started) =
        closed_loop(opts.runs, opts.concurrency, opts.max_time, &pb, move |i| {
            let (a, s) = (a.clone(), s.clone());
            async move {
                let t0 = Instant::now();
                let outcome = w3_park(&a, i).await;
                let took = t0.elapsed();
                let mut s = lock(&s);
                match outcome {
                    Ok((p, call)) => {
                        s.parked.push(p);
                        s.start.record(took);
                        s.start_call.record(call);
                    }
                    Err(e) => s.errors.add(e.kind(), e.describe()),
                }
            }
        })
        .await;
    let ParkState {
        mut parked,
        start,
        start_call,
        errors: park_errors,
    } = std::mem::replace(
        &mut *lock(&state),
        ParkState {
            parked: Vec::new(),
            start: Latency::new(),
            start_call: Latency::new(),
            errors: Errors::default(),
        },
    );
    let park_cpu_s = sys::cpu_since(opts.server_pid, cpu_park_start);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_parked = opts.server_pid.and_then(sys::rss_mib);
    let cpu_resume_start = opts.server_pid.and_then(sys::cpu_seconds);

    // Resume phase: a random sample of the parked runs.
    parked.shuffle(&mut rand::rng());
    parked.truncate(opts.resume.min(parked.len()));
    let picked = Arc::new(parked);
    let n_picked = picked.len();
    #[derive(Default)]
    struct ResumeState {
        resume: Latency,
        resume_call: Latency,
        errors: Errors,
        resumed: u64,
    }
    let resume_state = Arc::new(Mutex::new(ResumeState::default()));
    let pb = bar(n_picked, "W3 resume", opts.progress);
    let (a, s, p) = (api.clone(), resume_state.clone(), picked.clone());
    let (resume_elapsed, _) = closed_loop(n_picked, opts.concurrency, opts.max_time, &pb, {
        move |i| {
            let (a, s, p) = (a.clone(), s.clone(), p.clone());
            async move {
                let Some(run) = p.get(i) else { return };
                let t0 = Instant::now();
                let outcome = w3_resume(&a, run, i).await;
                let took = t0.elapsed();
                let mut s = lock(&s);
                match outcome {
                    Ok(call) => {
                        s.resume.record(took);
                        s.resume_call.record(call);
                        s.resumed += 1;
                    }
                    Err(e) => s.errors.add(e.kind(), e.describe()),
                }
            }
        }
    })
    .await;
    let ResumeState {
        resume,
        resume_call,
        errors: resume_errors,
        resumed,
    } = std::mem::take(&mut *lock(&resume_state));
    let resume_cpu_s = sys::cpu_since(opts.server_pid, cpu_resume_start);

    Ok(W3Result {
        started: started as u64,
        parked: start.len(),
        park_errors,
        park_elapsed,
        start,
        start_call,
        rss_idle,
        rss_parked,
        resume_requested: n_picked as u64,
        resumed,
        resume_errors,
        resume_elapsed,
        resume,
        resume_call,
        park_cpu_s,
        resume_cpu_s,
        load: (load_start, sys::loadavg1()),
    })
}

/// Runs `opts.warmup` uncounted iterations of `once` and reports their errors, if any.
async fn warmup<F, Fut>(api: &Api, opts: &Options, label: &str, once: F)
where
    F: Fn(Api, usize) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), CallError>> + Send + 'static,
{
    if opts.warmup == 0 {
        return;
    }
    let errors = Arc::new(Mutex::new(Errors::default()));
    let (a, e) = (api.clone(), errors.clone());
    let pb = bar(opts.warmup, &format!("{label} warm-up"), opts.progress);
    closed_loop(
        opts.warmup,
        opts.concurrency,
        opts.max_time,
        &pb,
        move |i| {
            let (a, e, once) = (a.clone(), e.clone(), once.clone());
            async move {
                if let Err(err) = once(a, i).await {
                    lock(&e).add(err.kind(), err.describe());
                }
            }
        },
    )
    .await;
    warn_warmup(label, &lock(&errors));
}

fn warn_warmup(workload: &str, errors: &Errors) {
    if errors.total() > 0 {
        eprintln!(
            "scaff-bench: {workload} warm-up had {} error(s): {}",
            errors.total(),
            errors.one_line()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_workflows_carry_their_fixed_ids() {
        assert!(w1_yaml().starts_with("id: bench_w1\n"));
        assert!(w1_yaml().contains("name: chain10"));
        assert!(w2_yaml().starts_with("id: bench_w2\n"));
        assert!(w2_yaml().contains("type: approval"));
        assert!(w3_yaml().starts_with("id: bench_w3\n"));
        assert!(w3_yaml().contains("type: form"));
    }

    #[tokio::test]
    async fn closed_loop_takes_each_number_once_and_caps_users() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let (s, f, m) = (seen.clone(), in_flight.clone(), most.clone());
        let (_, taken) = closed_loop(
            50,
            7,
            Duration::from_secs(60),
            &ProgressBar::hidden(),
            move |i| {
                let (s, f, m) = (s.clone(), f.clone(), m.clone());
                async move {
                    let now = f.fetch_add(1, Ordering::SeqCst) + 1;
                    m.fetch_max(now, Ordering::SeqCst);
                    tokio::task::yield_now().await;
                    lock(&s).push(i);
                    f.fetch_sub(1, Ordering::SeqCst);
                }
            },
        )
        .await;
        assert_eq!(taken, 50);
        let mut seen = lock(&seen).clone();
        seen.sort_unstable();
        assert_eq!(seen, (0..50).collect::<Vec<_>>());
        assert!(most.load(Ordering::SeqCst) <= 7);
    }

    #[tokio::test]
    async fn closed_loop_stops_taking_runs_after_the_time_cap() {
        let (_, taken) = closed_loop(
            1_000_000,
            2,
            Duration::from_millis(50),
            &ProgressBar::hidden(),
            |_| async { tokio::time::sleep(Duration::from_millis(10)).await },
        )
        .await;
        assert!(taken < 100, "{taken}");
    }
}
