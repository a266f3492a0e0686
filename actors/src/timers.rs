//! The timer service: one task that sleeps until the next durable timer is due, fires due
//! timers into their runs (rehydrating them), and retires them.
//!
//! Firing is at-least-once: a timer is deleted only after its run answered. A timer whose run
//! has moved on is refused by the state machine (its version fence) and retired without
//! effect, so firing one twice is harmless. The service sleeps until the earliest deadline,
//! at most `timer_poll`; a checkpoint that arms a timer rings [`RunWatch::timers_armed`] so a
//! nearer deadline is not overslept.

use std::time::Duration;

use scaff_core::store::Timer;
use tokio::task::JoinSet;

use crate::error::CommandError;
use crate::runtime::Runtime;

/// How long the service waits after a store error before trying again.
const ERROR_PAUSE: Duration = Duration::from_secs(1);

/// Runs the timer loop until the task is aborted.
pub(crate) async fn run(runtime: Runtime) {
    let deps = runtime.deps().clone();
    let watch = runtime.watch().clone();
    loop {
        let now = deps.clock.now();
        let due = match deps.timers.due_timers(now, deps.config.timer_batch).await {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read due timers; retrying");
                tokio::time::sleep(ERROR_PAUSE).await;
                continue;
            }
        };
        let full = due.len() as u32 >= deps.config.timer_batch;
        let mut firing = JoinSet::new();
        for timer in due {
            let runtime = runtime.clone();
            firing.spawn(async move { fire(&runtime, timer).await });
        }
        let mut failed = false;
        while let Some(done) = firing.join_next().await {
            failed |= !matches!(done, Ok(true));
        }
        if failed {
            tokio::time::sleep(ERROR_PAUSE).await;
            continue;
        }
        if full {
            continue;
        }
        let sleep = match deps.timers.next_timer_at().await {
            Ok(Some(at)) => (at - deps.clock.now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .min(deps.config.timer_poll),
            Ok(None) => deps.config.timer_poll,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the next timer; retrying");
                ERROR_PAUSE
            }
        };
        if sleep.is_zero() {
            continue;
        }
        tokio::select! {
            () = tokio::time::sleep(sleep) => {}
            () = watch.timers_changed() => {}
        }
    }
}

/// Fires one timer; `true` when it is retired (fired, or stale), `false` to try again later.
async fn fire(runtime: &Runtime, timer: Timer) -> bool {
    let spec = &timer.spec;
    let result = runtime
        .fire_timer(
            timer.run_id,
            spec.kind,
            &spec.step_id,
            spec.version,
            spec.nth,
        )
        .await;
    match result {
        Ok(_) => {
            tracing::info!(run_id = %timer.run_id, step_id = %spec.step_id, kind = spec.kind.as_str(), "timer fired");
        }
        Err(CommandError::Rejected(rejection)) => {
            tracing::debug!(run_id = %timer.run_id, kind = spec.kind.as_str(), ?rejection, "timer no longer applies");
        }
        Err(CommandError::NotFound) => {}
        Err(e) => {
            tracing::warn!(run_id = %timer.run_id, kind = spec.kind.as_str(), error = %e, "timer could not fire; it will be retried");
            return false;
        }
    }
    match runtime.deps().timers.delete_timer(timer.id).await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(timer_id = %timer.id, error = %e, "cannot retire a fired timer; it will fire again (harmlessly)");
            false
        }
    }
}
