//! Status notifications per run, for clients that wait until a run settles (`wait_ms`), and
//! the bell rung when a checkpoint arms a timer (so the timer service re-reads its deadline).
//!
//! A channel exists only while someone watches the run; publishing to a run nobody watches is
//! one map lookup. Subscribe *before* reading the run from the store, so no change is missed.

use std::sync::Arc;

use dashmap::DashMap;
use scaff_core::run::RunStatus;
use tokio::sync::watch;
use uuid::Uuid;

/// Run id → the latest (status, version) published for it.
#[derive(Clone, Default)]
pub struct RunWatch {
    channels: Arc<DashMap<Uuid, watch::Sender<(RunStatus, i64)>>>,
    timers: Arc<tokio::sync::Notify>,
}

impl RunWatch {
    /// Tells the timer service that a checkpoint armed timers.
    pub fn timers_armed(&self) {
        self.timers.notify_one();
    }

    /// Resolves after the next [`RunWatch::timers_armed`] (or at once if one is pending).
    pub async fn timers_changed(&self) {
        self.timers.notified().await;
    }

    /// Announces a run's new status and version to its watchers, if any.
    pub fn publish(&self, run_id: Uuid, status: RunStatus, version: i64) {
        if let Some(tx) = self.channels.get(&run_id) {
            tx.send_replace((status, version));
        }
    }

    /// Starts watching a run; `changed()` on the receiver resolves at the next publish.
    pub fn subscribe(&self, run_id: Uuid) -> watch::Receiver<(RunStatus, i64)> {
        self.channels
            .entry(run_id)
            .or_insert_with(|| watch::channel((RunStatus::Queued, -1)).0)
            .subscribe()
    }

    /// Drops the run's channel once nobody watches it any more.
    pub fn release(&self, run_id: Uuid) {
        self.channels
            .remove_if(&run_id, |_, tx| tx.receiver_count() == 0);
    }

    /// How many runs are being watched.
    pub fn watched(&self) -> usize {
        self.channels.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn watchers_see_publishes_and_channels_are_released() {
        let w = RunWatch::default();
        let id = Uuid::now_v7();
        w.publish(id, RunStatus::Running, 1);
        assert_eq!(w.watched(), 0, "publishing to nobody creates nothing");
        let mut rx = w.subscribe(id);
        w.publish(id, RunStatus::Waiting, 2);
        rx.changed().await.expect("changed");
        assert_eq!(*rx.borrow(), (RunStatus::Waiting, 2));
        drop(rx);
        w.release(id);
        assert_eq!(w.watched(), 0);
    }
}
