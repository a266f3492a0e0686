//! Resume tokens: HS256 JWTs that authorize one resume of one waiting run.
//!
//! A token names the run, the step waited on, and the run version at which the wait began.
//! Because a waiting run's version only changes when it moves on, a token stops working the
//! moment its wait is over (a replay is refused), without any token storage. A token is valid
//! for the configured lifetime from when it was issued (each read of a waiting run issues a
//! fresh one), so a run that waits longer than the lifetime can still be resumed. The signing
//! secret comes from configuration, or is generated once and kept in the store so that
//! restarts keep tokens valid.

use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::Rng;
use scaff_core::run::{Run, RunStatus, WaitingInput};
use scaff_core::store::{SettingsStore, StoreError};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The settings key under which a generated secret is kept.
pub const SECRET_SETTING: &str = "resume_token_secret";
/// The shortest configured secret accepted, in bytes.
pub const MIN_SECRET_BYTES: usize = 32;
/// The `typ` claim of resume tokens, so no other JWT signed with the secret passes as one.
const KIND: &str = "scaff.resume";

/// What a resume token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumeClaims {
    /// The run.
    pub sub: Uuid,
    /// The step waited on.
    pub step: String,
    /// The run version when the wait began.
    pub ver: i64,
    /// Issued at (the start of the wait), seconds since the epoch.
    pub iat: i64,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Token kind.
    pub typ: String,
    /// The approver the token was issued to (approval waits only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub who: Option<String>,
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Past its expiry.
    #[error("the resume token has expired")]
    Expired,
    /// Not a token this server signed (tampered, truncated, another key, another kind).
    #[error("the resume token is not valid")]
    Invalid,
}

/// Issues and verifies resume tokens.
pub struct ResumeTokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
}

impl ResumeTokens {
    /// A token service signing with `secret`, issuing tokens valid for `ttl` from the start of
    /// the wait.
    pub fn new(secret: &[u8], ttl: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.validate_exp = true;
        validation.required_spec_claims = ["exp", "sub"].iter().map(|s| s.to_string()).collect();
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl,
        }
    }

    /// The token for a waiting run's form, issued at `now`; `None` when the run is not
    /// waiting on a form (approvals take a token per approver: [`ResumeTokens::issue_for`]).
    pub fn issue(&self, run: &Run, now: chrono::DateTime<chrono::Utc>) -> Option<String> {
        let waiting = run
            .waiting
            .as_ref()
            .filter(|_| run.status == RunStatus::Waiting)?;
        match waiting.input {
            WaitingInput::Form { .. } => self.claims(run, waiting, None, now),
            WaitingInput::Approval { .. } => None,
        }
    }

    /// The token of one approver of the approval a run waits on.
    pub fn issue_for(
        &self,
        run: &Run,
        approver: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Option<String> {
        let waiting = run
            .waiting
            .as_ref()
            .filter(|_| run.status == RunStatus::Waiting)?;
        self.claims(run, waiting, Some(approver.to_string()), now)
    }

    fn claims(
        &self,
        run: &Run,
        waiting: &scaff_core::run::Waiting,
        who: Option<String>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Option<String> {
        let iat = now.timestamp();
        let ttl = i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX);
        let claims = ResumeClaims {
            sub: run.id,
            step: waiting.step_id.clone(),
            ver: waiting.version,
            iat,
            exp: iat.saturating_add(ttl),
            typ: KIND.to_string(),
            who,
        };
        self.sign(&claims)
    }

    /// Signs arbitrary claims (tests use it to forge expired or foreign tokens).
    pub fn sign(&self, claims: &ResumeClaims) -> Option<String> {
        match jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding) {
            Ok(token) => Some(token),
            Err(e) => {
                tracing::error!(error = %e, "cannot sign a resume token");
                None
            }
        }
    }

    /// Checks signature, expiry and kind; returns what the token says.
    pub fn verify(&self, token: &str) -> Result<ResumeClaims, TokenError> {
        let data = jsonwebtoken::decode::<ResumeClaims>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })?;
        if data.claims.typ != KIND {
            return Err(TokenError::Invalid);
        }
        Ok(data.claims)
    }
}

