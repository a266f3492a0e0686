//! What the runtime is handed: store capabilities, the clock, the step executor, settings.

use std::sync::Arc;
use std::time::Duration;

use std::future::Future;
use std::pin::Pin;

use scaff_core::run::step::{self, CompiledWorkflow, StepEvent, StepOutcome};
use scaff_core::run::{Clock, Run};
use scaff_core::store::{RunStore, TimerStore, WorkflowStore};

/// A step's result with the events it reports.
pub type StepResult = (StepOutcome, Vec<StepEvent>);

/// How a step executes: at once in the actor, or as a task whose result comes back later.
pub enum Execution {
    /// Done already (pure steps).
    Ready(StepResult),
    /// Runs in a spawned task (calls to the outside world); the actor stays responsive.
    Pending(Pin<Box<dyn Future<Output = StepResult> + Send + 'static>>),
}

/// Executes steps. The default runs the pure steps inline; tests wrap it to inject faults.
pub trait StepExecutor: Send + Sync {
    /// Executes `step_id` of `wf` for `run` (its context, kept step state and pins);
    /// `attempt` counts executions of this step, from 1.
    fn execute(
        &self,
        wf: &Arc<CompiledWorkflow>,
        step_id: &str,
        run: &Run,
        attempt: i32,
    ) -> Execution;
}

/// Executes pure steps (`form`, `conditional`, `set`) in the run actor.
#[derive(Debug, Default, Clone, Copy)]
pub struct InlineExecutor;

impl StepExecutor for InlineExecutor {
    fn execute(
        &self,
        wf: &Arc<CompiledWorkflow>,
        step_id: &str,
        run: &Run,
        _attempt: i32,
    ) -> Execution {
        Execution::Ready((step::execute(wf, step_id, &run.context), Vec::new()))
    }
}

/// Tunables of the runtime.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// How many times a run whose actor panicked is restarted from its last checkpoint before
    /// it fails with the panic message.
    pub restart_budget: u32,
    /// How long a command (submit, cancel) may wait for the run's actor to answer.
    pub call_timeout: Duration,
    /// How many times a checkpoint is retried when the store is unavailable.
    pub checkpoint_retries: u32,
    /// The first pause between checkpoint retries (doubling each time).
    pub checkpoint_backoff: Duration,
    /// The longest the timer service sleeps before re-reading the next deadline (timers armed
    /// by this process wake it sooner; this bounds the delay for timers armed elsewhere).
    pub timer_poll: Duration,
    /// How many due timers the timer service fires at once.
    pub timer_batch: u32,
    /// The most checkpoints (of different runs) written in one transaction and one commit
    /// (group commit), and the most new runs created together. Batches form while a commit is
    /// in flight, with no added delay. 1 disables batching: each checkpoint and each start is
    /// its own commit.
    pub checkpoint_batch_max: usize,
    /// How many checkpoint batches may be in flight at once (each on its own connection).
    pub checkpoint_writers: usize,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            restart_budget: 3,
            call_timeout: Duration::from_secs(30),
            checkpoint_retries: 8,
            checkpoint_backoff: Duration::from_millis(50),
            timer_poll: Duration::from_secs(30),
            timer_batch: 64,
            checkpoint_batch_max: 128,
            checkpoint_writers: 2,
        }
    }
}

/// Everything the runtime needs from outside.
#[derive(Clone)]
pub struct Deps {
    /// Runs: create, checkpoint, read.
    pub runs: Arc<dyn RunStore>,
    /// Workflow versions, to compile what runs execute.
    pub workflows: Arc<dyn WorkflowStore>,
    /// Due timers (armed by checkpoints).
    pub timers: Arc<dyn TimerStore>,
    /// The time source.
    pub clock: Arc<dyn Clock>,
    /// The step executor.
    pub executor: Arc<dyn StepExecutor>,
    /// Tunables.
    pub config: RuntimeConfig,
    /// The redaction filter applied to what a checkpoint records outside the context.
    pub redactor: scaff_core::redact::SharedRedactor,
    /// Where the runtime counts runs, steps, checkpoints and AI usage (one registry per server;
    /// `Arc::default()` gives a fresh one).
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// Back-offs at least this long park the run on a durable timer instead of sleeping in a task.
pub const PARK_THRESHOLD: Duration = Duration::from_secs(5);

/// How a step waits `wait` before its next attempt: a short wait sleeps in the next attempt's
/// task (`wait_ms`), a long one becomes a durable timer (`retry_at`), so it survives a restart
/// and holds no memory meanwhile.
pub(crate) fn back_off(
    wait: Duration,
    threshold: Duration,
) -> (u64, Option<chrono::DateTime<chrono::Utc>>) {
    if wait >= threshold {
        let at =
            chrono::Utc::now() + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX);
        (0, Some(at))
    } else {
        (wait.as_millis() as u64, None)
    }
}
