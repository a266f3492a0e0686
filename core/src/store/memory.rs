//! An in-memory store: the reference behaviour of the port, used by the actor runtime's tests
//! and run through the same contract suite as the databases. Not durable, by design.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use uuid::Uuid;

use chrono::{DateTime, Utc};

use super::{ApiKey, KeyStore, NewApiKey};
use super::{
    Checkpoint, CreatedRun, Health, MessageStatus, NewRun, NewTemplateVersion, NewWorkflowVersion,
    OutboxMessage, OutboxQuery, OutboxStore, Page, RunCursor, RunQuery, RunStore, SealedSecret,
    SecretStore, SettingsStore, StoreError, TemplateQuery, TemplateStore, TemplateVersion, Timer,
    TimerStore, UsageGroup, UsageQuery, UsageRow, UsageStore, WorkflowQuery, WorkflowStore,
    WorkflowSummary, WorkflowVersion,
};
use crate::run::{EventRecord, Run, RunStatus, StepRecord};

#[derive(Default)]
struct Inner {
    workflows: Vec<WorkflowVersion>,
    /// Template id → its versions, oldest first (version n at index n - 1).
    templates: BTreeMap<String, Vec<TemplateVersion>>,
    runs: HashMap<Uuid, Run>,
    steps: HashMap<Uuid, Vec<StepRecord>>,
    events: HashMap<Uuid, Vec<EventRecord>>,
    settings: HashMap<String, String>,
    /// Secret name → sealed secret.
    secrets: BTreeMap<String, SealedSecret>,
    timers: Vec<Timer>,
    outbox: Vec<OutboxMessage>,
    /// API keys, oldest first.
    keys: Vec<ApiKey>,
}

/// A store that lives in a mutex; every operation is atomic.
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave half a write: every write below is
        // computed first and applied last. So a poisoned lock is still consistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn version_of(
    new: NewWorkflowVersion,
    version: i64,
    at: chrono::DateTime<chrono::Utc>,
) -> WorkflowVersion {
    WorkflowVersion {
        id: new.id,
        version,
        name: new.name,
        description: new.description,
        definition: new.definition,
        source: new.source,
        start_step: new.start_step,
        created_at: at,
        created_by: new.created_by,
    }
}

fn now() -> chrono::DateTime<chrono::Utc> {
    use crate::run::{Clock, SystemClock};
    SystemClock.now()
}

#[async_trait]
impl WorkflowStore for MemoryStore {
    async fn create_workflow(
        &self,
        new: NewWorkflowVersion,
    ) -> Result<WorkflowVersion, StoreError> {
        if let Some(expected) = new.expected_version.filter(|v| *v != 1) {
            return Err(StoreError::VersionMismatch {
                expected,
                latest: 0,
            });
        }
        let mut inner = self.lock();
        if inner.workflows.iter().any(|w| w.id == new.id) {
            return Err(StoreError::Conflict(format!(
                "workflow `{}` already exists; post to /v1/workflows/{}/versions to add a version",
                new.id, new.id
            )));
        }
        let saved = version_of(new, 1, now());
        inner.workflows.push(saved.clone());
        Ok(saved)
    }

    async fn add_workflow_version(
        &self,
        new: NewWorkflowVersion,
    ) -> Result<WorkflowVersion, StoreError> {
        let mut inner = self.lock();
        let latest = inner
            .workflows
            .iter()
            .filter(|w| w.id == new.id)
            .map(|w| w.version)
            .max()
            .ok_or_else(|| StoreError::NotFound(format!("workflow `{}`", new.id)))?;
        if let Some(expected) = new.expected_version.filter(|v| *v != latest + 1) {
            return Err(StoreError::VersionMismatch { expected, latest });
        }
        let saved = version_of(new, latest + 1, now());
        inner.workflows.push(saved.clone());
        Ok(saved)
    }

    async fn latest_workflow(&self, id: &str) -> Result<Option<WorkflowVersion>, StoreError> {
        let inner = self.lock();
        Ok(inner
            .workflows
            .iter()
            .filter(|w| w.id == id)
            .max_by_key(|w| w.version)
            .cloned())
    }

    async fn workflow_version(
        &self,
        id: &str,
        version: i64,
    ) -> Result<Option<WorkflowVersion>, StoreError> {
        let inner = self.lock();
        Ok(inner
            .workflows
            .iter()
            .find(|w| w.id == id && w.version == version)
            .cloned())
    }

