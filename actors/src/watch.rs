//! Run snapshots per run, for clients that wait until a run settles (`wait_ms`), and the bell
//! rung when a checkpoint arms a timer (so the timer service re-reads its deadline).
//!
//! A run's actor publishes the run as it stands after every persisted transition that leaves
//! it settled (waiting or finished). A channel exists only while someone watches the run:
//! publishing to a run nobody watches is one map lookup, and no copy of the run is made. A waiter that subscribes *before* the command it
//! waits on sees every later transition, so it can answer from the published snapshot instead
//! of reading the run back from the store.

use std::sync::Arc;

use dashmap::DashMap;
use scaff_core::run::Run;
use tokio::sync::watch;
use uuid::Uuid;

/// The latest snapshot published for a run, if any since the channel was opened.
type Snapshot = Option<Arc<Run>>;

/// Run id → the latest snapshot published for it.
#[derive(Clone, Default)]
pub struct RunWatch {
    channels: Arc<DashMap<Uuid, watch::Sender<Snapshot>>>,
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

    /// Announces a run as it now stands (persisted) to its watchers, if any — only once it
    /// has settled (waiting or finished), the only states a watcher waits for, so a run
    /// stepping on costs no copy.
    pub fn publish(&self, run: &Run) {
        if !run.status.is_settled() {
            return;
        }
        if let Some(tx) = self.channels.get(&run.id) {
            tx.send_replace(Some(Arc::new(run.clone())));
        }
    }

    /// Starts watching a run: the watcher sees every snapshot published from now on. The
    /// channel is dropped with the last watcher.
    pub fn subscribe(&self, run_id: Uuid) -> Watcher {
        let rx = self
            .channels
            .entry(run_id)
            .or_insert_with(|| watch::channel(None).0)
            .subscribe();
        Watcher {
            run_id,
            rx: Some(rx),
            watch: self.clone(),
        }
    }

    /// How many runs are being watched.
    pub fn watched(&self) -> usize {
        self.channels.len()
    }
}

/// One subscription to a run's snapshots; releases the run's channel when it is the last one
/// and is dropped.
pub struct Watcher {
    run_id: Uuid,
    rx: Option<watch::Receiver<Snapshot>>,
    watch: RunWatch,
}

impl Watcher {
    /// The run watched.
    pub fn run_id(&self) -> Uuid {
        self.run_id
    }

    /// The first snapshot (the latest published, or the next) that is settled — waiting or
    /// finished — at `min_version` or later; `None` once `deadline` passes.
    pub async fn settled(
        &mut self,
        min_version: i64,
        deadline: tokio::time::Instant,
    ) -> Option<Arc<Run>> {
        let rx = self.rx.as_mut()?;
        loop {
            let latest = rx.borrow_and_update().clone();
            if let Some(run) = latest.filter(|r| r.version >= min_version && r.status.is_settled())
            {
                return Some(run);
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                // The deadline passed, or the channel closed (it never does while we hold it).
                _ => return None,
            }
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        // Drop the receiver first, so the count no longer includes it.
        drop(self.rx.take());
        self.watch
            .channels
            .remove_if(&self.run_id, |_, tx| tx.receiver_count() == 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scaff_core::run::{Context, RunStatus};

    fn run(id: Uuid, status: RunStatus, version: i64) -> Run {
        let now = chrono::Utc::now();
        Run {
            id,
            workflow_id: "w".into(),
            workflow_version: 1,
            status,
            current_step: None,
            context: Context::default(),
            waiting: None,
            error: None,
            step_state: None,
            pins: Default::default(),
            version,
            step_seq: 0,
            event_seq: 0,
            idempotency_key: None,
            request_fingerprint: None,
            created_by: None,
            wake_at: None,
            created_at: now,
            updated_at: now,
            finished_at: None,
        }
    }

    #[tokio::test]
    async fn a_watcher_gets_the_first_settled_snapshot_at_or_after_a_version() {
        let w = RunWatch::default();
        let id = Uuid::now_v7();
        w.publish(&run(id, RunStatus::Running, 1));
        assert_eq!(w.watched(), 0, "publishing to nobody creates nothing");
        let mut watcher = w.subscribe(id);
        let far = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        // An older settled snapshot (before the command) does not count.
        w.publish(&run(id, RunStatus::Waiting, 2));
        w.publish(&run(id, RunStatus::Running, 3));
        let publisher = w.clone();
        tokio::spawn(async move { publisher.publish(&run(id, RunStatus::Completed, 5)) });
        let got = watcher.settled(3, far).await.expect("settled");
        assert_eq!((got.status, got.version), (RunStatus::Completed, 5));
        drop(watcher);
        assert_eq!(w.watched(), 0, "the last watcher releases the channel");
    }

    #[tokio::test]
    async fn a_watcher_gives_up_at_its_deadline_and_channels_outlive_other_watchers() {
        let w = RunWatch::default();
        let id = Uuid::now_v7();
        let mut first = w.subscribe(id);
        let second = w.subscribe(id);
        w.publish(&run(id, RunStatus::Running, 1));
        let soon = tokio::time::Instant::now() + std::time::Duration::from_millis(20);
        assert!(first.settled(0, soon).await.is_none(), "never settled");
        drop(second);
        assert_eq!(w.watched(), 1, "one watcher is left");
        drop(first);
        assert_eq!(w.watched(), 0);
    }
}
