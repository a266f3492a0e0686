//! The storage port: the records the server keeps and the capabilities adapters provide.
//!
//! Capabilities are narrow traits (`WorkflowStore`, `Health`, …) so a function asks only for
//! what it uses; [`Store`] bundles them for the composition root. The PostgreSQL and SQLite
//! adapters in the `scaff` crate implement every trait and pass one contract suite.

mod keys;
mod memory;
mod outbox;
mod runs;
mod secrets;
mod templates;
mod timers;
mod usage;
mod workflows;

use async_trait::async_trait;

pub use keys::*;
pub use memory::MemoryStore;
pub use outbox::*;
pub use runs::*;
pub use secrets::*;
pub use templates::*;
pub use timers::*;
pub use usage::*;
pub use workflows::*;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The thing asked for does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// A uniqueness rule refused the write (e.g. a workflow id already taken).
    #[error("conflict: {0}")]
    Conflict(String),
    /// A definition stated a `version` that is not the next one.
    #[error("version {expected} is not the next version; the latest is {latest}")]
    VersionMismatch {
        /// The version the caller expected to create.
        expected: i64,
        /// The latest stored version.
        latest: i64,
    },
    /// A checkpoint's fence did not hold: another writer moved the run on first.
    #[error("run {run_id} is no longer at version {expected}; a newer writer owns it")]
    Fenced {
        /// The run.
        run_id: uuid::Uuid,
        /// The version the writer expected.
        expected: i64,
    },
    /// The database could not be reached or answered with an error; details are for logs only.
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

/// One page of results and where the next one starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T, C = String> {
    /// The items of this page.
    pub items: Vec<T>,
    /// The key to continue after; `None` on the last page.
    pub next_after: Option<C>,
}

/// Whether the store answers.
#[async_trait]
pub trait Health: Send + Sync {
    /// A cheap round trip to the database.
    async fn ping(&self) -> Result<(), StoreError>;
}

/// Every capability, for the composition root.
pub trait Store:
    WorkflowStore
    + RunStore
    + TemplateStore
    + UsageStore
    + SecretStore
    + SettingsStore
    + TimerStore
    + OutboxStore
    + KeyStore
    + Health
{
}

impl<T> Store for T where
    T: WorkflowStore
        + RunStore
        + TemplateStore
        + UsageStore
        + SecretStore
        + SettingsStore
        + TimerStore
        + OutboxStore
        + KeyStore
        + Health
{
}
