//! The runtime on its own, over the in-memory store: lifecycle, passivation and rehydration,
//! supervision with a restart budget, recovery, fencing under concurrency.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use scaff_actors::{
    CommandError, Deps, Execution, InlineExecutor, Runtime, RuntimeConfig, StepExecutor,
};
use scaff_core::run::machine::Rejection;
use scaff_core::run::step::CompiledWorkflow;
use scaff_core::run::{Clock, Context, Run, RunStatus, StepStatus, SystemClock};
use scaff_core::run::{EventRecord, StepRecord};
use scaff_core::store::{
    Checkpoint, CreatedRun, MemoryStore, NewRun, NewWorkflowVersion, Page, RunCursor, RunQuery,
    RunStore, StoreError, WorkflowStore,
};
use serde_json::{Map, Value as Json, json};
use uuid::Uuid;

const FORM_FLOW: &str = r#"
id: form_flow
name: Form flow
start_step: collect
steps:
  - id: collect
    type: form
    config: {fields: [{key: words, type: number, required: true}]}
    next: route
  - id: route
    type: conditional
    config: {when: "runtime.words > 100", then: long, else: short}
  - id: long
    type: set
    config: {values: {size: "'long'"}}
  - id: short
    type: set
    config: {values: {size: "'short'"}}
"#;

const CHAIN: &str = r#"
id: chain
name: chain
start_step: s1
steps:
  - {id: s1, type: set, config: {values: {n: "1"}}, next: s2}
  - {id: s2, type: set, config: {values: {n: "runtime.n + 1"}}, next: s3}
  - {id: s3, type: set, config: {values: {n: "runtime.n + 1"}}}
"#;

struct Harness {
    store: Arc<MemoryStore>,
    runtime: Runtime,
}

async fn harness(executor: Arc<dyn StepExecutor>, budget: u32) -> Harness {
    let config = RuntimeConfig {
        restart_budget: budget,
        call_timeout: Duration::from_secs(10),
        ..RuntimeConfig::default()
    };
    harness_over(executor, config, |store| store).await
}

/// A harness whose runtime writes runs through `runs` (given the memory store it wraps).
async fn harness_over(
    executor: Arc<dyn StepExecutor>,
    config: RuntimeConfig,
    runs: impl FnOnce(Arc<MemoryStore>) -> Arc<dyn RunStore>,
) -> Harness {
    let store = Arc::new(MemoryStore::new());
    for src in [FORM_FLOW, CHAIN] {
        let wf = scaff_core::workflow::parse(src).expect("valid");
        store
            .create_workflow(NewWorkflowVersion {
                id: wf.id.clone().expect("id"),
                name: wf.name.clone(),
                description: None,
                definition: serde_json::to_value(&wf).expect("json"),
                source: src.to_string(),
                start_step: wf.start_step.clone(),
                created_by: None,
                expected_version: None,
            })
            .await
            .expect("saved");
    }
    let deps = Deps {
        runs: runs(store.clone()),
        workflows: store.clone(),
        timers: store.clone(),
        clock: Arc::new(SystemClock),
        executor,
        config,
        redactor: Default::default(),
        metrics: Default::default(),
    };
    let runtime = Runtime::start(deps).await.expect("runtime");
    Harness { store, runtime }
}

impl Harness {
    async fn create(&self, workflow: &str) -> Run {
        let now = SystemClock.now();
        let created = self
            .store
            .create_run(NewRun {
                id: Uuid::now_v7(),
                workflow_id: workflow.into(),
                workflow_version: 1,
                context: Context::default(),
                pins: Default::default(),
                idempotency_key: None,
                request_fingerprint: None,
                created_by: None,
                created_at: now,
                events: Vec::new(),
            })
            .await
            .expect("created");
        let CreatedRun::New(run) = created else {
            panic!("new run expected")
        };
        run
    }

    async fn start(&self, workflow: &str) -> Run {
        let run = self.create(workflow).await;
        self.runtime.launch(run.clone()).await.expect("launched");
        run
    }

    async fn settled(&self, id: Uuid) -> Run {
        self.runtime
            .wait_settled(id, Duration::from_secs(10))
            .await
            .expect("read")
            .expect("exists")
    }

