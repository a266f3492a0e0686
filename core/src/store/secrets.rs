//! Encrypted secret records and the capability to keep them. The store sees only ciphertext;
//! sealing and opening happen in the `scaff` crate's secrets module.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;

/// A sealed secret as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedSecret {
    /// The name templates use (`{{ secrets.<name> }}`).
    pub name: String,
    /// Nonce followed by the AES-256-GCM ciphertext of the value.
    pub ciphertext: Vec<u8>,
    /// Which master key sealed it.
    pub key_id: String,
    /// When it was first stored.
    pub created_at: DateTime<Utc>,
    /// When its value last changed.
    pub updated_at: DateTime<Utc>,
}

/// Keeping sealed secrets.
#[async_trait]
pub trait SecretStore: Send + Sync {
    /// Stores or replaces a secret (`created_at` is kept on replace).
    async fn put_secret(&self, secret: SealedSecret) -> Result<(), StoreError>;

    /// One secret.
    async fn get_secret(&self, name: &str) -> Result<Option<SealedSecret>, StoreError>;

    /// Every secret, by name (rotation and redaction need them all; there are few).
    async fn all_secrets(&self) -> Result<Vec<SealedSecret>, StoreError>;

    /// Removes a secret; `false` when there was none.
    async fn delete_secret(&self, name: &str) -> Result<bool, StoreError>;
}
