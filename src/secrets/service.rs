//! [`SecretsService`]: stores, lists and deletes secrets for the API, and hands steps the
//! decrypted values (as `scaff_core::http::SecretValues`), cached until a change made through
//! this service, or for a short while when changes may come from elsewhere (other nodes).
//!
//! Every value it stores or opens is added to its redactor ([`scaff_core::redact::global`]
//! unless [`SecretsService::with_redactor`] says otherwise) before anyone can read it, so logs,
//! events and responses never show it. Values are only ever added: a deleted or replaced value
//! stays redacted until the process ends (harmless, and it may still sit in older outputs), and
//! a slow load of an older set cannot undo a newer one.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use scaff_core::redact::{self, SharedRedactor};
use scaff_core::run::Clock;
use scaff_core::store::{SealedSecret, SecretStore};

use super::{MasterKey, SecretError, check, open, seal};

/// How long decrypted values are reused before the store is read again, so that a change made
/// by another node is seen within this time. Changes through this service are seen at once.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(30);

/// What the API shows of a secret: never its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretInfo {
    /// The name.
    pub name: String,
    /// When it was first stored.
    pub created_at: DateTime<Utc>,
    /// When its value last changed.
    pub updated_at: DateTime<Utc>,
}

impl From<&SealedSecret> for SecretInfo {
    fn from(s: &SealedSecret) -> Self {
        Self {
            name: s.name.clone(),
            created_at: s.created_at,
            updated_at: s.updated_at,
        }
    }
}

/// The outcome of [`SecretsService::put`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The secret as now stored.
    pub info: SecretInfo,
    /// `true` when it is new, `false` when it replaced a value.
    pub created: bool,
}

type Values = Arc<BTreeMap<String, String>>;

#[derive(Default)]
struct Cache {
    /// Bumped by every change, so a load that raced a change is not cached.
    generation: u64,
    values: Option<(Instant, Values)>,
}

/// Seals values into the store and opens them for steps.
pub struct SecretsService {
    store: Arc<dyn SecretStore>,
    key: MasterKey,
    clock: Arc<dyn Clock>,
    ttl: Duration,
    cache: Mutex<Cache>,
    redactor: SharedRedactor,
}

impl fmt::Debug for SecretsService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cached = self.lock().values.as_ref().map(|(_, v)| v.len());
        f.debug_struct("SecretsService")
            .field("key_id", &self.key.key_id())
            .field("cached_secrets", &cached)
            .finish_non_exhaustive()
    }
}

impl SecretsService {
    /// A service over `store`, sealing with `key`, teaching every value to the process-wide
    /// redactor ([`redact::global`]).
    pub fn new(store: Arc<dyn SecretStore>, key: MasterKey, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            key,
            clock,
            ttl: DEFAULT_CACHE_TTL,
            cache: Mutex::new(Cache::default()),
            redactor: redact::global().clone(),
        }
    }

    /// Teaches values to `redactor` instead of the process-wide one.
    pub fn with_redactor(mut self, redactor: SharedRedactor) -> Self {
        self.redactor = redactor;
        self
    }

    /// The redactor this service keeps up to date.
    pub fn redactor(&self) -> &SharedRedactor {
        &self.redactor
    }

    /// Reuses decrypted values for `ttl` (zero: read the store every time).
    pub fn with_cache_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// The id of the key this service seals with.
    pub fn key_id(&self) -> &str {
        self.key.key_id()
    }

    fn lock(&self) -> MutexGuard<'_, Cache> {
        // The cache is replaced whole; a poisoned lock still holds a consistent one.
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn invalidate(&self) {
        let mut cache = self.lock();
        cache.generation += 1;
        cache.values = None;
    }

    /// Stores `value` under `name`, replacing any value it had (its `created_at` is kept).
    pub async fn put(&self, name: &str, value: &str) -> Result<Stored, SecretError> {
        let problems = check(name, value);
        if !problems.is_empty() {
            return Err(SecretError::Invalid(problems));
        }
        // Known to the redactor before any step can read it from the store.
        self.redactor.add_secrets([value]);
        let existed = self.store.get_secret(name).await?;
        let now = self.clock.now();
        let sealed = SealedSecret {
            name: name.to_string(),
            ciphertext: seal(&self.key, name, value.as_bytes()),
            key_id: self.key.key_id().to_string(),
            created_at: existed.as_ref().map_or(now, |s| s.created_at),
            updated_at: now,
        };
        let written = self.store.put_secret(sealed.clone()).await;
        self.invalidate();
        written?;
        // Read back: a concurrent first put of the same name decides `created_at`.
        let info = match self.store.get_secret(name).await? {
            Some(s) => SecretInfo::from(&s),
            None => SecretInfo::from(&sealed),
        };
        Ok(Stored {
            info,
            created: existed.is_none(),
        })
    }

    /// Every secret's name and times, by name.
    pub async fn list(&self) -> Result<Vec<SecretInfo>, SecretError> {
        Ok(self
            .store
            .all_secrets()
            .await?
            .iter()
            .map(SecretInfo::from)
            .collect())
    }

    /// Removes a secret; `false` when there was none. Its value stays redacted.
    pub async fn delete(&self, name: &str) -> Result<bool, SecretError> {
        let deleted = self.store.delete_secret(name).await;
        self.invalidate();
        Ok(deleted?)
    }

    /// Every secret, decrypted; from the cache when it is fresh. Values read from the store
    /// are added to the redactor before they are returned.
    pub async fn decrypted(&self) -> Result<Values, SecretError> {
        let generation = {
            let cache = self.lock();
            if let Some((at, values)) = &cache.values
                && at.elapsed() < self.ttl
            {
                return Ok(values.clone());
            }
            cache.generation
        };
        let mut values = BTreeMap::new();
        for secret in self.store.all_secrets().await? {
            if secret.key_id != self.key.key_id() {
                return Err(SecretError::UnknownKey {
                    name: secret.name,
                    key_id: secret.key_id,
                    expected: self.key.key_id().to_string(),
                });
            }
            let value = open(&self.key, &secret.name, &secret.ciphertext)?;
            values.insert(secret.name, value);
        }
        self.redactor.add_secrets(values.values());
        let values = Arc::new(values);
        let mut cache = self.lock();
        if cache.generation == generation && !self.ttl.is_zero() {
            cache.values = Some((Instant::now(), values.clone()));
        }
        Ok(values)
    }

    /// The decrypted values last loaded, if still cached: for synchronous readers such as a
    /// redaction filter, which cannot wait for the store.
    pub fn cached(&self) -> Option<Values> {
        self.lock().values.as_ref().map(|(_, v)| v.clone())
    }
}

#[async_trait]
impl scaff_core::http::SecretValues for SecretsService {
    async fn values(&self) -> Result<BTreeMap<String, String>, String> {
        self.decrypted()
            .await
            .map(|v| (*v).clone())
            .map_err(|e| e.to_string())
    }
}
