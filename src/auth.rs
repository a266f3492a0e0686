//! Who is calling, and what they may do: API keys and JWT bearer tokens.
//!
//! # API keys
//! A key reads `scaff_<prefix>_<secret>`: 8 and 32 characters drawn uniformly from a
//! 32-letter alphabet (160 random bits in the secret). The prefix is stored in clear to find
//! the record; the whole key is stored only as its SHA-256. A fast hash is right here (unlike
//! for passwords): the keys are long and random, so there is nothing to guess and nothing a
//! slow hash would protect. Hashes are compared in constant time. A key is shown once, when
//! it is created.
//!
//! # JWTs
//! Bearer tokens that are not API keys are verified as JWTs: HS256/384/512 with a shared
//! secret, or RS*/PS*/ES*/EdDSA with a PEM public key or a JWKS file (chosen by the token's
//! `kid`). `exp` and `sub` are required; the role comes from a claim (`role` by default; a
//! dotted path reaches nested claims, and a list grants its highest role).
//!
//! The route → role table and the HTTP middleware live in `api::auth`.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use rand::Rng;
use scaff_core::store::{ApiKey, KeyStore, NewApiKey, Role, StoreError};
use serde_json::Value as Json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

/// What every API key starts with.
pub const KEY_PREFIX: &str = "scaff_";
/// Length of a key's public prefix.
const PREFIX_LEN: usize = 8;
/// Length of a key's secret part.
const SECRET_LEN: usize = 32;
/// The alphabet of keys: 32 letters, so each random byte gives one letter without bias.
const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
/// The longest key name.
pub const MAX_NAME_LEN: usize = 64;
/// The name of the key created on first start.
pub const FIRST_KEY_NAME: &str = "admin (first start)";
/// How stale `last_used_at` may get before a request refreshes it (saves a write per request).
const TOUCH_EVERY: chrono::TimeDelta = chrono::TimeDelta::seconds(60);
/// The shortest JWT secret accepted, in bytes.
pub const MIN_JWT_SECRET_BYTES: usize = 32;

/// Whether requests must authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthMode {
    /// Every request but health, readiness and the API description needs credentials.
    Required,
    /// No authentication (allowed only on loopback addresses).
    None,
}

/// How a caller proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// An API key.
    Key,
    /// A JWT bearer token.
    Jwt,
    /// A resume token (it authorizes one resume of one run, nothing else).
    ResumeToken,
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The key's name, the JWT's `sub`, or the approver a resume token names.
    pub subject: String,
    /// What they may do.
    pub role: Role,
    /// How they authenticated.
    pub via: Via,
}

impl Principal {
    /// The caller as the audit trail names them: `key:<name>`, `jwt:<sub>`, or the approver.
    pub fn actor(&self) -> String {
        match self.via {
            Via::Key => format!("key:{}", self.subject),
            Via::Jwt => format!("jwt:{}", self.subject),
            Via::ResumeToken => self.subject.clone(),
        }
    }
}

/// Why a request is not authenticated (401), or authenticated without any role (403).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No credentials.
    #[error(
        "this request needs credentials: send `Authorization: Bearer <API key or JWT>` \
         (create a key with `scaff keys create`)"
    )]
    Missing,
    /// The header is not `Bearer <token>`.
    #[error("the Authorization header must read `Bearer <API key or JWT>`")]
    Malformed,
    /// No such key, or the secret does not match.
    #[error("the API key is not valid")]
    BadKey,
    /// The key was revoked.
    #[error("the API key has been revoked")]
    Revoked,
    /// The JWT is past its `exp`.
    #[error("the token has expired")]
    Expired,
    /// The JWT does not verify (the cause is for logs).
    #[error("the token is not valid")]
    BadToken(String),
    /// A JWT was sent, but no JWT verification is configured.
    #[error(
        "this server accepts API keys only (JWTs need --jwt-secret, --jwt-public-key or --jwks-file)"
    )]
    NoJwt,
    /// The JWT verifies but grants no role (403).
    #[error("the token's `{0}` claim names no role (viewer, operator or admin)")]
    NoRole(String),
    /// The key store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A key just issued: the only moment the key itself exists outside its holder.
pub struct IssuedKey {
    /// The key, to show once.
    pub key: String,
    /// The stored record.
    pub record: ApiKey,
}

impl std::fmt::Debug for IssuedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedKey")
            .field("key", &"***")
            .field("record", &self.record)
            .finish()
    }
}

/// Why a key could not be issued.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The name breaks the rules.
    #[error("{0}")]
    InvalidName(String),
    /// The store refused or failed (a live key with the name exists: `Conflict`).
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn random_letters(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand::rng().fill_bytes(&mut bytes);
    bytes
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(b & 31)]))
        .collect()
}

