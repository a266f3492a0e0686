//! Token and call totals of AI steps, summed from the `ai.response` events runs record.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;

/// What usage is summed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageGroup {
    /// The run's workflow id.
    Workflow,
    /// The prompt template id (`(inline)` for inline prompts).
    Template,
    /// The provider (mock, openai, anthropic).
    Provider,
    /// The model that answered.
    Model,
}

impl UsageGroup {
    /// Parses `workflow`, `template`, `provider` or `model`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "workflow" => Some(Self::Workflow),
            "template" => Some(Self::Template),
            "provider" => Some(Self::Provider),
            "model" => Some(Self::Model),
            _ => None,
        }
    }

    /// The group's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Workflow => "workflow",
            Self::Template => "template",
            Self::Provider => "provider",
            Self::Model => "model",
        }
    }
}

/// Which AI calls to sum.
#[derive(Debug, Clone)]
pub struct UsageQuery {
    /// Only calls of runs of this workflow.
    pub workflow_id: Option<String>,
    /// Only calls at or after this time.
    pub from: Option<DateTime<Utc>>,
    /// Only calls before this time.
    pub to: Option<DateTime<Utc>>,
    /// The grouping.
    pub group_by: UsageGroup,
}

/// The totals of one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRow {
    /// The group's key (a workflow id, template id, provider or model).
    pub key: String,
    /// Calls answered or failed.
    pub calls: i64,
    /// Prompt tokens.
    pub tokens_prompt: i64,
    /// Output tokens.
    pub tokens_output: i64,
}

/// Summing AI usage.
#[async_trait]
pub trait UsageStore: Send + Sync {
    /// Totals per group, ordered by key.
    async fn usage(&self, query: &UsageQuery) -> Result<Vec<UsageRow>, StoreError>;
}
