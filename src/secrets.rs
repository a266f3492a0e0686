//! Secrets, encrypted at rest: the master key (configured, or generated once into a key file
//! with 0600 permissions), sealing with AES-256-GCM, the service the API and the runtime use,
//! and rotation of the master key (`scaff secrets rotate-key`).
//!
//! A sealed value is `nonce (12 bytes) || AES-256-GCM ciphertext and tag`; the secret's name is
//! the associated data, so a ciphertext copied into another secret's row does not open. The
//! store sees only ciphertext and the id of the key that sealed it ([`MasterKey::key_id`]).
//!
//! Nothing here prints a value or a key: `Debug` shows key ids and counts only, and error
//! messages name secrets, never their contents.

mod rotate;
mod service;

use std::fmt;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Aead, Generate, Key, KeyInit, Nonce, Payload};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use scaff_core::store::StoreError;
use sha2::{Digest, Sha256};

pub use rotate::{Rotation, RotationReport, reseal_all, rotate_key_file, with_suffix};
pub use service::{SecretInfo, SecretsService, Stored};

/// Length of a master key, in bytes (AES-256).
pub const KEY_BYTES: usize = 32;
/// Length of the nonce in front of every sealed value.
pub const NONCE_BYTES: usize = 12;
/// Length of the authentication tag at the end of every sealed value.
const TAG_BYTES: usize = 16;
/// The largest secret value accepted, in bytes.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
/// The key file used when none is configured, relative to the working directory.
pub const DEFAULT_KEY_FILE: &str = "scaff.key";

/// The key that seals every secret: 32 random bytes. `Debug` shows only its id.
#[derive(Clone)]
pub struct MasterKey {
    bytes: [u8; KEY_BYTES],
    id: String,
}

impl MasterKey {
    /// A new random key.
    pub fn generate() -> Self {
        Self::from_bytes(Key::<Aes256Gcm>::generate().into())
    }

    /// The key made of these bytes.
    pub fn from_bytes(bytes: [u8; KEY_BYTES]) -> Self {
        let digest = Sha256::digest(bytes);
        let id = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        Self { bytes, id }
    }

    /// Parses base64 (standard alphabet, padded) of exactly 32 bytes, surrounding whitespace
    /// ignored: what `openssl rand -base64 32` prints.
    pub fn from_base64(text: &str) -> Result<Self, SecretError> {
        let bytes = STANDARD.decode(text.trim()).map_err(|_| {
            SecretError::BadKey(
                "a secrets key must be base64 (e.g. `openssl rand -base64 32`)".into(),
            )
        })?;
        let bytes: [u8; KEY_BYTES] = bytes.try_into().map_err(|b: Vec<u8>| {
            SecretError::BadKey(format!(
                "a secrets key must be {KEY_BYTES} bytes, base64-encoded; this one is {} bytes",
                b.len()
            ))
        })?;
        Ok(Self::from_bytes(bytes))
    }

