//! Tracing spans of runs and steps, and how they join distributed traces.
//!
//! Every *segment* of a run — from the moment an actor starts executing it until the run waits
//! (passivates), ends or the actor stops — is a `run` span carrying `run_id`, `workflow_id`
//! and `workflow_version`; every step execution is a `step` span inside it (`run_id`,
//! `step_id`, `step_type`, `workflow_id`, `workflow_version`, `attempt`), and the `ai.call` /
//! `http.call` spans of `ai_generate` / `api_call` steps nest inside their step span.
//!
//! This crate only makes `tracing` spans. Joining them into an OpenTelemetry trace — making
//! every segment of a run part of one trace, linking a segment to the caller's W3C
//! `traceparent` — is the job of a [`SegmentLinker`] the composition root installs with
//! [`install`]; without one the spans are plain `tracing` spans.

use std::sync::{Arc, OnceLock};

use scaff_core::run::{EventRecord, Run, RunStatus};
use uuid::Uuid;

/// A W3C `traceparent` header value a request carried (shared, cheap to clone).
pub type TraceParent = Arc<str>;

/// Connects the span of a run segment to its trace (installed once per process).
pub trait SegmentLinker: Send + Sync + 'static {
    /// Called once for each new segment span, before the span is entered. `first` says the
    /// segment starts the run (its status was `queued`); `caller` is the `traceparent` of the
    /// request that started or resumed it, if any.
    fn link_segment(&self, span: &tracing::Span, run_id: Uuid, first: bool, caller: Option<&str>);
}

static LINKER: OnceLock<Box<dyn SegmentLinker>> = OnceLock::new();

/// Installs the process-wide [`SegmentLinker`]; `false` when one was installed already.
pub fn install(linker: impl SegmentLinker) -> bool {
    LINKER.set(Box::new(linker)).is_ok()
}

/// The span of a run segment starting now for `run`, joined to its trace.
pub(crate) fn segment_span(run: &Run, caller: Option<&str>) -> tracing::Span {
    let span = tracing::info_span!(
        parent: None,
        "run",
        run_id = %run.id,
        workflow_id = %run.workflow_id,
        workflow_version = run.workflow_version,
        status = tracing::field::Empty,
    );
    if let Some(linker) = LINKER.get() {
        linker.link_segment(&span, run.id, run.status == RunStatus::Queued, caller);
    }
    span
}

/// The target of lifecycle events: exported as span events, kept out of the log at `info`.
pub const LIFECYCLE_TARGET: &str = "scaff_actors::lifecycle";

/// Records persisted lifecycle events (`run.started`, `step.completed`, …) as events of the
/// segment span, at DEBUG under [`LIFECYCLE_TARGET`] (their data is in the events table).
pub(crate) fn lifecycle_events(segment: &tracing::Span, events: &[EventRecord]) {
    for e in events {
        tracing::debug!(
            target: LIFECYCLE_TARGET,
            parent: segment,
            step_id = e.step_id.as_deref().unwrap_or(""),
            actor = e.actor.as_deref().unwrap_or(""),
            "{}",
            e.kind
        );
    }
}

/// The span of one execution of `step_id` (a child of the segment span `parent`).
pub(crate) fn step_span(
    parent: &tracing::Span,
    run: &Run,
    step_id: &str,
    step_type: &str,
    attempt: i32,
) -> tracing::Span {
    tracing::info_span!(
        parent: parent,
        "step",
        run_id = %run.id,
        step_id,
        step_type,
        workflow_id = %run.workflow_id,
        workflow_version = run.workflow_version,
        attempt,
    )
}