    /// Waits (bounded) until no run actor is alive.
    async fn all_passivated(&self) -> bool {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while tokio::time::Instant::now() < deadline {
            if self.runtime.live_count() == 0 {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        false
    }
}

fn words(n: i64) -> Map<String, Json> {
    json!({"words": n}).as_object().expect("object").clone()
}

#[tokio::test]
async fn a_run_waits_passivates_and_resumes_to_completion() {
    let h = harness(Arc::new(InlineExecutor), 3).await;
    let run = h.start("form_flow").await;
    let waiting = h.settled(run.id).await;
    assert_eq!(waiting.status, RunStatus::Waiting);
    assert_eq!(
        waiting.waiting.as_ref().map(|w| w.step_id.as_str()),
        Some("collect")
    );
    assert!(h.all_passivated().await, "a waiting run holds no actor");

    let after = h
        .runtime
        .submit(
            run.id,
            "collect",
            waiting.version,
            words(500),
            Some("alice".into()),
        )
        .await
        .expect("accepted");
    assert_eq!(after.status, RunStatus::Running);
    let done = h.settled(run.id).await;
    assert_eq!(done.status, RunStatus::Completed);
    assert_eq!(
        done.context.runtime,
        *json!({"words": 500, "size": "long"})
            .as_object()
            .expect("obj")
    );
    let steps: Vec<String> = h
        .store
        .run_steps(run.id)
        .await
        .expect("steps")
        .into_iter()
        .map(|s| s.step_id)
        .collect();
    assert_eq!(steps, ["collect", "route", "long"]);
    assert!(h.all_passivated().await, "a finished run holds no actor");
}

#[tokio::test]
async fn refused_inputs_leave_the_run_waiting() {
    let h = harness(Arc::new(InlineExecutor), 3).await;
    let run = h.start("form_flow").await;
    let waiting = h.settled(run.id).await;
    let invalid = h
        .runtime
        .submit(run.id, "collect", waiting.version, Map::new(), None)
        .await;
    assert!(
        matches!(invalid, Err(CommandError::Rejected(Rejection::Invalid(_)))),
        "{invalid:?}"
    );
    let stale = h
        .runtime
        .submit(run.id, "collect", waiting.version - 1, words(1), None)
        .await;
    assert!(
        matches!(stale, Err(CommandError::Rejected(Rejection::Stale))),
        "{stale:?}"
    );
    let still = h.store.get_run(run.id).await.expect("read").expect("run");
    assert_eq!(
        (still.status, still.version),
        (RunStatus::Waiting, waiting.version)
    );
}

#[tokio::test]
async fn concurrent_resumes_of_one_run_succeed_exactly_once() {
    let h = Arc::new(harness(Arc::new(InlineExecutor), 3).await);
    let run = h.start("form_flow").await;
    let waiting = h.settled(run.id).await;
    assert!(h.all_passivated().await);
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let h = h.clone();
            let version = waiting.version;
            tokio::spawn(async move {
                h.runtime
                    .submit(run.id, "collect", version, words(i), None)
                    .await
            })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        match t.await.expect("join") {
            Ok(_) => ok += 1,
            Err(CommandError::Rejected(_)) => {}
            Err(other) => panic!("unexpected error {other:?}"),
        }
    }
    assert_eq!(ok, 1);
    assert_eq!(h.settled(run.id).await.status, RunStatus::Completed);
    let collects = h
        .store
        .run_steps(run.id)
        .await
        .expect("steps")
        .iter()
        .filter(|s| s.step_id == "collect")
        .count();
    assert_eq!(collects, 1, "the form step is recorded once");
}

#[tokio::test]
async fn cancel_stops_a_waiting_run_and_finished_runs_refuse_it() {
    let h = harness(Arc::new(InlineExecutor), 3).await;
    let run = h.start("form_flow").await;
    h.settled(run.id).await;
    let canceled = h
        .runtime
        .cancel(run.id, Some("ops".into()), None)
        .await
        .expect("canceled");
    assert_eq!(canceled.status, RunStatus::Canceled);
    let again = h.runtime.cancel(run.id, None, None).await;
    assert!(
        matches!(
            again,
            Err(CommandError::Rejected(Rejection::Terminal(
                RunStatus::Canceled
            )))
        ),
        "{again:?}"
    );
    let missing = h.runtime.cancel(Uuid::now_v7(), None, None).await;
    assert!(matches!(missing, Err(CommandError::NotFound)));
}

/// Panics on `step` for its first `times` executions, then behaves.
struct Flaky {
    step: &'static str,
    times: u32,
    seen: AtomicU32,
}

impl StepExecutor for Flaky {
    fn execute(
        &self,
        wf: &Arc<CompiledWorkflow>,
        step_id: &str,
        run: &Run,
        attempt: i32,
    ) -> Execution {
        if step_id == self.step && self.seen.fetch_add(1, Ordering::SeqCst) < self.times {
            panic!("injected fault in {step_id}");
        }
        InlineExecutor.execute(wf, step_id, run, attempt)
    }
}

#[tokio::test]
async fn a_panicking_step_restarts_from_the_last_checkpoint() {
    let flaky = Arc::new(Flaky {
        step: "s2",
        times: 2,
        seen: AtomicU32::new(0),
    });
    let h = harness(flaky.clone(), 3).await;
    let run = h.start("chain").await;
    let done = h.settled(run.id).await;
    assert_eq!(done.status, RunStatus::Completed, "{:?}", done.error);
    assert_eq!(done.context.runtime.get("n"), Some(&json!(3)));
    assert_eq!(
        flaky.seen.load(Ordering::SeqCst),
        3,
        "two panics, one success"
    );
    let steps: Vec<String> = h
        .store
        .run_steps(run.id)
        .await
        .expect("steps")
        .into_iter()
        .map(|s| s.step_id)
        .collect();
    assert_eq!(
        steps,
        ["s1", "s2", "s3"],
        "s1 was not redone: it was checkpointed"
    );
}

#[tokio::test]
async fn past_the_restart_budget_the_run_fails_with_the_panic_message() {
    let flaky = Arc::new(Flaky {
        step: "s2",
        times: 100,
        seen: AtomicU32::new(0),
    });
    let h = harness(flaky.clone(), 2).await;
    let run = h.start("chain").await;
    let failed = h.settled(run.id).await;
    assert_eq!(failed.status, RunStatus::Failed);
    let error = failed.error.expect("error");
    assert_eq!(error.code, "step.panicked");
    assert!(
        error.message.contains("injected fault in s2"),
        "{}",
        error.message
    );
    assert_eq!(
        flaky.seen.load(Ordering::SeqCst),
        3,
        "the first try and two restarts"
    );
    let steps = h.store.run_steps(run.id).await.expect("steps");
    assert_eq!(
        steps.last().map(|s| (s.step_id.as_str(), s.status)),
        Some(("s2", StepStatus::Failed))
    );
    assert!(h.all_passivated().await);
}

#[tokio::test]
async fn recovery_continues_runs_left_unfinished() {
    let h = harness(Arc::new(InlineExecutor), 3).await;
    // Runs created but never launched, as a crash between create and launch leaves them.
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(h.create("chain").await.id);
    }
    ids.push(h.create("form_flow").await.id);
    assert_eq!(h.runtime.recover().await.expect("recovered"), 6);
    for id in &ids[..5] {
        let run = h.settled(*id).await;
        assert_eq!(run.status, RunStatus::Completed);
        assert_eq!(
            h.store.run_steps(*id).await.expect("steps").len(),
            3,
            "each step once"
        );
    }
    assert_eq!(h.settled(ids[5]).await.status, RunStatus::Waiting);
    assert_eq!(h.runtime.recover().await.expect("nothing left"), 0);
}

