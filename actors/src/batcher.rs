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
//! Starts are batched the same way ([`Creator`]): the runs created by many concurrent
//! `POST /v1/executions` share one statement and one commit ([`RunStore::create_runs`]).
//!
//! [`RuntimeConfig::checkpoint_batch_max`]: crate::deps::RuntimeConfig::checkpoint_batch_max

use std::future::Future;
use std::sync::Arc;

use scaff_core::store::{Checkpoint, CreatedRun, NewRun, RunStore, StoreError};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::metrics::Metrics;

/// One item waiting for its batch, and where its result goes.
pub(crate) struct Request<T, R> {
    item: T,
    reply: oneshot::Sender<Result<R, StoreError>>,
}

/// The queue of a batcher task.
type Queue<T, R> = mpsc::UnboundedSender<Request<T, R>>;

/// Where run actors write their checkpoints: straight to the store, or through the batcher.
#[derive(Clone)]
pub(crate) enum Checkpointer {
    /// Each checkpoint is its own commit (batching disabled).
    Direct(Arc<dyn RunStore>),
    /// Checkpoints queue for the batcher task.
    Batched(Queue<Arc<Checkpoint>, i64>),
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
        Checkpointer::Batched(spawn_batcher(max_batch, writers, move |batch| {
            let store = store.clone();
            metrics.observe_checkpoint_batch(batch.len());
            async move {
                let checkpoints: Vec<&Checkpoint> = batch.iter().map(AsRef::as_ref).collect();
                store.checkpoint_many(&checkpoints).await
            }
        }))
    }

    /// Writes `checkpoint` and returns the run's new version once it is committed (with
    /// the store's fencing: a stale checkpoint gets [`StoreError::Fenced`]).
    pub(crate) async fn checkpoint(&self, checkpoint: &Arc<Checkpoint>) -> Result<i64, StoreError> {
        match self {
            Checkpointer::Direct(store) => store.checkpoint(checkpoint).await,
            Checkpointer::Batched(queue) => submit(queue, checkpoint.clone()).await,
        }
    }
}

/// Where the API creates runs: straight in the store, or through a batcher task that writes
/// the starts queued meanwhile together ([`RunStore::create_runs`]).
#[derive(Clone)]
pub(crate) enum Creator {
    /// Each run is its own commit (batching disabled).
    Direct(Arc<dyn RunStore>),
    /// Starts queue for the batcher task.
    Batched(Queue<NewRun, CreatedRun>),
}

impl Creator {
    /// Like [`Checkpointer::start`], for run creation.
    pub(crate) fn start(store: Arc<dyn RunStore>, max_batch: usize, writers: usize) -> Self {
        if max_batch <= 1 {
            return Creator::Direct(store);
        }
        Creator::Batched(spawn_batcher(max_batch, writers, move |batch| {
            let store = store.clone();
            async move { store.create_runs(batch).await }
        }))
    }

    /// Creates the run, answering once it is durable.
    pub(crate) async fn create(&self, new: NewRun) -> Result<CreatedRun, StoreError> {
        match self {
            Creator::Direct(store) => store.create_run(new).await,
            Creator::Batched(queue) => submit(queue, new).await,
        }
    }
}

/// Queues one item and waits for its result.
async fn submit<T, R>(queue: &Queue<T, R>, item: T) -> Result<R, StoreError> {
    let (reply, answer) = oneshot::channel();
    queue.send(Request { item, reply }).map_err(|_| stopped())?;
    answer.await.map_err(|_| stopped())?
}

/// The batcher is gone (the runtime is shutting down); the item may not be written.
fn stopped() -> StoreError {
    StoreError::Unavailable("the batcher stopped".into())
}

/// Starts a batcher task: it takes what is queued (at least one, at most `max_batch`)
/// whenever one of its `writers` is free, writes it with `write`, and answers each request
/// with its own result, in order. The task ends once every sender is dropped.
fn spawn_batcher<T, R, W, F>(max_batch: usize, writers: usize, write: W) -> Queue<T, R>
where
    T: Send + 'static,
    R: Send + 'static,
    W: Fn(Vec<T>) -> F + Send + 'static,
    F: Future<Output = Vec<Result<R, StoreError>>> + Send + 'static,
{
    let (tx, mut queue) = mpsc::unbounded_channel::<Request<T, R>>();
    let free = Arc::new(Semaphore::new(writers.max(1)));
    tokio::spawn(async move {
        loop {
            // Wait for a free writer first: meanwhile requests pile up into the next batch.
            let Ok(permit) = free.clone().acquire_owned().await else {
                return;
            };
            let mut batch = Vec::with_capacity(max_batch);
            if queue.recv_many(&mut batch, max_batch).await == 0 {
                return;
            }
            let (items, replies): (Vec<T>, Vec<_>) =
                batch.into_iter().map(|r| (r.item, r.reply)).unzip();
            let written = write(items);
            tokio::spawn(async move {
                let mut results = written.await.into_iter();
                drop(permit);
                for reply in replies {
                    let result = results.next().unwrap_or_else(|| {
                        Err(StoreError::Unavailable(
                            "the store answered fewer results than requests".into(),
                        ))
                    });
                    // The requester may have gone meanwhile; its item is written either way.
                    let _ = reply.send(result);
                }
            });
        }
    });
    tx
}
