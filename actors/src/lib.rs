//! Scaff's durable-actor runtime on ractor: one supervised actor per *executing* run.
//!
//! A run actor owns its run's state, executes one step at a time through the pure state machine
//! (`scaff_core::run::machine`), checkpoints after every step, and stops when the run waits
//! (passivation) or ends. A supervisor actor alone spawns run actors — so a run never has two —
//! restarts a run whose step panicked from its last checkpoint (within a budget), and tracks the
//! live actors in a lock-free map. Waiting runs hold no memory; a resume rehydrates them from
//! the store. At start-up, [`Runtime::recover`] continues every run a crash left unfinished.
//!
//! # Layout
//! - [`runtime`]: the [`Runtime`] handle the API calls (start, submit, cancel, recover, wait).
//! - `supervisor`: the spawning and supervising actor.
//! - `run_actor`: the per-run actor.
//! - [`ai_step`]: the `ai_generate` executor (provider calls, schema retries, back-off).
//! - [`api_step`]: the `api_call` executor (rendered requests through the HTTP port, retries).
//! - `batcher`: group commit — the checkpoints of many runs written in one transaction.
//! - [`deps`]: what the runtime is given: store ports, clock, step executor, settings.
//! - [`trace`]: the `run` and `step` spans and how they join distributed traces.
//! - [`watch`]: run snapshots after each transition, for clients that wait for a run to settle.
//! - [`events`]: the hub of persisted lifecycle events, for live streams.
//! - [`metrics`]: the Prometheus registry the runtime and the API record into.
//! - `timers`: the timer service firing durable timers (deadlines, reminders, back-offs).
//! - `workflows`: compiled workflow versions, cached and shared.
//! - [`error`]: what runtime commands can fail with.

pub mod ai_step;
pub mod api_step;
mod batcher;
pub mod deps;
pub mod error;
pub mod events;
pub mod metrics;
mod run_actor;
pub mod runtime;
mod supervisor;
mod timers;
pub mod trace;
pub mod watch;
mod workflows;

pub use ai_step::{AiSettings, DefaultExecutor};
pub use api_step::HttpStepSettings;
pub use deps::{Deps, Execution, InlineExecutor, RuntimeConfig, StepExecutor, StepResult};
pub use error::CommandError;
pub use events::{EventHub, RunEvent, RunSubscription};
pub use metrics::Metrics;
pub use runtime::Runtime;
pub use watch::{RunWatch, Watcher};
