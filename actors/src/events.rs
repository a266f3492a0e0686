//! The in-process hub of lifecycle events, for live streams (`/v1/executions/{id}/stream`,
//! `/v1/events/stream`).
//!
//! A run actor publishes the events of a checkpoint right after the checkpoint is persisted, so
//! every event a subscriber sees is already in the store (and already redacted). Publishing is
//! fire-and-forget and never blocks the actor: with nobody listening it is a counter read and
//! one map lookup; a subscriber that falls behind loses the oldest events
//! ([`broadcast::error::RecvError::Lagged`]) and is expected to re-read the store.
//!
//! Two kinds of subscription exist: [`EventHub::subscribe`] sees every run's events (and pays
//! for filtering them), [`EventHub::subscribe_run`] only one run's, through a channel created on
//! demand and dropped with its last subscriber. The hub is per process: with several nodes
//! sharing a database, a run executing on another node is seen only through the store.

use std::sync::Arc;

use dashmap::DashMap;
use scaff_core::run::{EventRecord, Run, RunStatus};
use tokio::sync::{broadcast, watch};
use uuid::Uuid;

/// How many events the all-runs channel buffers for its slowest subscriber.
pub const ALL_RUNS_CAPACITY: usize = 4096;

/// How many events a per-run channel buffers for its slowest subscriber.
pub const PER_RUN_CAPACITY: usize = 256;

/// One persisted lifecycle event of a run, with the run facts a filter needs.
#[derive(Debug, Clone, PartialEq)]
pub struct RunEvent {
    /// The run.
    pub run_id: Uuid,
    /// The run's workflow.
    pub workflow_id: String,
    /// The workflow version the run executes.
    pub workflow_version: i64,
    /// The run's status after the checkpoint that wrote the event.
    pub status: RunStatus,
    /// The event as stored.
    pub event: EventRecord,
}

/// The publishing side and subscription point of live events; cheap to clone.
#[derive(Clone)]
pub struct EventHub {
    inner: Arc<Inner>,
}

struct Inner {
    all: broadcast::Sender<Arc<RunEvent>>,
    runs: DashMap<Uuid, broadcast::Sender<Arc<RunEvent>>>,
    closing: watch::Sender<bool>,
}

impl Default for EventHub {
    fn default() -> Self {
        Self::new(ALL_RUNS_CAPACITY)
    }
}

impl EventHub {
    /// A hub whose all-runs channel buffers `capacity` events (at least 1).
    pub fn new(capacity: usize) -> Self {
        let (all, _) = broadcast::channel(capacity.max(1));
        let (closing, _) = watch::channel(false);
        Self {
            inner: Arc::new(Inner {
                all,
                runs: DashMap::new(),
                closing,
            }),
        }
    }

    /// Publishes `events` of `run`, in order, as written by a checkpoint that left the run in
    /// `status`. Never blocks; costs almost nothing when nobody listens.
    pub fn publish(&self, run: &Run, status: RunStatus, events: &[EventRecord]) {
        self.publish_for(
            run.id,
            &run.workflow_id,
            run.workflow_version,
            status,
            events,
        );
    }

    /// [`EventHub::publish`] with the run's facts given one by one.
    pub fn publish_for(
        &self,
        run_id: Uuid,
        workflow_id: &str,
        workflow_version: i64,
        status: RunStatus,
        events: &[EventRecord],
    ) {
        if events.is_empty() {
            return;
        }
        let everyone = self.inner.all.receiver_count() > 0;
        let one = self.inner.runs.get(&run_id);
        if !everyone && one.is_none() {
            return;
        }
        for event in events {
            let item = Arc::new(RunEvent {
                run_id,
                workflow_id: workflow_id.to_string(),
                workflow_version,
                status,
                event: event.clone(),
            });
            if let Some(tx) = one.as_deref() {
                // An error means its last subscriber just left; the channel is being dropped.
                let _ = tx.send(item.clone());
            }
            if everyone {
                let _ = self.inner.all.send(item);
            }
        }
    }

