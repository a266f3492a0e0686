//! Group commit: the checkpoints of many runs written in one transaction, one commit.
//!
//! A durable engine that commits once per step cannot step faster than its database commits
//! (one flush to disk each). The [`Checkpointer`] lets every run actor hand its checkpoint to
//! one batcher task instead of writing it itself. The task takes the first checkpoint queued,
//! drains whatever else is queued behind it (up to [`RuntimeConfig::checkpoint_batch_max`]),
//! writes them all with [`RunStore::checkpoint_many`] — one transaction, one commit — and
//! answers each actor with its own result. There is no artificial delay: a batch forms while
//! the previous commit is in flight, so an idle engine writes at once and a busy one writes in
//! bigger batches.
//!
//! Durability is unchanged: an actor gets its answer only once the commit that holds its
//! checkpoint is done, and it does nothing that follows the checkpoint before that. Fencing
//! is unchanged too: each checkpoint of a batch is fenced on its own.
//!
//! [`RuntimeConfig::checkpoint_batch_max`]: crate::deps::RuntimeConfig::checkpoint_batch_max

use std::sync::Arc;

use scaff_core::store::{Checkpoint, RunStore, StoreError};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::metrics::Metrics;

/// One checkpoint waiting for its batch, and where its result goes.
pub(crate) struct Request {
    checkpoint: Arc<Checkpoint>,
    reply: oneshot::Sender<Result<i64, StoreError>>,
}

/// Where run actors write their checkpoints: straight to the store, or through the batcher.
#[derive(Clone)]
pub(crate) enum Checkpointer {
    /// Each checkpoint is its own commit (batching disabled).
    Direct(Arc<dyn RunStore>),
    /// Checkpoints queue for the batcher task.
    Batched(mpsc::UnboundedSender<Request>),
}

impl Checkpointer {
    /// Writes directly when `max_batch` is 1 (or 0); else starts the batcher task, with up to
    /// `writers` batches in flight at once. The task ends once every handle is dropped and
    /// the queue is drained.
    pub(crate) fn start(
        store: Arc<dyn RunStore>,
        metrics: Arc<Metrics>,
        max_batch: usize,
        writers: usize,
    ) -> Self {
        if max_batch <= 1 {
            return Checkpointer::Direct(store);
        }
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(batch_loop(store, metrics, rx, max_batch, writers.max(1)));
        Checkpointer::Batched(tx)
    }

    /// Writes `checkpoint` and returns the run's new version once it is committed (with
    /// the store's fencing: a stale checkpoint gets [`StoreError::Fenced`]).
    pub(crate) async fn checkpoint(&self, checkpoint: &Arc<Checkpoint>) -> Result<i64, StoreError> {
        match self {
            Checkpointer::Direct(store) => store.checkpoint(checkpoint).await,
            Checkpointer::Batched(queue) => {
                let (reply, answer) = oneshot::channel();
                let request = Request {
                    checkpoint: checkpoint.clone(),
                    reply,
                };
                queue.send(request).map_err(|_| stopped())?;
                answer.await.map_err(|_| stopped())?
            }
        }
    }
}

/// The batcher is gone (the runtime is shutting down); the checkpoint may not be written.
fn stopped() -> StoreError {
    StoreError::Unavailable("the checkpoint batcher stopped".into())
}

/// Takes what is queued (at least one, at most `max_batch`) whenever a writer is free, and
/// writes it as one batch.
async fn batch_loop(
    store: Arc<dyn RunStore>,
    metrics: Arc<Metrics>,
    mut queue: mpsc::UnboundedReceiver<Request>,
    max_batch: usize,
    writers: usize,
) {
    let free = Arc::new(Semaphore::new(writers));
    loop {
        // Wait for a free writer first: meanwhile checkpoints pile up into the next batch.
        let Ok(permit) = free.clone().acquire_owned().await else {
            return;
        };
        let mut batch = Vec::with_capacity(max_batch);
        if queue.recv_many(&mut batch, max_batch).await == 0 {
            return;
        }
        metrics.observe_checkpoint_batch(batch.len());
        let store = store.clone();
        tokio::spawn(async move {
            write(store.as_ref(), batch).await;
            drop(permit);
        });
    }
}

/// Writes one batch and answers each request with its own result.
async fn write(store: &dyn RunStore, batch: Vec<Request>) {
    let checkpoints: Vec<&Checkpoint> = batch.iter().map(|r| r.checkpoint.as_ref()).collect();
    let mut results = store.checkpoint_many(&checkpoints).await.into_iter();
    drop(checkpoints);
    for request in batch {
        let result = results.next().unwrap_or_else(|| {
            Err(StoreError::Unavailable(
                "the store answered fewer results than checkpoints".into(),
            ))
        });
        // The actor may have stopped meanwhile; its checkpoint is written either way.
        let _ = request.reply.send(result);
    }
}