/// Why no signing secret could be had.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The configured secret is too short to be safe.
    #[error("the resume token secret must be at least {MIN_SECRET_BYTES} bytes")]
    TooShort,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The configured secret, or the one generated once and kept in the store.
pub async fn secret(
    store: &dyn SettingsStore,
    configured: Option<&str>,
) -> Result<Vec<u8>, SecretError> {
    if let Some(s) = configured {
        if s.len() < MIN_SECRET_BYTES {
            return Err(SecretError::TooShort);
        }
        return Ok(s.as_bytes().to_vec());
    }
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let fresh: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let kept = store.setting_or_insert(SECRET_SETTING, &fresh).await?;
    Ok(kept.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use scaff_core::run::{Context, Waiting, WaitingInput};

    fn waiting_run(since: chrono::DateTime<Utc>) -> Run {
        Run {
            id: Uuid::now_v7(),
            workflow_id: "wf".into(),
            workflow_version: 1,
            status: RunStatus::Waiting,
            current_step: Some("collect".into()),
            context: Context::default(),
            waiting: Some(Waiting {
                step_id: "collect".into(),
                input: WaitingInput::Form {
                    fields: Vec::new(),
                    notify: Vec::new(),
                },
                since,
                version: 3,
                deadline: None,
                reminders_sent: 0,
            }),
            error: None,
            step_state: None,
            pins: Default::default(),
            version: 3,
            step_seq: 0,
            event_seq: 0,
            idempotency_key: None,
            request_fingerprint: None,
            created_by: None,
            created_at: since,
            updated_at: since,
            finished_at: None,
            wake_at: None,
        }
    }

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn a_token_names_the_run_step_and_version() {
        let tokens = ResumeTokens::new(SECRET, Duration::from_secs(3600));
        let run = waiting_run(Utc::now());
        let now = Utc::now();
        let token = tokens.issue(&run, now).expect("issued");
        assert_eq!(
            tokens.issue(&run, now),
            Some(token.clone()),
            "same instant, same token"
        );
        let claims = tokens.verify(&token).expect("valid");
        assert_eq!(
            (claims.sub, claims.step.as_str(), claims.ver),
            (run.id, "collect", 3)
        );
    }

    #[test]
    fn tampered_foreign_and_expired_tokens_are_refused() {
        let tokens = ResumeTokens::new(SECRET, Duration::from_secs(3600));
        let token = tokens
            .issue(&waiting_run(Utc::now()), Utc::now())
            .expect("issued");
        let mut tampered = token.clone();
        tampered.pop();
        tampered.push(if token.ends_with('A') { 'B' } else { 'A' });
        assert_eq!(tokens.verify(&tampered), Err(TokenError::Invalid));
        let other = ResumeTokens::new(
            b"another-secret-another-secret-xx",
            Duration::from_secs(3600),
        );
        assert_eq!(other.verify(&token), Err(TokenError::Invalid));
        assert_eq!(tokens.verify("not a jwt"), Err(TokenError::Invalid));
        let old = waiting_run(Utc::now() - chrono::Duration::days(30));
        let expired = tokens
            .issue(&old, Utc::now() - chrono::Duration::hours(2))
            .expect("issued");
        assert_eq!(tokens.verify(&expired), Err(TokenError::Expired));
        let fresh = tokens.issue(&old, Utc::now()).expect("issued");
        assert!(
            tokens.verify(&fresh).is_ok(),
            "a run waiting longer than the lifetime still gets a valid token"
        );
    }

    #[test]
    fn only_waiting_runs_get_tokens() {
        let tokens = ResumeTokens::new(SECRET, Duration::from_secs(60));
        let mut run = waiting_run(Utc::now());
        run.status = RunStatus::Running;
        assert_eq!(tokens.issue(&run, Utc::now()), None);
    }
}