    /// Receives every run's events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<RunEvent>> {
        self.inner.all.subscribe()
    }

    /// Receives one run's events from now on. Subscribe *before* reading the run's stored
    /// events, so that nothing falls between the two (and de-duplicate by `seq`).
    pub fn subscribe_run(&self, run_id: Uuid) -> RunSubscription {
        let rx = self
            .inner
            .runs
            .entry(run_id)
            .or_insert_with(|| broadcast::channel(PER_RUN_CAPACITY).0)
            .subscribe();
        RunSubscription {
            rx: Some(rx),
            run_id,
            hub: self.clone(),
        }
    }

    /// Tells every stream to end (the server is shutting down, and its graceful shutdown
    /// waits for open responses). Publishing keeps working.
    pub fn close(&self) {
        self.inner.closing.send_replace(true);
    }

    /// A receiver whose value turns `true` when [`EventHub::close`] is called.
    pub fn closing(&self) -> watch::Receiver<bool> {
        self.inner.closing.subscribe()
    }

    /// Subscribers of the all-runs channel, and runs with a channel of their own.
    pub fn subscribers(&self) -> (usize, usize) {
        (self.inner.all.receiver_count(), self.inner.runs.len())
    }
}

/// A subscription to one run's events; its channel goes away with its last subscriber.
pub struct RunSubscription {
    rx: Option<broadcast::Receiver<Arc<RunEvent>>>,
    run_id: Uuid,
    hub: EventHub,
}

impl RunSubscription {
    /// The next event of the run; see [`broadcast::Receiver::recv`] for the errors (`Lagged`
    /// after missed events, `Closed` never while the hub lives).
    pub async fn recv(&mut self) -> Result<Arc<RunEvent>, broadcast::error::RecvError> {
        match self.rx.as_mut() {
            Some(rx) => rx.recv().await,
            None => Err(broadcast::error::RecvError::Closed),
        }
    }
}

impl Drop for RunSubscription {
    fn drop(&mut self) {
        drop(self.rx.take());
        self.hub
            .inner
            .runs
            .remove_if(&self.run_id, |_, tx| tx.receiver_count() == 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish(hub: &EventHub, run_id: Uuid, status: RunStatus, events: &[EventRecord]) {
        hub.publish_for(run_id, "wf", 2, status, events);
    }

    fn event(seq: i32, kind: &str) -> EventRecord {
        EventRecord {
            seq,
            kind: kind.into(),
            step_id: None,
            actor: None,
            data: serde_json::json!({}),
            created_at: chrono::Utc::now(),
        }
    }

    #[tokio::test]
    async fn subscribers_see_events_in_order_with_run_facts() {
        let hub = EventHub::default();
        let r = Uuid::now_v7();
        let mut all = hub.subscribe();
        let mut one = hub.subscribe_run(r);
        let mut other = hub.subscribe_run(Uuid::now_v7());
        publish(
            &hub,
            r,
            RunStatus::Completed,
            &[event(4, "step.completed"), event(5, "run.completed")],
        );
        for seq in [4, 5] {
            let a = all.recv().await.expect("all");
            let b = one.recv().await.expect("one");
            assert_eq!(a, b);
            assert_eq!(a.event.seq, seq);
            assert_eq!(a.run_id, r);
            assert_eq!(a.workflow_id, "wf");
            assert_eq!(a.workflow_version, 2);
            assert_eq!(a.status, RunStatus::Completed);
        }
        assert!(matches!(
            other.rx.as_mut().map(|rx| rx.try_recv()),
            Some(Err(broadcast::error::TryRecvError::Empty))
        ));
    }

    #[tokio::test]
    async fn per_run_channels_leave_with_their_last_subscriber() {
        let hub = EventHub::default();
        let r = Uuid::now_v7();
        publish(&hub, r, RunStatus::Running, &[event(1, "run.started")]);
        assert_eq!(
            hub.subscribers(),
            (0, 0),
            "publishing to nobody creates nothing"
        );
        let a = hub.subscribe_run(r);
        let b = hub.subscribe_run(r);
        assert_eq!(hub.subscribers(), (0, 1));
        drop(a);
        assert_eq!(hub.subscribers(), (0, 1));
        drop(b);
        assert_eq!(hub.subscribers(), (0, 0));
    }

    #[tokio::test]
    async fn a_slow_subscriber_lags_instead_of_blocking() {
        let hub = EventHub::new(2);
        let r = Uuid::now_v7();
        let mut all = hub.subscribe();
        let events: Vec<_> = (1..=5).map(|s| event(s, "step.completed")).collect();
        publish(&hub, r, RunStatus::Running, &events);
        assert!(matches!(
            all.recv().await,
            Err(broadcast::error::RecvError::Lagged(3))
        ));
        assert_eq!(all.recv().await.expect("after lag").event.seq, 4);
    }

    #[tokio::test]
    async fn close_is_observed() {
        let hub = EventHub::default();
        let mut closing = hub.closing();
        assert!(!*closing.borrow());
        hub.close();
        closing.wait_for(|c| *c).await.expect("closed");
    }
}