    async fn list_workflows(
        &self,
        query: &WorkflowQuery,
    ) -> Result<Page<WorkflowSummary>, StoreError> {
        let inner = self.lock();
        let mut latest: HashMap<&str, &WorkflowVersion> = HashMap::new();
        for w in &inner.workflows {
            let entry = latest.entry(w.id.as_str()).or_insert(w);
            if w.version > entry.version {
                *entry = w;
            }
        }
        let needle = query.name_contains.as_ref().map(|n| n.to_lowercase());
        let mut items: Vec<WorkflowSummary> = latest
            .into_values()
            .filter(|w| {
                query
                    .after_id
                    .as_ref()
                    .is_none_or(|a| w.id.as_str() > a.as_str())
            })
            .filter(|w| {
                needle
                    .as_ref()
                    .is_none_or(|n| w.name.to_lowercase().contains(n))
            })
            .map(|w| WorkflowSummary {
                id: w.id.clone(),
                version: w.version,
                name: w.name.clone(),
                description: w.description.clone(),
                start_step: w.start_step.clone(),
                created_at: w.created_at,
                created_by: w.created_by.clone(),
            })
            .collect();
        items.sort_by(|a, b| a.id.cmp(&b.id));
        let limit = query.limit.max(1) as usize;
        let next_after = (items.len() > limit).then(|| items[limit - 1].id.clone());
        items.truncate(limit);
        Ok(Page { items, next_after })
    }
}

#[async_trait]
impl RunStore for MemoryStore {
    async fn create_run(&self, new: NewRun) -> Result<CreatedRun, StoreError> {
        let mut inner = self.lock();
        if let Some(key) = &new.idempotency_key
            && let Some(existing) = inner
                .runs
                .values()
                .find(|r| r.idempotency_key.as_ref() == Some(key))
        {
            return if existing.request_fingerprint == new.request_fingerprint {
                Ok(CreatedRun::Existing(existing.clone()))
            } else {
                Err(StoreError::Conflict(format!(
                    "idempotency key `{key}` was used for a different request"
                )))
            };
        }
        if !inner
            .workflows
            .iter()
            .any(|w| w.id == new.workflow_id && w.version == new.workflow_version)
        {
            return Err(StoreError::NotFound(format!(
                "workflow `{}` version {}",
                new.workflow_id, new.workflow_version
            )));
        }
        let run = Run {
            id: new.id,
            workflow_id: new.workflow_id,
            workflow_version: new.workflow_version,
            status: RunStatus::Queued,
            current_step: None,
            context: new.context,
            step_state: None,
            pins: new.pins,
            waiting: None,
            error: None,
            version: 0,
            step_seq: 0,
            event_seq: new.events.len() as i32,
            idempotency_key: new.idempotency_key,
            request_fingerprint: new.request_fingerprint,
            created_by: new.created_by,
            created_at: new.created_at,
            updated_at: new.created_at,
            finished_at: None,
            wake_at: None,
        };
        inner.runs.insert(run.id, run.clone());
        inner.events.insert(run.id, new.events);
        Ok(CreatedRun::New(run))
    }

    async fn get_run(&self, id: Uuid) -> Result<Option<Run>, StoreError> {
        Ok(self.lock().runs.get(&id).cloned())
    }

    async fn list_runs(&self, query: &RunQuery) -> Result<Page<Run, RunCursor>, StoreError> {
        let inner = self.lock();
        let mut items: Vec<Run> = inner
            .runs
            .values()
            .filter(|r| {
                query
                    .workflow_id
                    .as_ref()
                    .is_none_or(|w| &r.workflow_id == w)
            })
            .filter(|r| query.status.is_none_or(|s| r.status == s))
            .filter(|r| {
                query
                    .before
                    .is_none_or(|c| (r.created_at, r.id) < (c.created_at, c.id))
            })
            .cloned()
            .collect();
        items.sort_by_key(|r| std::cmp::Reverse((r.created_at, r.id)));
        let limit = query.limit.max(1) as usize;
        let next_after = (items.len() > limit).then(|| RunCursor {
            created_at: items[limit - 1].created_at,
            id: items[limit - 1].id,
        });
        items.truncate(limit);
        Ok(Page { items, next_after })
    }