    /// The key as base64, as key files hold it.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.bytes)
    }

    /// The first 16 hex digits of the key's SHA-256: names the key without revealing it.
    pub fn key_id(&self) -> &str {
        &self.id
    }

    /// Reads a key file, which must exist.
    pub fn load_file(path: &Path) -> Result<Self, SecretError> {
        let mut text = String::new();
        std::fs::File::open(path)
            .and_then(|mut f| f.read_to_string(&mut text))
            .map_err(|source| SecretError::KeyFile {
                path: path.to_path_buf(),
                source,
            })?;
        warn_if_readable_by_others(path);
        Self::from_base64(&text).map_err(|e| match e {
            SecretError::BadKey(why) => SecretError::BadKey(format!("{}: {why}", path.display())),
            other => other,
        })
    }

    /// Reads a key file, or — when there is none — generates a key and writes it there with
    /// 0600 permissions. Returns the key and whether it was just created.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool), SecretError> {
        match Self::load_file(path) {
            Err(SecretError::KeyFile { source, .. })
                if source.kind() == io::ErrorKind::NotFound => {}
            other => return other.map(|k| (k, false)),
        }
        let key = Self::generate();
        match key.write_new_file(path) {
            Ok(()) => Ok((key, true)),
            // Another process created it first: use theirs.
            Err(SecretError::KeyFile { source, .. })
                if source.kind() == io::ErrorKind::AlreadyExists =>
            {
                Self::load_file(path).map(|k| (k, false))
            }
            Err(e) => Err(e),
        }
    }

    /// Writes the key to a file that must not exist yet, readable by its owner only, and
    /// flushes it (and the directory entry) to disk.
    pub fn write_new_file(&self, path: &Path) -> Result<(), SecretError> {
        let fail = |source| SecretError::KeyFile {
            path: path.to_path_buf(),
            source,
        };
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(fail)?;
        let written = file
            .write_all(format!("{}\n", self.to_base64()).as_bytes())
            .and_then(|()| file.sync_all());
        if let Err(e) = written {
            drop(file);
            let _ = std::fs::remove_file(path);
            return Err(fail(e));
        }
        sync_parent(path).map_err(fail)
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKey")
            .field("key_id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Flushes the directory holding `path`, so a created or renamed entry survives a crash.
fn sync_parent(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        std::fs::File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(())
    }
}

fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{:o}", meta.permissions().mode() & 0o777),
                "the secrets key file is readable by other users; chmod 600 it"
            );
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// Seals `plaintext` as the value of the secret `name`: a random 12-byte nonce followed by
/// the AES-256-GCM ciphertext (the name is authenticated as associated data).
pub fn seal(key: &MasterKey, name: &str, plaintext: &[u8]) -> Vec<u8> {
    let cipher = Aes256Gcm::new(&Key::<Aes256Gcm>::from(key.bytes));
    let nonce = Nonce::<Aes256Gcm>::generate();
    let payload = Payload {
        msg: plaintext,
        aad: name.as_bytes(),
    };
    // Encryption fails only past 64 GiB; values are limited to 64 KiB.
    let sealed = cipher.encrypt(&nonce, payload).unwrap_or_default();
    let mut out = Vec::with_capacity(NONCE_BYTES + sealed.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    out
}

/// Opens what [`seal`] produced for the secret `name` with the same key. Fails — without
/// saying more — when the bytes were sealed by another key, for another name, or altered.
pub fn open(key: &MasterKey, name: &str, sealed: &[u8]) -> Result<String, SecretError> {
    let undecryptable = || SecretError::Undecryptable {
        name: name.to_string(),
    };
    if sealed.len() < NONCE_BYTES + TAG_BYTES {
        return Err(undecryptable());
    }
    let (nonce, ciphertext) = sealed.split_at(NONCE_BYTES);
    let nonce = Nonce::<Aes256Gcm>::try_from(nonce).map_err(|_| undecryptable())?;
    let cipher = Aes256Gcm::new(&Key::<Aes256Gcm>::from(key.bytes));
    let plain = cipher
        .decrypt(
            &nonce,
            Payload {
                msg: ciphertext,
                aad: name.as_bytes(),
            },
        )
        .map_err(|_| undecryptable())?;
    String::from_utf8(plain).map_err(|_| undecryptable())
}

/// One rule a secret breaks; the message never quotes the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// `name` or `value`.
    pub field: &'static str,
    /// What is wrong.
    pub message: String,
}

/// Every rule the name and value break, at once.
pub fn check(name: &str, value: &str) -> Vec<Invalid> {
    let mut problems = Vec::new();
    if let Some(message) = check_name(name) {
        problems.push(Invalid {
            field: "name",
            message,
        });
    }
    if let Some(message) = check_value(value) {
        problems.push(Invalid {
            field: "value",
            message,
        });
    }
    problems
}

/// Why `name` is not a secret name, if it is not one.
pub fn check_name(name: &str) -> Option<String> {
    (!scaff_core::workflow::is_data_key(name)).then(|| {
        format!(
            "`{}` is not a secret name: 1–64 letters, digits and `_`, starting with a letter or \
             `_`, so that templates can write `secrets.<name>`",
            name.escape_debug()
        )
    })
}

/// Why `value` is not a secret value, if it is not one (never quoting it).
pub fn check_value(value: &str) -> Option<String> {
    if value.is_empty() {
        Some("the value is empty".into())
    } else if value.len() > MAX_VALUE_BYTES {
        Some(format!(
            "the value is {} bytes; at most {MAX_VALUE_BYTES} are allowed",
            value.len()
        ))
    } else if value.contains('\0') {
        Some("the value contains a NUL character".into())
    } else {
        None
    }
}

/// Why a secret operation failed. Messages name secrets and keys by id, never by content.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The name or value breaks the rules.
    #[error("{}", .0.iter().map(|i| format!("{}: {}", i.field, i.message)).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<Invalid>),
    /// A stored secret did not open with the key that should have sealed it (altered, or
    /// copied from another secret).
    #[error("secret `{name}` cannot be decrypted with the configured key (altered or corrupt)")]
    Undecryptable {
        /// The secret.
        name: String,
    },
    /// A stored secret was sealed by a key this process does not have.
    #[error(
        "secret `{name}` was sealed by key {key_id}, but the configured key is {expected}; \
         configure the key that sealed it"
    )]
    UnknownKey {
        /// The secret.
        name: String,
        /// The key that sealed it.
        key_id: String,
        /// The key at hand.
        expected: String,
    },
    /// A configured key is malformed.
    #[error("{0}")]
    BadKey(String),
    /// A key file could not be read or written.
    #[error("secrets key file {}: {source}", .path.display())]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[cfg(test)]
mod tests;
