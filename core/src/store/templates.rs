//! Prompt template records and the capability to save and read their versions.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{Page, StoreError};

/// A template version to save (version 1 of a new id, or the next of an existing one).
#[derive(Debug, Clone)]
pub struct NewTemplateVersion {
    /// Template id.
    pub id: String,
    /// System prompt template.
    pub system: Option<String>,
    /// User prompt template.
    pub prompt: String,
    /// Free text.
    pub description: Option<String>,
    /// Who saved it.
    pub created_by: Option<String>,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// One stored, immutable template version.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateVersion {
    /// Template id.
    pub id: String,
    /// 1, 2, 3, … per id.
    pub version: i64,
    /// System prompt template.
    pub system: Option<String>,
    /// User prompt template.
    pub prompt: String,
    /// Free text.
    pub description: Option<String>,
    /// When this version was saved.
    pub created_at: DateTime<Utc>,
    /// Who saved it.
    pub created_by: Option<String>,
}

/// Filters and position for listing templates (latest versions, by id).
#[derive(Debug, Clone, Default)]
pub struct TemplateQuery {
    /// Only ids after this one (the cursor).
    pub after_id: Option<String>,
    /// Page size.
    pub limit: u32,
}

/// Saving and reading prompt templates.
#[async_trait]
pub trait TemplateStore: Send + Sync {
    /// Saves the next version of `new.id` (1 when the id is new) and returns it. Concurrent
    /// saves of one id get distinct, consecutive versions.
    async fn save_template(&self, new: NewTemplateVersion) -> Result<TemplateVersion, StoreError>;

    /// The latest version of a template.
    async fn latest_template(&self, id: &str) -> Result<Option<TemplateVersion>, StoreError>;

    /// One version of a template.
    async fn template_version(
        &self,
        id: &str,
        version: i64,
    ) -> Result<Option<TemplateVersion>, StoreError>;

    /// Templates by id, latest versions only.
    async fn list_templates(
        &self,
        query: &TemplateQuery,
    ) -> Result<Page<TemplateVersion>, StoreError>;
}
