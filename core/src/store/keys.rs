//! API keys as stored, their roles, and the capability to keep them.
//!
//! The store never sees a key itself: only its public prefix (to find the record) and a hash
//! of the whole key (to check it). Issuing and checking keys happens in the `scaff` crate's
//! `auth` module.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::StoreError;

/// What a caller may do. Ordered: each role may do everything the roles before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Reads workflows, templates, runs, events and usage.
    Viewer,
    /// Also starts, resumes and cancels runs.
    Operator,
    /// Also manages workflows, templates, secrets, keys, and reads the outbox.
    Admin,
}

impl Role {
    /// Every role, least first.
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Operator, Role::Admin];

    /// Parses `viewer`, `operator` or `admin` (any case).
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "viewer" => Some(Self::Viewer),
            "operator" => Some(Self::Operator),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }

    /// The role's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Operator => "operator",
            Self::Admin => "admin",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A key to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewApiKey {
    /// Its id.
    pub id: Uuid,
    /// A name for people and the audit trail (`key:<name>`).
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// The public part that finds the record (unique).
    pub prefix: String,
    /// Hex SHA-256 of the whole key.
    pub hash: String,
    /// When it was issued.
    pub created_at: DateTime<Utc>,
}

/// A stored key (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// Its id.
    pub id: Uuid,
    /// A name for people and the audit trail.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// The public part that finds the record.
    pub prefix: String,
    /// Hex SHA-256 of the whole key.
    pub hash: String,
    /// When it was issued.
    pub created_at: DateTime<Utc>,
    /// When it last authenticated a request (updated at most about once a minute).
    pub last_used_at: Option<DateTime<Utc>>,
    /// When it was revoked; a revoked key authenticates nothing.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Keeping API keys.
#[async_trait]
pub trait KeyStore: Send + Sync {
    /// Stores a new key. [`StoreError::Conflict`] when its prefix is taken or a key that is
    /// not revoked has the same name.
    async fn create_key(&self, key: NewApiKey) -> Result<ApiKey, StoreError>;

    /// The key with this prefix, revoked or not.
    async fn key_by_prefix(&self, prefix: &str) -> Result<Option<ApiKey>, StoreError>;

    /// Every key, revoked ones too, oldest first.
    async fn list_keys(&self) -> Result<Vec<ApiKey>, StoreError>;

    /// Revokes a key at `at` (a key revoked before keeps its first `revoked_at`); `None` when
    /// there is no such key.
    async fn revoke_key(&self, id: Uuid, at: DateTime<Utc>) -> Result<Option<ApiKey>, StoreError>;

    /// Records that the key authenticated a request at `at`.
    async fn touch_key(&self, id: Uuid, at: DateTime<Utc>) -> Result<(), StoreError>;

    /// How many keys were ever created, revoked ones included.
    async fn count_keys(&self) -> Result<i64, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_and_parse_back() {
        assert!(Role::Viewer < Role::Operator && Role::Operator < Role::Admin);
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse(" Admin "), Some(Role::Admin));
        assert_eq!(Role::parse("root"), None);
    }
}