/// Hex SHA-256 of a whole key, as stored.
pub fn hash_key(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The prefix of a well-formed key (`scaff_<8>_<32>`), else `None`.
pub fn key_prefix(key: &str) -> Option<&str> {
    let rest = key.strip_prefix(KEY_PREFIX)?;
    let (prefix, secret) = rest.split_once('_')?;
    let ok = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| ALPHABET.contains(&b));
    (ok(prefix, PREFIX_LEN) && ok(secret, SECRET_LEN)).then_some(prefix)
}

/// Checks a key's name: 1–64 characters, no control characters, not blank.
pub fn check_name(name: &str) -> Result<(), KeyError> {
    if name.trim().is_empty() {
        return Err(KeyError::InvalidName("a key needs a name".into()));
    }
    if name.chars().count() > MAX_NAME_LEN {
        return Err(KeyError::InvalidName(format!(
            "a key's name may have at most {MAX_NAME_LEN} characters"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(KeyError::InvalidName(
            "a key's name may not contain control characters".into(),
        ));
    }
    Ok(())
}

/// Creates and stores a new key; the key is in the result, and nowhere else.
pub async fn issue_key(
    store: &dyn KeyStore,
    name: &str,
    role: Role,
    now: DateTime<Utc>,
) -> Result<IssuedKey, KeyError> {
    check_name(name)?;
    let prefix = random_letters(PREFIX_LEN);
    let key = format!("{KEY_PREFIX}{prefix}_{}", random_letters(SECRET_LEN));
    let record = store
        .create_key(NewApiKey {
            id: Uuid::now_v7(),
            name: name.to_string(),
            role,
            prefix,
            hash: hash_key(&key),
            created_at: now,
        })
        .await?;
    Ok(IssuedKey { key, record })
}

/// On a store that never had a key, creates the first admin key ([`FIRST_KEY_NAME`]); `None`
/// once any key exists (revoked ones count), so this happens once in a database's life.
pub async fn bootstrap_key(
    store: &dyn KeyStore,
    now: DateTime<Utc>,
) -> Result<Option<IssuedKey>, KeyError> {
    if store.count_keys().await? > 0 {
        return Ok(None);
    }
    issue_key(store, FIRST_KEY_NAME, Role::Admin, now)
        .await
        .map(Some)
}

/// The text printed once on first start, the key framed so it stands out in the log.
pub fn first_key_banner(key: &str) -> String {
    let lines = [
        "No API key existed, so this admin key was created.".to_string(),
        "It is shown once; keep it now. Use it as".to_string(),
        "  Authorization: Bearer <key>".to_string(),
        String::new(),
        format!("  {key}"),
        String::new(),
        "More keys: scaff keys create --name NAME --role viewer|operator|admin".to_string(),
    ];
    let width = lines.iter().map(|l| l.chars().count()).max().unwrap_or(0);
    let rule = "─".repeat(width + 2);
    let mut out = format!("┌{rule}┐\n");
    for l in &lines {
        let pad = width - l.chars().count();
        out.push_str(&format!("│ {l}{} │\n", " ".repeat(pad)));
    }
    out.push_str(&format!("└{rule}┘"));
    out
}

/// Where JWTs are verified from.
#[derive(Debug, Clone)]
pub struct JwtSettings {
    /// Shared secret of HS256/384/512 tokens (at least 32 bytes).
    pub secret: Option<String>,
    /// PEM file of the public key of RS*/PS*/ES*/EdDSA tokens.
    pub public_key_file: Option<PathBuf>,
    /// JWKS file (`{"keys": [...]}`); the token's `kid` picks the key.
    pub jwks_file: Option<PathBuf>,
    /// The claim holding the role; dots reach into nested objects (`realm_access.roles`).
    pub role_claim: String,
    /// The required `iss`, when set.
    pub issuer: Option<String>,
    /// The required `aud`, when set.
    pub audience: Option<String>,
}

impl Default for JwtSettings {
    fn default() -> Self {
        Self {
            secret: None,
            public_key_file: None,
            jwks_file: None,
            role_claim: "role".into(),
            issuer: None,
            audience: None,
        }
    }
}

/// Why the JWT settings are unusable.
#[derive(Debug, thiserror::Error)]
pub enum JwtConfigError {
    /// The secret is too short.
    #[error("--jwt-secret must be at least {MIN_JWT_SECRET_BYTES} bytes")]
    ShortSecret,
    /// A key file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A key file holds no usable key.
    #[error("{path}: {why}")]
    BadKey {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
}

struct VerifyKey {
    kid: Option<String>,
    key: DecodingKey,
    validation: Validation,
}

/// Verifies JWT bearer tokens.
pub struct JwtVerifier {
    keys: Vec<VerifyKey>,
    role_claim: String,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("keys", &self.keys.len())
            .field("role_claim", &self.role_claim)
            .finish()
    }
}

const HMAC: &[Algorithm] = &[Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];
const RSA: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];
const EC: &[Algorithm] = &[Algorithm::ES256, Algorithm::ES384];
const ED: &[Algorithm] = &[Algorithm::EdDSA];

impl JwtVerifier {
    /// The verifier these settings describe; `None` when they name no key at all.
    pub fn new(settings: &JwtSettings) -> Result<Option<Self>, JwtConfigError> {
        let validation = |algorithms: &[Algorithm]| {
            let mut v = Validation::new(algorithms[0]);
            v.algorithms = algorithms.to_vec();
            v.leeway = 30;
            v.validate_exp = true;
            v.required_spec_claims = ["exp", "sub"].iter().map(|s| s.to_string()).collect();
            match &settings.audience {
                Some(aud) => v.set_audience(&[aud]),
                None => v.validate_aud = false,
            }
            if let Some(iss) = &settings.issuer {
                v.set_issuer(&[iss]);
            }
            v
        };
        let mut keys = Vec::new();
        if let Some(secret) = &settings.secret {
            if secret.len() < MIN_JWT_SECRET_BYTES {
                return Err(JwtConfigError::ShortSecret);
            }
            keys.push(VerifyKey {
                kid: None,
                key: DecodingKey::from_secret(secret.as_bytes()),
                validation: validation(HMAC),
            });
        }
        if let Some(path) = &settings.public_key_file {
            let pem = read(path)?;
            let (key, algorithms) = DecodingKey::from_rsa_pem(&pem)
                .map(|k| (k, RSA))
                .or_else(|_| DecodingKey::from_ec_pem(&pem).map(|k| (k, EC)))
                .or_else(|_| DecodingKey::from_ed_pem(&pem).map(|k| (k, ED)))
                .map_err(|e| JwtConfigError::BadKey {
                    path: path.clone(),
                    why: format!("not an RSA, EC or Ed25519 public key in PEM: {e}"),
                })?;
            keys.push(VerifyKey {
                kid: None,
                key,
                validation: validation(algorithms),
            });
        }
        if let Some(path) = &settings.jwks_file {
            let bad = |why: String| JwtConfigError::BadKey {
                path: path.clone(),
                why,
            };
            let set: JwkSet = serde_json::from_slice(&read(path)?)
                .map_err(|e| bad(format!("not a JWKS document: {e}")))?;
            if set.keys.is_empty() {
                return Err(bad("the JWKS has no keys".into()));
            }
            for jwk in &set.keys {
                let algorithms = match &jwk.algorithm {
                    AlgorithmParameters::RSA(_) => RSA,
                    AlgorithmParameters::EllipticCurve(_) => EC,
                    AlgorithmParameters::OctetKeyPair(_) => ED,
                    AlgorithmParameters::OctetKey(_) => HMAC,
                    _ => return Err(bad("a key of an unsupported type".into())),
                };
                let key = DecodingKey::from_jwk(jwk).map_err(|e| bad(e.to_string()))?;
                keys.push(VerifyKey {
                    kid: jwk.common.key_id.clone(),
                    key,
                    validation: validation(algorithms),
                });
            }
        }
        if keys.is_empty() {
            return Ok(None);
        }
        Ok(Some(Self {
            keys,
            role_claim: settings.role_claim.clone(),
        }))
    }

    /// Verifies a token and names its holder.
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| AuthError::BadToken(e.to_string()))?;
        let mut last = AuthError::BadToken(format!(
            "no configured key verifies {:?} tokens{}",
            header.alg,
            header
                .kid
                .as_deref()
                .map(|k| format!(" with kid `{k}`"))
                .unwrap_or_default()
        ));
        let candidates = self.keys.iter().filter(|k| {
            k.validation.algorithms.contains(&header.alg)
                && match (&header.kid, &k.kid) {
                    (Some(want), Some(have)) => want == have,
                    _ => true,
                }
        });
        for candidate in candidates {
            match jsonwebtoken::decode::<serde_json::Map<String, Json>>(
                token,
                &candidate.key,
                &candidate.validation,
            ) {
                Ok(data) => return self.principal(&data.claims),
                Err(e) => {
                    last = match e.kind() {
                        ErrorKind::ExpiredSignature => AuthError::Expired,
                        _ => AuthError::BadToken(e.to_string()),
                    };
                    if matches!(last, AuthError::Expired) {
                        break;
                    }
                }
            }
        }
        Err(last)
    }

    fn principal(&self, claims: &serde_json::Map<String, Json>) -> Result<Principal, AuthError> {
        let subject = match claims.get("sub") {
            Some(Json::String(s)) if !s.is_empty() => s.clone(),
            _ => return Err(AuthError::BadToken("`sub` is not a string".into())),
        };
        let mut value = None;
        for (i, part) in self.role_claim.split('.').enumerate() {
            value = if i == 0 {
                claims.get(part)
            } else {
                value.and_then(|v: &Json| v.get(part))
            };
        }
        let role = match value {
            Some(Json::String(s)) => s.split([' ', ',']).filter_map(Role::parse).max(),
            Some(Json::Array(items)) => items
                .iter()
                .filter_map(Json::as_str)
                .filter_map(Role::parse)
                .max(),
            _ => None,
        }
        .ok_or_else(|| AuthError::NoRole(self.role_claim.clone()))?;
        Ok(Principal {
            subject,
            role,
            via: Via::Jwt,
        })
    }
}

