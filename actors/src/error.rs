//! What a runtime command can fail with.

use scaff_core::run::machine::Rejection;
use scaff_core::store::StoreError;

/// Why a start, submit or cancel did not happen.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// No such run.
    #[error("run not found")]
    NotFound,
    /// The run refused the input; it is unchanged.
    #[error("refused: {0:?}")]
    Rejected(Rejection),
    /// Another writer moved the run on while this command ran; it may be retried.
    #[error("the run moved on concurrently")]
    Conflict,
    /// The run's workflow version cannot be loaded or compiled.
    #[error("the run's workflow cannot be loaded: {0}")]
    Workflow(String),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The run's actor did not answer in time, or stopped while answering.
    #[error("the run did not answer: {0}")]
    Unresponsive(String),
}