#[tokio::test]
async fn many_parked_runs_hold_no_actors() {
    let h = harness(Arc::new(InlineExecutor), 3).await;
    let mut ids = Vec::new();
    for _ in 0..500 {
        ids.push(h.start("form_flow").await.id);
    }
    for id in &ids {
        assert_eq!(h.settled(*id).await.status, RunStatus::Waiting);
    }
    assert!(h.all_passivated().await);
    let pick = ids[317];
    let version = h.settled(pick).await.version;
    h.runtime
        .submit(pick, "collect", version, words(1), None)
        .await
        .expect("resumed");
    assert_eq!(h.settled(pick).await.status, RunStatus::Completed);
}

#[tokio::test(start_paused = true)]
async fn waiting_for_a_run_that_does_not_settle_ends_at_the_deadline() {
    let h = harness(Arc::new(InlineExecutor), 3).await;
    let run = h.create("chain").await; // never launched: stays queued
    let started = tokio::time::Instant::now();
    let seen = h
        .runtime
        .wait_settled(run.id, Duration::from_secs(30))
        .await
        .expect("read")
        .expect("run");
    assert_eq!(seen.status, RunStatus::Queued);
    assert!(
        started.elapsed() >= Duration::from_secs(30),
        "waited the whole deadline (virtual time)"
    );
    assert_eq!(
        h.runtime.watch().watched(),
        0,
        "the watch channel was released"
    );
}

/// The memory store, with each checkpoint batch taking a while (as a commit does), counting
/// batches and their sizes.
struct SlowCommits {
    inner: Arc<MemoryStore>,
    batches: AtomicU32,
    largest: AtomicU32,
}