fn read(path: &PathBuf) -> Result<Vec<u8>, JwtConfigError> {
    std::fs::read(path).map_err(|source| JwtConfigError::Read {
        path: path.clone(),
        source,
    })
}

/// Checks credentials.
#[derive(Debug)]
pub struct Authenticator {
    mode: AuthMode,
    jwt: Option<JwtVerifier>,
}

impl Authenticator {
    /// No authentication: every request is let through, unattributed.
    pub fn none() -> Self {
        Self {
            mode: AuthMode::None,
            jwt: None,
        }
    }

    /// Authentication required: API keys, and JWTs when `jwt` is given.
    pub fn required(jwt: Option<JwtVerifier>) -> Self {
        Self {
            mode: AuthMode::Required,
            jwt,
        }
    }

    /// Whether requests must authenticate.
    pub fn mode(&self) -> AuthMode {
        self.mode
    }

    /// Who an `Authorization` header value names.
    pub async fn authenticate(
        &self,
        keys: &dyn KeyStore,
        authorization: &str,
        now: DateTime<Utc>,
    ) -> Result<Principal, AuthError> {
        let (scheme, credential) = authorization
            .trim()
            .split_once(' ')
            .ok_or(AuthError::Malformed)?;
        let credential = credential.trim();
        if !scheme.eq_ignore_ascii_case("bearer") || credential.is_empty() {
            return Err(AuthError::Malformed);
        }
        if credential.starts_with(KEY_PREFIX) {
            return check_key(keys, credential, now).await;
        }
        match &self.jwt {
            Some(jwt) => jwt.verify(credential),
            None => Err(AuthError::NoJwt),
        }
    }
}