    async fn checkpoint(&self, cp: &Checkpoint) -> Result<i64, StoreError> {
        let mut inner = self.lock();
        let fenced = StoreError::Fenced {
            run_id: cp.run_id,
            expected: cp.expected_version,
        };
        let Some(run) = inner.runs.get_mut(&cp.run_id) else {
            return Err(fenced);
        };
        if run.version != cp.expected_version {
            return Err(fenced);
        }
        run.version += 1;
        run.status = cp.status;
        run.current_step = cp.current_step.clone();
        run.context = cp.context.clone();
        run.step_state = cp.step_state.clone();
        run.waiting = cp.waiting.clone();
        run.error = cp.error.clone();
        run.step_seq = cp.step_seq;
        run.event_seq = cp.event_seq;
        run.updated_at = cp.at;
        run.wake_at = cp.wake_at;
        if cp.finished_at.is_some() {
            run.finished_at = cp.finished_at;
        }
        let version = run.version;
        for spec in &cp.timers {
            inner.timers.push(Timer {
                id: Uuid::new_v4(),
                run_id: cp.run_id,
                spec: spec.clone(),
            });
        }
        for m in &cp.messages {
            inner.outbox.push(OutboxMessage {
                message: m.clone(),
                run_id: cp.run_id,
                status: MessageStatus::Pending,
                attempts: 0,
                last_error: None,
                subject: None,
                body: None,
                created_at: cp.at,
                next_attempt_at: cp.at,
                sent_at: None,
            });
        }
        inner
            .steps
            .entry(cp.run_id)
            .or_default()
            .extend(cp.steps.iter().cloned());
        inner
            .events
            .entry(cp.run_id)
            .or_default()
            .extend(cp.events.iter().cloned());
        Ok(version)
    }

    async fn run_steps(&self, id: Uuid) -> Result<Vec<StepRecord>, StoreError> {
        Ok(self.lock().steps.get(&id).cloned().unwrap_or_default())
    }

    async fn run_events(&self, id: Uuid) -> Result<Vec<EventRecord>, StoreError> {
        Ok(self.lock().events.get(&id).cloned().unwrap_or_default())
    }

    async fn unfinished_runs(&self) -> Result<Vec<Uuid>, StoreError> {
        let inner = self.lock();
        let mut runs: Vec<&Run> = inner
            .runs
            .values()
            .filter(|r| matches!(r.status, RunStatus::Queued | RunStatus::Running))
            .collect();
        runs.sort_by_key(|r| (r.created_at, r.id));
        Ok(runs.into_iter().map(|r| r.id).collect())
    }
    async fn count_runs(&self, status: RunStatus) -> Result<u64, StoreError> {
        let inner = self.lock();
        Ok(inner.runs.values().filter(|r| r.status == status).count() as u64)
    }
}

#[async_trait]
impl TimerStore for MemoryStore {
    async fn next_timer_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(self.lock().timers.iter().map(|t| t.spec.fire_at).min())
    }

    async fn due_timers(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<Timer>, StoreError> {
        let mut due: Vec<Timer> = self
            .lock()
            .timers
            .iter()
            .filter(|t| t.spec.fire_at <= now)
            .cloned()
            .collect();
        due.sort_by_key(|t| (t.spec.fire_at, t.id));
        due.truncate(limit as usize);
        Ok(due)
    }

    async fn delete_timer(&self, id: Uuid) -> Result<(), StoreError> {
        self.lock().timers.retain(|t| t.id != id);
        Ok(())
    }
}

