//! The storage port: the records the server keeps and the capabilities adapters provide.
//!
//! Capabilities are narrow traits (`WorkflowStore`, `Health`, …) so a function asks only for
//! what it uses; [`Store`] bundles them for the composition root. The PostgreSQL and SQLite
//! adapters in the `scaff` crate implement every trait and pass one contract suite.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value as Json;

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
    /// The database could not be reached or answered with an error; details are for logs only.
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

/// A workflow version to save.
#[derive(Debug, Clone)]
pub struct NewWorkflowVersion {
    /// Workflow id (chosen in the file or assigned by the server).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// Canonical definition (JSON of `workflow::Workflow`).
    pub definition: Json,
    /// The text as posted, kept verbatim.
    pub source: String,
    /// Id of the first step.
    pub start_step: String,
    /// Who saved it (an API key name or token subject), when known.
    pub created_by: Option<String>,
    /// The version the author expects this to become, if they stated one.
    pub expected_version: Option<i64>,
}

/// One stored, immutable workflow version.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkflowVersion {
    /// Workflow id.
    pub id: String,
    /// 1, 2, 3, … per id.
    pub version: i64,
    /// Display name.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// Canonical definition.
    pub definition: Json,
    /// The text as posted.
    pub source: String,
    /// Id of the first step.
    pub start_step: String,
    /// When this version was saved.
    pub created_at: DateTime<Utc>,
    /// Who saved it.
    pub created_by: Option<String>,
}

/// A workflow in a listing: its latest version, without the bulky definition.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkflowSummary {
    /// Workflow id.
    pub id: String,
    /// Latest version number.
    pub version: i64,
    /// Display name of the latest version.
    pub name: String,
    /// Description of the latest version.
    pub description: Option<String>,
    /// First step of the latest version.
    pub start_step: String,
    /// When the latest version was saved.
    pub created_at: DateTime<Utc>,
    /// Who saved the latest version.
    pub created_by: Option<String>,
}

/// Filters and position for listing workflows (ordered by id).
#[derive(Debug, Clone, Default)]
pub struct WorkflowQuery {
    /// Only workflows whose latest name contains this text (case-insensitive).
    pub name_contains: Option<String>,
    /// Only ids after this one (the cursor).
    pub after_id: Option<String>,
    /// Page size.
    pub limit: u32,
}

/// One page of results and where the next one starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The items of this page.
    pub items: Vec<T>,
    /// The key to continue after; `None` on the last page.
    pub next_after: Option<String>,
}

/// Saving and reading workflow definitions.
#[async_trait]
pub trait WorkflowStore: Send + Sync {
    /// Saves version 1 of a new workflow; `Conflict` when the id exists.
    async fn create_workflow(&self, new: NewWorkflowVersion)
    -> Result<WorkflowVersion, StoreError>;

    /// Saves the next version of an existing workflow; `NotFound` when the id does not exist,
    /// `VersionMismatch` when `expected_version` is not the next number.
    async fn add_workflow_version(
        &self,
        new: NewWorkflowVersion,
    ) -> Result<WorkflowVersion, StoreError>;

    /// The latest version of a workflow.
    async fn latest_workflow(&self, id: &str) -> Result<Option<WorkflowVersion>, StoreError>;

    /// One version of a workflow.
    async fn workflow_version(
        &self,
        id: &str,
        version: i64,
    ) -> Result<Option<WorkflowVersion>, StoreError>;

    /// Workflows by id, latest versions only.
    async fn list_workflows(
        &self,
        query: &WorkflowQuery,
    ) -> Result<Page<WorkflowSummary>, StoreError>;
}

/// Whether the store answers.
#[async_trait]
pub trait Health: Send + Sync {
    /// A cheap round trip to the database.
    async fn ping(&self) -> Result<(), StoreError>;
}

/// Every capability, for the composition root.
pub trait Store: WorkflowStore + Health {}

impl<T: WorkflowStore + Health> Store for T {}