#[async_trait::async_trait]
impl RunStore for SlowCommits {
    async fn create_run(&self, new: NewRun) -> Result<CreatedRun, StoreError> {
        self.inner.create_run(new).await
    }
    async fn get_run(&self, id: Uuid) -> Result<Option<Run>, StoreError> {
        self.inner.get_run(id).await
    }
    async fn list_runs(&self, query: &RunQuery) -> Result<Page<Run, RunCursor>, StoreError> {
        self.inner.list_runs(query).await
    }
    async fn checkpoint(&self, cp: &Checkpoint) -> Result<i64, StoreError> {
        self.checkpoint_many(&[cp]).await.remove(0)
    }
    async fn checkpoint_many(&self, batch: &[&Checkpoint]) -> Vec<Result<i64, StoreError>> {
        self.batches.fetch_add(1, Ordering::SeqCst);
        let size = u32::try_from(batch.len()).unwrap_or(u32::MAX);
        self.largest.fetch_max(size, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(2)).await;
        self.inner.checkpoint_many(batch).await
    }
    async fn run_steps(&self, id: Uuid) -> Result<Vec<StepRecord>, StoreError> {
        self.inner.run_steps(id).await
    }
    async fn run_events(&self, id: Uuid) -> Result<Vec<EventRecord>, StoreError> {
        self.inner.run_events(id).await
    }
    async fn unfinished_runs(&self) -> Result<Vec<Uuid>, StoreError> {
        self.inner.unfinished_runs().await
    }
    async fn count_runs(&self, status: RunStatus) -> Result<u64, StoreError> {
        self.inner.count_runs(status).await
    }
}

/// Runs `n` chain runs at once over a store whose commits take 2 ms; returns the store.
async fn many_chains(n: usize, batch_max: usize, writers: usize) -> Arc<SlowCommits> {
    let mut slow = None;
    let config = RuntimeConfig {
        checkpoint_batch_max: batch_max,
        checkpoint_writers: writers,
        ..RuntimeConfig::default()
    };
    let h = harness_over(Arc::new(InlineExecutor), config, |inner| {
        let store = Arc::new(SlowCommits {
            inner,
            batches: AtomicU32::new(0),
            largest: AtomicU32::new(0),
        });
        slow = Some(store.clone());
        store
    })
    .await;
    let mut runs = Vec::new();
    for _ in 0..n {
        runs.push(h.start("chain").await);
    }
    for run in &runs {
        let done = h.settled(run.id).await;
        assert_eq!(done.status, RunStatus::Completed, "{done:?}");
        assert_eq!(done.context.runtime.get("n"), Some(&json!(3)));
        let steps: Vec<String> = h
            .store
            .run_steps(run.id)
            .await
            .expect("steps")
            .into_iter()
            .map(|s| s.step_id)
            .collect();
        assert_eq!(steps, ["s1", "s2", "s3"], "each step exactly once");
    }
    assert!(h.all_passivated().await);
    h.runtime.shutdown(Duration::from_secs(5)).await;
    slow.expect("the store was built")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_runs_complete_with_group_commit() {
    let store = many_chains(200, 128, 1).await;
    let largest = store.largest.load(Ordering::SeqCst);
    let batches = store.batches.load(Ordering::SeqCst);
    assert!(largest > 1, "checkpoints of several runs shared a commit");
    assert!(largest <= 128, "a batch holds at most checkpoint_batch_max");
    // 200 runs × 4 checkpoints (start + 3 steps) in far fewer commits.
    assert!(batches < 400, "{batches} commits for 800 checkpoints");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_works_with_several_writers_and_can_be_disabled() {
    let store = many_chains(100, 16, 3).await;
    assert!(store.largest.load(Ordering::SeqCst) <= 16);
    let store = many_chains(50, 1, 1).await;
    assert_eq!(
        store.largest.load(Ordering::SeqCst),
        1,
        "batch max 1: every checkpoint its own commit"
    );
}

/// A run launched from its creation snapshot is not re-read when its first step does not
/// reach out: a stale copy (the run moved on meanwhile) is fenced off at its first checkpoint
/// and changes nothing.
#[tokio::test]
async fn a_stale_creation_snapshot_is_fenced_off_and_changes_nothing() {
    let h = harness(Arc::new(InlineExecutor), 3).await;
    let snapshot = h.start("form_flow").await;
    let waiting = h.settled(snapshot.id).await;
    assert_eq!(waiting.status, RunStatus::Waiting);
    assert!(h.all_passivated().await, "the waiting run holds no actor");
    let events = h.store.run_events(snapshot.id).await.expect("events");

    // The stale queued snapshot (version 0) is launched again as if freshly created. Spawning
    // it unread is allowed; refusing it would be too. Either way nothing may change.
    let _spawned_or_refused = h.runtime.launch(snapshot.clone()).await;
    assert!(h.all_passivated().await, "the stale actor stopped");
    let after = h.settled(snapshot.id).await;
    assert_eq!(after, waiting, "the run is as it was");
    assert_eq!(
        h.store.run_events(snapshot.id).await.expect("events"),
        events,
        "no event was added"
    );
}
