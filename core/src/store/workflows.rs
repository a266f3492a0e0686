//! Workflow definition records and the capability to save and read them.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value as Json;

use super::{Page, StoreError};

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

    /// The number of the workflow's latest version, without its definition (what a start
    /// needs when the compiled workflow is already at hand). The default reads the version.
    async fn latest_version(&self, id: &str) -> Result<Option<i64>, StoreError> {
        Ok(self.latest_workflow(id).await?.map(|w| w.version))
    }

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
