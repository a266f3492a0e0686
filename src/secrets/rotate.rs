//! Rotating the master key: every secret is opened with the old key and sealed again with a
//! new one, then the key file is replaced (the old key kept beside it as `<file>.old`).
//!
//! Every secret is opened before anything is written, so a secret the old key cannot open
//! (sealed by an unknown key, or altered) stops the rotation with nothing changed. The new key
//! is written to its own file before the first secret is re-sealed; should the rotation stop
//! half-way, running it again reuses that file and finishes the job (secrets already sealed by
//! the new key are left as they are).

use std::path::{Path, PathBuf};

use scaff_core::store::{SealedSecret, SecretStore};

use super::{MasterKey, SecretError, open, seal, sync_parent};

/// What [`reseal_all`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rotation {
    /// Secrets opened with the old key and sealed with the new one.
    pub resealed: usize,
    /// Secrets already sealed with the new key (an interrupted rotation), left alone.
    pub already_new: usize,
}

/// Seals every secret sealed by `old` again with `new`, keeping names and times. Opens all of
/// them first: a secret sealed by another key, or one that does not open, is an error naming
/// it, and then nothing is written.
pub async fn reseal_all(
    store: &dyn SecretStore,
    old: &MasterKey,
    new: &MasterKey,
) -> Result<Rotation, SecretError> {
    let mut rotation = Rotation::default();
    let mut resealed = Vec::new();
    for secret in store.all_secrets().await? {
        if secret.key_id == new.key_id() {
            open(new, &secret.name, &secret.ciphertext)?;
            rotation.already_new += 1;
            continue;
        }
        if secret.key_id != old.key_id() {
            return Err(SecretError::UnknownKey {
                name: secret.name,
                key_id: secret.key_id,
                expected: old.key_id().to_string(),
            });
        }
        let value = open(old, &secret.name, &secret.ciphertext)?;
        resealed.push(SealedSecret {
            ciphertext: seal(new, &secret.name, value.as_bytes()),
            key_id: new.key_id().to_string(),
            ..secret
        });
    }
    for secret in resealed {
        store.put_secret(secret).await?;
        rotation.resealed += 1;
    }
    Ok(rotation)
}

/// What [`rotate_key_file`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationReport {
    /// Secrets re-sealed, and those found already re-sealed.
    pub rotation: Rotation,
    /// The key replaced.
    pub old_key_id: String,
    /// The key now in use.
    pub new_key_id: String,
    /// Where the old key was kept, when the key came from a file.
    pub old_key_file: Option<PathBuf>,
    /// Where the new key is: the key file, or (for a key given inline) the new key file.
    pub new_key_location: PathBuf,
    /// Whether an earlier, interrupted rotation's new key file was reused.
    pub resumed: bool,
}

/// `scaff secrets rotate-key`: generates a new key into `new_key_file` (or reuses the one an
/// interrupted rotation left there), re-seals every secret with it, then — when the old key came
/// from `key_file` — keeps the old key as `<key_file>.old` and atomically renames the new key
/// file over `key_file`. With `inline_old` (the old key given on the command line) the new key
/// stays in `new_key_file` for the operator to configure.
pub async fn rotate_key_file(
    store: &dyn SecretStore,
    key_file: &Path,
    inline_old: Option<MasterKey>,
    new_key_file: &Path,
) -> Result<RotationReport, SecretError> {
    let old = match inline_old {
        Some(key) => (key, false),
        None => (MasterKey::load_file(key_file)?, true),
    };
    let (old, from_file) = old;
    let resumed = new_key_file.exists();
    let new = if resumed {
        MasterKey::load_file(new_key_file)?
    } else {
        let key = MasterKey::generate();
        key.write_new_file(new_key_file)?;
        key
    };
    if new.key_id() == old.key_id() {
        return Err(SecretError::BadKey(format!(
            "{} holds the current key; remove it and run the rotation again",
            new_key_file.display()
        )));
    }
    let rotation = match reseal_all(store, &old, &new).await {
        Ok(r) => r,
        Err(e) => {
            // Nothing is sealed by a key made just now unless a write got through; keep the
            // file then, so a second run can finish.
            let sealed_by_new = store
                .all_secrets()
                .await
                .map(|all| all.iter().any(|s| s.key_id == new.key_id()))
                .unwrap_or(true);
            if !resumed && !sealed_by_new {
                let _ = std::fs::remove_file(new_key_file);
            }
            return Err(e);
        }
    };
    let mut report = RotationReport {
        rotation,
        old_key_id: old.key_id().to_string(),
        new_key_id: new.key_id().to_string(),
        old_key_file: None,
        new_key_location: new_key_file.to_path_buf(),
        resumed,
    };
    if from_file {
        let backup = with_suffix(key_file, ".old");
        replace_with_key(&backup, &old)?;
        std::fs::rename(new_key_file, key_file).map_err(|source| SecretError::KeyFile {
            path: key_file.to_path_buf(),
            source,
        })?;
        sync_parent(key_file).map_err(|source| SecretError::KeyFile {
            path: key_file.to_path_buf(),
            source,
        })?;
        report.old_key_file = Some(backup);
        report.new_key_location = key_file.to_path_buf();
    }
    Ok(report)
}

/// `path` with `suffix` appended to its file name (`scaff.key` → `scaff.key.new`).
pub fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

/// Writes `key` to `path` (0600), replacing whatever was there, atomically.
fn replace_with_key(path: &Path, key: &MasterKey) -> Result<(), SecretError> {
    let tmp = with_suffix(path, ".tmp");
    let _ = std::fs::remove_file(&tmp);
    key.write_new_file(&tmp)?;
    std::fs::rename(&tmp, path).map_err(|source| SecretError::KeyFile {
        path: path.to_path_buf(),
        source,
    })?;
    sync_parent(path).map_err(|source| SecretError::KeyFile {
        path: path.to_path_buf(),
        source,
    })
}