async fn check_key(
    keys: &dyn KeyStore,
    key: &str,
    now: DateTime<Utc>,
) -> Result<Principal, AuthError> {
    let prefix = key_prefix(key).ok_or(AuthError::BadKey)?;
    let record = keys.key_by_prefix(prefix).await?.ok_or(AuthError::BadKey)?;
    let matches: bool = hash_key(key)
        .as_bytes()
        .ct_eq(record.hash.as_bytes())
        .into();
    if !matches {
        return Err(AuthError::BadKey);
    }
    if record.revoked_at.is_some() {
        return Err(AuthError::Revoked);
    }
    if record
        .last_used_at
        .is_none_or(|at| now.signed_duration_since(at) >= TOUCH_EVERY)
        && let Err(e) = keys.touch_key(record.id, now).await
    {
        tracing::warn!(error = %e, key = %record.name, "cannot record the key's last use");
    }
    Ok(Principal {
        subject: record.name,
        role: record.role,
        via: Via::Key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_the_documented_shape_and_hash_stably() {
        let key = format!(
            "{KEY_PREFIX}{}_{}",
            random_letters(PREFIX_LEN),
            random_letters(SECRET_LEN)
        );
        assert_eq!(key.len(), 6 + 8 + 1 + 32);
        assert_eq!(key_prefix(&key), Some(&key[6..14]));
        assert_eq!(hash_key(&key), hash_key(&key));
        assert_eq!(hash_key(&key).len(), 64);
        assert_eq!(key_prefix("scaff_short_x"), None);
        assert_eq!(key_prefix(&key.to_uppercase()), None);
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("ci").is_ok());
        assert!(check_name(" ").is_err());
        assert!(check_name("a\nb").is_err());
        assert!(check_name(&"x".repeat(65)).is_err());
    }

    #[test]
    fn the_banner_shows_the_key_whole() {
        let banner = first_key_banner("scaff_abcdefgh_0123");
        assert!(banner.contains("scaff_abcdefgh_0123"));
        let widths: Vec<usize> = banner.lines().map(|l| l.chars().count()).collect();
        assert!(widths.iter().all(|w| *w == widths[0]), "{banner}");
    }

    #[test]
    fn short_jwt_secrets_are_refused() {
        let settings = JwtSettings {
            secret: Some("short".into()),
            ..JwtSettings::default()
        };
        assert!(matches!(
            JwtVerifier::new(&settings),
            Err(JwtConfigError::ShortSecret)
        ));
        assert!(matches!(
            JwtVerifier::new(&JwtSettings::default()),
            Ok(None)
        ));
    }
}