#[async_trait]
impl OutboxStore for MemoryStore {
    async fn claim_messages(
        &self,
        now: DateTime<Utc>,
        lease: std::time::Duration,
        limit: u32,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        let lease = chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX);
        let mut inner = self.lock();
        let mut due: Vec<&mut OutboxMessage> = inner
            .outbox
            .iter_mut()
            .filter(|m| m.status == MessageStatus::Pending && m.next_attempt_at <= now)
            .collect();
        due.sort_by_key(|m| (m.next_attempt_at, m.message.id));
        Ok(due
            .into_iter()
            .take(limit as usize)
            .map(|m| {
                m.next_attempt_at = now + lease;
                m.clone()
            })
            .collect())
    }

    async fn mark_sent(
        &self,
        id: Uuid,
        subject: &str,
        body: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if let Some(m) = self.lock().outbox.iter_mut().find(|m| m.message.id == id) {
            m.status = MessageStatus::Sent;
            m.attempts += 1;
            m.subject = Some(subject.to_string());
            m.body = Some(body.to_string());
            m.sent_at = Some(at);
            m.last_error = None;
        }
        Ok(())
    }

    async fn mark_failed(
        &self,
        id: Uuid,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let pending = inner
            .outbox
            .iter_mut()
            .find(|m| m.message.id == id && m.status == MessageStatus::Pending);
        if let Some(m) = pending {
            m.attempts += 1;
            m.last_error = Some(error.to_string());
            match retry_at {
                Some(at) => m.next_attempt_at = at,
                None => m.status = MessageStatus::Failed,
            }
        }
        Ok(())
    }

    async fn list_messages(
        &self,
        query: &OutboxQuery,
    ) -> Result<Page<OutboxMessage, Uuid>, StoreError> {
        let inner = self.lock();
        let mut items: Vec<OutboxMessage> = inner
            .outbox
            .iter()
            .filter(|m| query.status.is_none_or(|s| m.status == s))
            .filter(|m| query.run_id.is_none_or(|r| m.run_id == r))
            .filter(|m| query.before.is_none_or(|b| m.message.id < b))
            .cloned()
            .collect();
        items.sort_by_key(|m| std::cmp::Reverse(m.message.id));
        let limit = query.limit.max(1) as usize;
        let more = items.len() > limit;
        items.truncate(limit);
        let next_after = if more {
            items.last().map(|m| m.message.id)
        } else {
            None
        };
        Ok(Page { items, next_after })
    }
}

#[async_trait]
impl TemplateStore for MemoryStore {
    async fn save_template(&self, new: NewTemplateVersion) -> Result<TemplateVersion, StoreError> {
        use chrono::SubsecRound;
        let mut inner = self.lock();
        let versions = inner.templates.entry(new.id.clone()).or_default();
        let saved = TemplateVersion {
            id: new.id,
            version: versions.len() as i64 + 1,
            system: new.system,
            prompt: new.prompt,
            description: new.description,
            // What the databases keep, so every store returns the same record.
            created_at: new.created_at.trunc_subsecs(6),
            created_by: new.created_by,
        };
        versions.push(saved.clone());
        Ok(saved)
    }

    async fn latest_template(&self, id: &str) -> Result<Option<TemplateVersion>, StoreError> {
        Ok(self
            .lock()
            .templates
            .get(id)
            .and_then(|v| v.last())
            .cloned())
    }

    async fn template_version(
        &self,
        id: &str,
        version: i64,
    ) -> Result<Option<TemplateVersion>, StoreError> {
        Ok(self
            .lock()
            .templates
            .get(id)
            .and_then(|v| v.iter().find(|t| t.version == version))
            .cloned())
    }

    async fn list_templates(
        &self,
        query: &TemplateQuery,
    ) -> Result<Page<TemplateVersion>, StoreError> {
        use std::ops::Bound;
        let inner = self.lock();
        let after = match &query.after_id {
            Some(a) => Bound::Excluded(a.clone()),
            None => Bound::Unbounded,
        };
        let limit = query.limit.max(1) as usize;
        let mut items: Vec<TemplateVersion> = inner
            .templates
            .range((after, Bound::Unbounded))
            .filter_map(|(_, v)| v.last().cloned())
            .take(limit + 1)
            .collect();
        let next_after = (items.len() > limit).then(|| items[limit - 1].id.clone());
        items.truncate(limit);
        Ok(Page { items, next_after })
    }
}

#[async_trait]
impl SettingsStore for MemoryStore {
    async fn setting_or_insert(&self, key: &str, value: &str) -> Result<String, StoreError> {
        Ok(self
            .lock()
            .settings
            .entry(key.to_string())
            .or_insert_with(|| value.to_string())
            .clone())
    }
}

