//! Row shapes shared by both adapters (sqlx decodes them from either database) and their
//! mapping to the port's records.

use chrono::{DateTime, Utc};
use scaff_core::store::{NewWorkflowVersion, Page, WorkflowSummary, WorkflowVersion};
use sqlx::types::Json;

/// A full `workflows` row.
#[derive(sqlx::FromRow)]
pub(super) struct VersionRow {
    id: String,
    version: i64,
    name: String,
    description: Option<String>,
    definition: Json<serde_json::Value>,
    source_yaml: String,
    start_step: String,
    created_at: DateTime<Utc>,
    created_by: Option<String>,
}

impl From<VersionRow> for WorkflowVersion {
    fn from(r: VersionRow) -> Self {
        WorkflowVersion {
            id: r.id,
            version: r.version,
            name: r.name,
            description: r.description,
            definition: r.definition.0,
            source: r.source_yaml,
            start_step: r.start_step,
            created_at: r.created_at,
            created_by: r.created_by,
        }
    }
}

/// A `workflows` row without the bulky columns, for listings.
#[derive(sqlx::FromRow)]
pub(super) struct SummaryRow {
    id: String,
    version: i64,
    name: String,
    description: Option<String>,
    start_step: String,
    created_at: DateTime<Utc>,
    created_by: Option<String>,
}

/// The record of a version just inserted.
pub(super) fn saved(
    new: NewWorkflowVersion,
    version: i64,
    created_at: DateTime<Utc>,
) -> WorkflowVersion {
    WorkflowVersion {
        id: new.id,
        version,
        name: new.name,
        description: new.description,
        definition: new.definition,
        source: new.source,
        start_step: new.start_step,
        created_at,
        created_by: new.created_by,
    }
}

/// Turns `limit + 1` fetched rows into a page and its continuation key.
pub(super) fn page(mut rows: Vec<SummaryRow>, limit: usize) -> Page<WorkflowSummary> {
    let more = rows.len() > limit;
    rows.truncate(limit);
    let next_after = if more {
        rows.last().map(|r| r.id.clone())
    } else {
        None
    };
    Page {
        items: rows
            .into_iter()
            .map(|r| WorkflowSummary {
                id: r.id,
                version: r.version,
                name: r.name,
                description: r.description,
                start_step: r.start_step,
                created_at: r.created_at,
                created_by: r.created_by,
            })
            .collect(),
        next_after,
    }
}
