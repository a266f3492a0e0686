//! The store adapters: PostgreSQL (production, several nodes) and SQLite (the embedded
//! default), both implementing `scaff_core::store`. [`connect`] picks one from the URL and
//! applies migrations; the two adapters pass the same contract suite (`tests/it/store_contract.rs`).

mod keys;
mod outbox;
mod postgres;
mod rows;
mod sqlite;
mod timers;
mod usage;

use std::sync::Arc;

use scaff_core::store::{Store, StoreError};

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// How to open a store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Most connections in the pool (PostgreSQL) or of readers (SQLite; it has one writer).
    pub max_connections: u32,
    /// Apply pending migrations when connecting.
    pub migrate: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            migrate: true,
        }
    }
}

/// Why a store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The URL names no supported database.
    #[error("unsupported database URL `{0}`: use sqlite://PATH or postgres://USER@HOST/DB")]
    UnsupportedUrl(String),
    /// The database refused or could not be reached.
    #[error("cannot open the database: {0}")]
    Open(#[source] sqlx::Error),
    /// A migration failed.
    #[error("migrations failed: {0}")]
    Migrate(#[source] sqlx::migrate::MigrateError),
}

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `postgres://` or `postgresql://`.
    Postgres,
    /// `sqlite:`.
    Sqlite,
}

impl Backend {
    /// Recognizes the URL scheme.
    pub fn of(url: &str) -> Result<Self, ConnectError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else {
            Err(ConnectError::UnsupportedUrl(redact_url(url)))
        }
    }
}

/// Opens the store named by `url`, migrating it first when asked.
pub async fn connect(url: &str, opts: &StoreOptions) -> Result<Arc<dyn Store>, ConnectError> {
    Ok(match Backend::of(url)? {
        Backend::Postgres => Arc::new(PgStore::connect(url, opts).await?),
        Backend::Sqlite => Arc::new(SqliteStore::connect(url, opts).await?),
    })
}

/// The URL with any password replaced, safe for logs and errors.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let creds = &url[scheme_end + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// How often a version insert is retried after losing a race for the number. Each round of a
/// race has one winner, so this bounds how many concurrent savers of one id all succeed.
const VERSION_RACE_RETRIES: usize = 32;

/// Maps a driver error to the port's error; the details stay in the message for the logs.
fn unavailable(e: sqlx::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// Whether the error is a unique-constraint violation.
fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// Escapes `%`, `_` and `\` so user text matches literally inside `LIKE … ESCAPE '\'`.
fn like_pattern(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('%');
    for c in text.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// Timestamps are kept to the microsecond, the finest both databases store.
fn now_micros() -> chrono::DateTime<chrono::Utc> {
    micros(chrono::Utc::now())
}

/// `t` truncated to what both databases keep, so a saved record equals the one read back.
fn micros(t: chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc> {
    use chrono::SubsecRound;
    t.trunc_subsecs(6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(like_pattern("50%_Off\\"), "%50\\%\\_off\\\\%");
    }

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact_url("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(redact_url("sqlite://scaff.db"), "sqlite://scaff.db");
    }

    #[test]
    fn backends_by_scheme() {
        assert_eq!(Backend::of("postgresql://x").ok(), Some(Backend::Postgres));
        assert_eq!(Backend::of("sqlite::memory:").ok(), Some(Backend::Sqlite));
        assert!(Backend::of("mysql://x").is_err());
    }
}