#[async_trait]
impl UsageStore for MemoryStore {
    async fn usage(&self, q: &UsageQuery) -> Result<Vec<UsageRow>, StoreError> {
        let inner = self.lock();
        let mut totals: BTreeMap<String, UsageRow> = BTreeMap::new();
        for (run_id, events) in &inner.events {
            let Some(run) = inner.runs.get(run_id) else {
                continue;
            };
            if q.workflow_id
                .as_ref()
                .is_some_and(|w| &run.workflow_id != w)
            {
                continue;
            }
            for e in events.iter().filter(|e| e.kind == "ai.response") {
                if q.from.is_some_and(|f| e.created_at < f)
                    || q.to.is_some_and(|t| e.created_at >= t)
                {
                    continue;
                }
                let field = |name: &str, missing: &str| {
                    e.data
                        .get(name)
                        .and_then(|v| v.as_str())
                        .unwrap_or(missing)
                        .to_string()
                };
                let key = match q.group_by {
                    UsageGroup::Workflow => run.workflow_id.clone(),
                    UsageGroup::Template => field("template_id", "(inline)"),
                    UsageGroup::Provider => field("provider", "(unknown)"),
                    UsageGroup::Model => field("model", "(unknown)"),
                };
                let row = totals.entry(key.clone()).or_insert(UsageRow {
                    key,
                    calls: 0,
                    tokens_prompt: 0,
                    tokens_output: 0,
                });
                row.calls += 1;
                row.tokens_prompt += e
                    .data
                    .get("tokens_prompt")
                    .and_then(|v| v.as_i64())
                    .unwrap_or(0);
                row.tokens_output += e
                    .data
                    .get("tokens_output")
                    .and_then(|v| v.as_i64())
                    .unwrap_or(0);
            }
        }
        Ok(totals.into_values().collect())
    }
}

#[async_trait]
impl SecretStore for MemoryStore {
    async fn put_secret(&self, secret: SealedSecret) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let created_at = inner
            .secrets
            .get(&secret.name)
            .map_or(secret.created_at, |old| old.created_at);
        inner.secrets.insert(
            secret.name.clone(),
            SealedSecret {
                created_at,
                ..secret
            },
        );
        Ok(())
    }

    async fn get_secret(&self, name: &str) -> Result<Option<SealedSecret>, StoreError> {
        Ok(self.lock().secrets.get(name).cloned())
    }

    async fn all_secrets(&self) -> Result<Vec<SealedSecret>, StoreError> {
        Ok(self.lock().secrets.values().cloned().collect())
    }

    async fn delete_secret(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self.lock().secrets.remove(name).is_some())
    }
}

#[async_trait]
impl Health for MemoryStore {
    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[async_trait]
impl KeyStore for MemoryStore {
    async fn create_key(&self, key: NewApiKey) -> Result<ApiKey, StoreError> {
        let mut inner = self.lock();
        if inner.keys.iter().any(|k| k.prefix == key.prefix) {
            return Err(StoreError::Conflict(format!(
                "a key with prefix `{}` exists",
                key.prefix
            )));
        }
        if inner
            .keys
            .iter()
            .any(|k| k.revoked_at.is_none() && k.name == key.name)
        {
            return Err(StoreError::Conflict(format!(
                "a key named `{}` exists",
                key.name
            )));
        }
        let stored = ApiKey {
            id: key.id,
            name: key.name,
            role: key.role,
            prefix: key.prefix,
            hash: key.hash,
            created_at: key.created_at,
            last_used_at: None,
            revoked_at: None,
        };
        inner.keys.push(stored.clone());
        Ok(stored)
    }

    async fn key_by_prefix(&self, prefix: &str) -> Result<Option<ApiKey>, StoreError> {
        Ok(self
            .lock()
            .keys
            .iter()
            .find(|k| k.prefix == prefix)
            .cloned())
    }

    async fn list_keys(&self) -> Result<Vec<ApiKey>, StoreError> {
        let mut keys = self.lock().keys.clone();
        keys.sort_by_key(|k| (k.created_at, k.id));
        Ok(keys)
    }

    async fn revoke_key(&self, id: Uuid, at: DateTime<Utc>) -> Result<Option<ApiKey>, StoreError> {
        let mut inner = self.lock();
        Ok(inner.keys.iter_mut().find(|k| k.id == id).map(|k| {
            k.revoked_at.get_or_insert(at);
            k.clone()
        }))
    }

    async fn touch_key(&self, id: Uuid, at: DateTime<Utc>) -> Result<(), StoreError> {
        if let Some(k) = self.lock().keys.iter_mut().find(|k| k.id == id) {
            k.last_used_at = Some(at);
        }
        Ok(())
    }

    async fn count_keys(&self) -> Result<i64, StoreError> {
        Ok(i64::try_from(self.lock().keys.len()).unwrap_or(i64::MAX))
    }
}
