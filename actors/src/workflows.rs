//! Compiled workflow versions, loaded once and shared by every run of them. Versions are
//! immutable, so an entry never goes stale.

use std::sync::Arc;

use dashmap::DashMap;
use scaff_core::run::step::CompiledWorkflow;
use scaff_core::store::WorkflowStore;
use scaff_core::workflow::Workflow;

use crate::error::CommandError;

/// (workflow id, version) → compiled workflow.
#[derive(Default)]
pub(crate) struct WorkflowCache {
    compiled: DashMap<(String, i64), Arc<CompiledWorkflow>>,
}

impl WorkflowCache {
    /// The compiled workflow, loading and compiling it on first use.
    pub(crate) async fn get(
        &self,
        store: &dyn WorkflowStore,
        id: &str,
        version: i64,
    ) -> Result<Arc<CompiledWorkflow>, CommandError> {
        self.find(store, id, version).await?.ok_or_else(|| {
            CommandError::Workflow(format!("workflow `{id}` version {version} does not exist"))
        })
    }

    /// Like [`WorkflowCache::get`], with `None` for a version that does not exist.
    pub(crate) async fn find(
        &self,
        store: &dyn WorkflowStore,
        id: &str,
        version: i64,
    ) -> Result<Option<Arc<CompiledWorkflow>>, CommandError> {
        if let Some(wf) = self.compiled.get(&(id.to_string(), version)) {
            return Ok(Some(wf.clone()));
        }
        let Some(stored) = store.workflow_version(id, version).await? else {
            return Ok(None);
        };
        let def: Workflow = serde_json::from_value(stored.definition)
            .map_err(|e| CommandError::Workflow(format!("stored definition does not load: {e}")))?;
        let compiled = Arc::new(
            CompiledWorkflow::compile(id.to_string(), version, def)
                .map_err(CommandError::Workflow)?,
        );
        Ok(Some(
            self.compiled
                .entry((id.to_string(), version))
                .or_insert(compiled)
                .clone(),
        ))
    }
}
