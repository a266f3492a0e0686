//! Configuration from the command line, each flag with a `SCAFF_…` environment twin.
//!
//! Values are parsed once in `main` and handed down explicitly; nothing reads the environment
//! after start-up.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// The database used when nothing is configured: a file in the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://scaff.db";

/// Scaff: a schema-first AI workflow orchestrator.
#[derive(Debug, Parser)]
#[command(name = "scaff", version, about, propagate_version = true)]
pub struct Cli {
    /// Log line format.
    #[arg(long, env = "SCAFF_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,

    /// Log filter, in `tracing` env-filter syntax (e.g. `info`, `scaff=debug,sqlx=warn`).
    #[arg(long, env = "SCAFF_LOG", default_value = "info", global = true)]
    pub log: String,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server (migrations are applied on start).
    Serve(Box<ServeArgs>),
    /// Apply database migrations and exit.
    Migrate(DatabaseArgs),
    /// Check workflow files and print each problem as `file:line:col: error: message`.
    Validate(ValidateArgs),
    /// Print the OpenAPI document the server serves.
    Openapi,
    /// Manage secrets and their master key.
    Secrets(SecretsArgs),
    /// Manage API keys (works on the database directly, like `migrate`).
    Keys(KeysArgs),
}

/// `scaff keys`.
#[derive(Debug, Clone, clap::Args)]
pub struct KeysArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: KeysCommand,
}

/// The `scaff keys` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum KeysCommand {
    /// Create a key and print it (once) to stdout; only its hash is stored.
    Create(KeyCreateArgs),
    /// List keys: id, name, role, prefix, created, last used, revoked.
    List(DatabaseArgs),
    /// Revoke a key by id: it authenticates nothing from now on.
    Revoke(KeyRevokeArgs),
}

/// `scaff keys create`.
#[derive(Debug, Clone, clap::Args)]
pub struct KeyCreateArgs {
    /// A name for people and the audit trail (`key:<name>`).
    #[arg(long)]
    pub name: String,
    /// What the key may do.
    #[arg(long, value_enum)]
    pub role: RoleArg,
    /// The database.
    #[command(flatten)]
    pub database: DatabaseArgs,
}

/// `scaff keys revoke`.
#[derive(Debug, Clone, clap::Args)]
pub struct KeyRevokeArgs {
    /// The key's id (from `scaff keys list`).
    pub id: uuid::Uuid,
    /// The database.
    #[command(flatten)]
    pub database: DatabaseArgs,
}

/// Roles accepted by `--role`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    /// Reads workflows, templates, runs, events and usage.
    Viewer,
    /// Also starts, resumes and cancels runs.
    Operator,
    /// Also manages workflows, templates, secrets and keys.
    Admin,
}

impl From<RoleArg> for scaff_core::store::Role {
    fn from(r: RoleArg) -> Self {
        match r {
            RoleArg::Viewer => Self::Viewer,
            RoleArg::Operator => Self::Operator,
            RoleArg::Admin => Self::Admin,
        }
    }
}

/// Who may call the API.
#[derive(Debug, Clone, clap::Args)]
pub struct AuthArgs {
    /// `required`: every request but health, readiness and the API description needs an API
    /// key or a JWT. `none`: no authentication, accepted only when listening on loopback.
    #[arg(long, env = "SCAFF_AUTH", value_enum, default_value_t = crate::auth::AuthMode::Required)]
    pub auth: crate::auth::AuthMode,

    /// Shared secret of HS256 JWTs (at least 32 bytes).
    #[arg(long, env = "SCAFF_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// PEM file with the public key of RS256 (or PS*, ES*, EdDSA) JWTs.
    #[arg(long, env = "SCAFF_JWT_PUBLIC_KEY")]
    pub jwt_public_key: Option<PathBuf>,

    /// JWKS file (`{"keys": [...]}`) with the public keys of JWTs, picked by `kid`.
    #[arg(long, env = "SCAFF_JWKS_FILE")]
    pub jwks_file: Option<PathBuf>,

    /// The JWT claim naming the role (viewer, operator, admin); dots reach nested claims
    /// (`realm_access.roles`), and a list grants its highest role.
    #[arg(long, env = "SCAFF_JWT_ROLE_CLAIM", default_value = "role")]
    pub jwt_role_claim: String,

    /// The `iss` JWTs must carry, when set.
    #[arg(long, env = "SCAFF_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// The `aud` JWTs must carry, when set.
    #[arg(long, env = "SCAFF_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
}

/// Why the authentication settings are refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    /// `--auth none` on an address others can reach.
    #[error(
        "--auth none is refused when listening on {0}, which is not a loopback address: anyone \
         who reaches it could run and change everything. Keep --auth required (the default) \
         and use an API key, or listen on 127.0.0.1 / [::1]"
    )]
    NoneNotOnLoopback(SocketAddr),
    /// The JWT settings are unusable.
    #[error(transparent)]
    Jwt(#[from] crate::auth::JwtConfigError),
}

impl AuthArgs {
    /// The JWT settings these flags describe.
    pub fn jwt_settings(&self) -> crate::auth::JwtSettings {
        crate::auth::JwtSettings {
            secret: self.jwt_secret.clone().filter(|s| !s.is_empty()),
            public_key_file: self.jwt_public_key.clone(),
            jwks_file: self.jwks_file.clone(),
            role_claim: self.jwt_role_claim.clone(),
            issuer: self.jwt_issuer.clone().filter(|s| !s.is_empty()),
            audience: self.jwt_audience.clone().filter(|s| !s.is_empty()),
        }
    }

    /// The authenticator for a server listening on `listen`; `--auth none` only on loopback.
    pub fn authenticator(
        &self,
        listen: SocketAddr,
    ) -> Result<crate::auth::Authenticator, AuthConfigError> {
        match self.auth {
            crate::auth::AuthMode::None if !listen.ip().is_loopback() => {
                Err(AuthConfigError::NoneNotOnLoopback(listen))
            }
            crate::auth::AuthMode::None => Ok(crate::auth::Authenticator::none()),
            crate::auth::AuthMode::Required => Ok(crate::auth::Authenticator::required(
                crate::auth::JwtVerifier::new(&self.jwt_settings())?,
            )),
        }
    }
}

/// Where the master key that seals secrets comes from.
#[derive(Debug, Clone, clap::Args)]
pub struct SecretsKeyArgs {
    /// The master key of secrets: base64 of 32 random bytes (`openssl rand -base64 32`).
    /// When unset, the key file is used.
    #[arg(long, env = "SCAFF_SECRETS_KEY", hide_env_values = true, value_parser = key_text)]
    pub secrets_key: Option<KeyText>,

    /// File holding the master key of secrets (base64). Created with a new random key and
    /// 0600 permissions the first time it is needed; keep it, or stored secrets are lost.
    #[arg(long, env = "SCAFF_SECRETS_KEY_FILE", default_value = crate::secrets::DEFAULT_KEY_FILE)]
    pub secrets_key_file: PathBuf,
}

/// Key material as given on the command line: parsed after clap (whose errors would echo it),
/// and never shown by `Debug`.
#[derive(Clone)]
pub struct KeyText(String);

impl std::fmt::Debug for KeyText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyText(***)")
    }
}

fn key_text(s: &str) -> Result<KeyText, std::convert::Infallible> {
    Ok(KeyText(s.to_string()))
}

impl SecretsKeyArgs {
    /// The key given with `--secrets-key`, if any.
    pub fn inline_key(
        &self,
    ) -> Result<Option<crate::secrets::MasterKey>, crate::secrets::SecretError> {
        self.secrets_key
            .as_ref()
            .map(|k| {
                crate::secrets::MasterKey::from_base64(&k.0)
                    .map_err(|e| crate::secrets::SecretError::BadKey(format!("--secrets-key: {e}")))
            })
            .transpose()
    }

    /// The configured key, else the key file's (created when missing). Says whether the key
    /// file was just created.
    pub fn load(&self) -> Result<(crate::secrets::MasterKey, bool), crate::secrets::SecretError> {
        match self.inline_key()? {
            Some(key) => Ok((key, false)),
            None => crate::secrets::MasterKey::load_or_create(&self.secrets_key_file),
        }
    }
}

/// `scaff secrets`.
#[derive(Debug, Clone, clap::Args)]
pub struct SecretsArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: SecretsCommand,
}

/// The `scaff secrets` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum SecretsCommand {
    /// Replace the master key: re-seal every secret with a new key, then swap the key file.
    #[command(long_about = ROTATE_KEY_ABOUT)]
    RotateKey(RotateKeyArgs),
}

const ROTATE_KEY_ABOUT: &str = "\
Replace the master key that seals secrets.

Generates a new random key into --new-key-file (default: <key file>.new, mode 0600), opens
every stored secret with the current key and seals it again with the new one, then keeps the
current key as <key file>.old and atomically renames the new key file over the key file. It
prints how many secrets were re-sealed.

Every secret is opened before anything is written: a secret sealed by another key (or one that
does not decrypt) stops the rotation with an error naming it, and nothing is changed. If the
rotation stops half-way (a crash, a lost database connection), run it again: it reuses the new
key file it left behind and finishes the job.

Stop every server using this database first (a secret stored during the rotation could be lost),
then start them with the new key: copy the new key file to every node. With --secrets-key (or
SCAFF_SECRETS_KEY) as the current key, the new key stays in --new-key-file; configure it in
place of the old one before starting the servers.";

/// `scaff secrets rotate-key`.
#[derive(Debug, Clone, clap::Args)]
pub struct RotateKeyArgs {
    /// The database holding the secrets.
    #[command(flatten)]
    pub database: DatabaseArgs,

    /// The current key.
    #[command(flatten)]
    pub key: SecretsKeyArgs,

    /// Where the new key is written first (it must not exist, unless an interrupted rotation
    /// left it there). Default: the key file's name followed by `.new`.
    #[arg(long)]
    pub new_key_file: Option<PathBuf>,
}

impl RotateKeyArgs {
    /// `--new-key-file`, or `<key file>.new`.
    pub fn new_key_file(&self) -> PathBuf {
        self.new_key_file
            .clone()
            .unwrap_or_else(|| crate::secrets::with_suffix(&self.key.secrets_key_file, ".new"))
    }
}

/// Where the data lives.
#[derive(Debug, Clone, clap::Args)]
pub struct DatabaseArgs {
    /// Database URL: `sqlite://PATH` (embedded, the default) or `postgres://USER@HOST/DB`.
    /// When unset, `DATABASE_URL` is read too; failing both, `sqlite://scaff.db`.
    #[arg(long, env = "SCAFF_DATABASE_URL")]
    pub database_url: Option<String>,

    /// Most database connections (SQLite: readers; it always has one writer).
    #[arg(long, env = "SCAFF_DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub db_max_connections: u32,
}

impl DatabaseArgs {
    /// The URL to use: the flag or `SCAFF_DATABASE_URL`, else `DATABASE_URL`, else the default.
    pub fn url(&self) -> String {
        self.database_url
            .clone()
            .filter(|s| !s.is_empty())
            .or_else(|| std::env::var("DATABASE_URL").ok().filter(|s| !s.is_empty()))
            .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_string())
    }
}

/// `scaff serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on (`127.0.0.1:0` picks a free port and logs it).
    #[arg(long, env = "SCAFF_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Largest request body accepted, in bytes; larger ones get 413.
    #[arg(long, env = "SCAFF_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Secret that signs resume tokens (at least 32 bytes). When unset, one is generated on
    /// first start and kept in the database, so restarts keep tokens valid.
    #[arg(long, env = "SCAFF_RESUME_TOKEN_SECRET", hide_env_values = true)]
    pub resume_token_secret: Option<String>,

    /// How long a resume token stays valid after it is issued (`7d`, `12h`, `90m`); every read
    /// of a waiting run issues a fresh one.
    #[arg(long, env = "SCAFF_RESUME_TOKEN_TTL", default_value = "7d", value_parser = parse_duration)]
    pub resume_token_ttl: scaff_core::workflow::Duration,

    /// The longest `wait_ms` a client may ask for, in milliseconds.
    #[arg(long, env = "SCAFF_MAX_WAIT_MS", default_value_t = 60_000)]
    pub max_wait_ms: u64,

    /// Seconds to let in-flight requests finish after SIGTERM or ctrl-c.
    #[arg(long, env = "SCAFF_SHUTDOWN_GRACE_S", default_value_t = 10)]
    pub shutdown_grace_s: u64,

    /// Group commit: the most checkpoints (of different runs) written in one transaction and
    /// one commit, and the most starts created together. 1 turns batching off (one commit per
    /// step and per start).
    #[arg(long, env = "SCAFF_CHECKPOINT_BATCH_MAX", default_value_t = 128, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub checkpoint_batch_max: u64,

    /// Group commit: how many checkpoint batches (and, apart, start batches) may be committing
    /// at once.
    #[arg(long, env = "SCAFF_CHECKPOINT_WRITERS", default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub checkpoint_writers: u64,

    /// The database.
    #[command(flatten)]
    pub database: DatabaseArgs,

    /// Model providers.
    #[command(flatten)]
    pub ai: AiArgs,

    /// The master key of secrets.
    #[command(flatten)]
    pub secrets: SecretsKeyArgs,

    /// What `api_call` steps may reach.
    #[command(flatten)]
    pub http: HttpArgs,

    /// How approvers are notified.
    #[command(flatten)]
    pub notify: NotifyArgs,

    /// Who may call the API.
    #[command(flatten)]
    pub auth: AuthArgs,
}

/// Approval messages: the SMTP server, the sender, the links, the outbox polling.
#[derive(Debug, Clone, clap::Args)]
pub struct NotifyArgs {
    /// SMTP server for approval messages: `smtp://host:port` (plain), `smtp://host?tls=required`
    /// (STARTTLS), `smtps://host` (TLS); `user:password@` authenticates. When unset, `SMTP_URL`
    /// is read too; failing both, messages are written to the log and kept in the outbox
    /// (`GET /v1/outbox`).
    #[arg(long, env = "SCAFF_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<String>,

    /// Sender address of approval messages (`From`), e.g. `Scaff <scaff@example.com>`.
    #[arg(long, env = "SCAFF_SMTP_FROM", default_value = crate::notify::DEFAULT_FROM)]
    pub smtp_from: String,

    /// Base URL under which approvers reach this server, for the links in messages (e.g.
    /// `https://scaff.example.com`). Default: `http://` and the address listened on.
    #[arg(long, env = "SCAFF_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// How often the outbox is checked for messages to send, in milliseconds.
    #[arg(long, env = "SCAFF_OUTBOX_POLL_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub outbox_poll_ms: u64,
}

impl NotifyArgs {
    /// The SMTP URL: the flag or `SCAFF_SMTP_URL`, else `SMTP_URL`; empty means none.
    pub fn smtp_url(&self) -> Option<String> {
        self.smtp_url
            .clone()
            .filter(|s| !s.is_empty())
            .or_else(|| std::env::var("SMTP_URL").ok().filter(|s| !s.is_empty()))
    }

    /// The sender settings these flags describe; `listening` is the bound address, the
    /// default base of links.
    pub fn settings(&self, listening: SocketAddr) -> crate::notify::NotifySettings {
        crate::notify::NotifySettings {
            smtp_url: self.smtp_url(),
            from: self.smtp_from.clone(),
            public_url: self
                .public_url
                .clone()
                .filter(|u| !u.is_empty())
                .unwrap_or_else(|| format!("http://{listening}")),
            poll: std::time::Duration::from_millis(self.outbox_poll_ms),
            ..crate::notify::NotifySettings::default()
        }
    }
}

/// The host policy and limits of `api_call` requests.
#[derive(Debug, Clone, clap::Args)]
pub struct HttpArgs {
    /// Hosts `api_call` steps may call, comma-separated; `.example.com` also allows every
    /// name under it. When empty, any host not denied is allowed.
    #[arg(long, env = "SCAFF_HTTP_ALLOW_HOSTS", value_delimiter = ',')]
    pub http_allow_hosts: Vec<String>,

    /// Hosts `api_call` steps may never call, comma-separated (`.example.com` for a domain);
    /// wins over the allowed hosts.
    #[arg(long, env = "SCAFF_HTTP_DENY_HOSTS", value_delimiter = ',')]
    pub http_deny_hosts: Vec<String>,

    /// Refuse `api_call` requests to loopback, private, link-local (cloud metadata) and
    /// unique-local addresses, checked on the resolved address of every hop. Recommended in
    /// production.
    #[arg(long, env = "SCAFF_HTTP_DENY_PRIVATE_NETWORKS", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub http_deny_private_networks: bool,

    /// Largest `api_call` response body read, in bytes; larger ones fail the step.
    #[arg(long, env = "SCAFF_HTTP_MAX_RESPONSE_BYTES", default_value_t = 10 * 1024 * 1024)]
    pub http_max_response_bytes: u64,
}

impl HttpArgs {
    /// The adapter settings these flags describe (empty list entries dropped).
    pub fn settings(&self) -> crate::executors::http::HttpSettings {
        let list = |v: &[String]| {
            v.iter()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        };
        crate::executors::http::HttpSettings {
            allow_hosts: list(&self.http_allow_hosts),
            deny_hosts: list(&self.http_deny_hosts),
            deny_private_networks: self.http_deny_private_networks,
            max_response_bytes: self.http_max_response_bytes,
        }
    }
}

/// Model providers for `ai_generate` steps.
#[derive(Debug, Clone, clap::Args)]
pub struct AiArgs {
    /// Provider for steps that name none.
    #[arg(long, env = "SCAFF_AI_PROVIDER", value_enum, default_value_t = AiProviderArg::Mock)]
    pub ai_provider: AiProviderArg,

    /// Seed of the mock provider (same seed and prompt, same answer). When unset,
    /// `MOCK_AI_SEED` is read too; failing both, 42.
    #[arg(long, env = "SCAFF_MOCK_AI_SEED")]
    pub mock_ai_seed: Option<u64>,

    /// Mock behaviour for steps that set none: success, schema_violation, timeout,
    /// transient_error.
    #[arg(long, env = "SCAFF_MOCK_AI_MODE", default_value = "success")]
    pub mock_ai_mode: String,

    /// Per-call timeout of AI steps that set none, in seconds.
    #[arg(long, env = "SCAFF_AI_TIMEOUT_S", default_value_t = 60)]
    pub ai_timeout_s: u64,

    /// Base URL of an OpenAI-compatible API (a local server works too).
    #[arg(
        long,
        env = "SCAFF_OPENAI_BASE_URL",
        default_value = "https://api.openai.com/v1"
    )]
    pub openai_base_url: String,

    /// API key for the OpenAI-compatible API; enables the `openai` provider. When unset,
    /// `OPENAI_API_KEY` is read too.
    #[arg(long, env = "SCAFF_OPENAI_API_KEY", hide_env_values = true)]
    pub openai_api_key: Option<String>,

    /// Name of a stored secret holding the OpenAI API key (read at each call, so rotating the
    /// secret needs no restart); enables the `openai` provider.
    #[arg(long, env = "SCAFF_OPENAI_API_KEY_SECRET")]
    pub openai_api_key_secret: Option<String>,

    /// Model for `openai` steps that name none.
    #[arg(long, env = "SCAFF_OPENAI_MODEL", default_value = "gpt-4o-mini")]
    pub openai_model: String,

    /// Base URL of the Anthropic API.
    #[arg(
        long,
        env = "SCAFF_ANTHROPIC_BASE_URL",
        default_value = "https://api.anthropic.com"
    )]
    pub anthropic_base_url: String,

    /// API key for Anthropic; enables the `anthropic` provider. When unset,
    /// `ANTHROPIC_API_KEY` is read too.
    #[arg(long, env = "SCAFF_ANTHROPIC_API_KEY", hide_env_values = true)]
    pub anthropic_api_key: Option<String>,

    /// Name of a stored secret holding the Anthropic API key; enables the `anthropic`
    /// provider.
    #[arg(long, env = "SCAFF_ANTHROPIC_API_KEY_SECRET")]
    pub anthropic_api_key_secret: Option<String>,

    /// Model for `anthropic` steps that name none.
    #[arg(
        long,
        env = "SCAFF_ANTHROPIC_MODEL",
        default_value = "claude-sonnet-4-5"
    )]
    pub anthropic_model: String,
}

/// Provider names accepted by `--ai-provider`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AiProviderArg {
    /// Deterministic, offline.
    Mock,
    /// OpenAI-compatible Chat Completions.
    Openai,
    /// Anthropic Messages.
    Anthropic,
}

impl AiArgs {
    /// The mock seed: the flag or `SCAFF_MOCK_AI_SEED`, else `MOCK_AI_SEED`, else 42.
    pub fn seed(&self) -> u64 {
        self.mock_ai_seed
            .or_else(|| std::env::var("MOCK_AI_SEED").ok()?.parse().ok())
            .unwrap_or(42)
    }

    /// The OpenAI key: the flag or `SCAFF_OPENAI_API_KEY`, else `OPENAI_API_KEY`.
    pub fn openai_key(&self) -> Option<String> {
        self.openai_api_key
            .clone()
            .or_else(|| std::env::var("OPENAI_API_KEY").ok())
            .filter(|k| !k.is_empty())
    }

    /// The Anthropic key: the flag or `SCAFF_ANTHROPIC_API_KEY`, else `ANTHROPIC_API_KEY`.
    pub fn anthropic_key(&self) -> Option<String> {
        self.anthropic_api_key
            .clone()
            .or_else(|| std::env::var("ANTHROPIC_API_KEY").ok())
            .filter(|k| !k.is_empty())
    }
}

fn parse_duration(s: &str) -> Result<scaff_core::workflow::Duration, String> {
    scaff_core::workflow::Duration::parse(s)
}

/// `scaff validate`.
#[derive(Debug, Clone, clap::Args)]
pub struct ValidateArgs {
    /// Workflow files (YAML or JSON).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

/// Log line formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line, for log pipelines.
    Json,
    /// Human-readable lines.
    Text,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn rotate_key_puts_the_new_key_beside_the_key_file_by_default() {
        let cli = Cli::try_parse_from([
            "scaff",
            "secrets",
            "rotate-key",
            "--secrets-key-file",
            "/etc/scaff/master.key",
        ])
        .expect("parses");
        let Command::Secrets(SecretsArgs {
            command: SecretsCommand::RotateKey(args),
        }) = cli.command
        else {
            panic!("rotate-key")
        };
        assert_eq!(
            args.new_key_file(),
            PathBuf::from("/etc/scaff/master.key.new")
        );
    }

    #[test]
    fn a_malformed_secrets_key_is_refused_without_echoing_it() {
        let cli = Cli::try_parse_from(["scaff", "serve", "--secrets-key", "c2hvcnQ="])
            .expect("parsed later");
        let Command::Serve(args) = cli.command else {
            panic!("serve")
        };
        let err = args.secrets.load().expect_err("too short");
        assert!(err.to_string().contains("32 bytes"), "{err}");
        assert!(!err.to_string().contains("c2hvcnQ"), "{err}");
        let debug = format!(
            "{:?}",
            Cli::try_parse_from([
                "scaff",
                "serve",
                "--secrets-key",
                "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
            ])
            .expect("parses")
        );
        assert!(!debug.contains("AAAAAAAA"), "{debug}");
    }

    #[test]
    fn auth_is_required_by_default_and_none_only_on_loopback() {
        let serve = |args: &[&str]| {
            let mut all = vec!["scaff", "serve"];
            all.extend_from_slice(args);
            let Command::Serve(args) = Cli::try_parse_from(all).expect("parses").command else {
                panic!("serve")
            };
            args
        };
        let args = serve(&[]);
        assert_eq!(args.auth.auth, crate::auth::AuthMode::Required);
        let mode = |a: &ServeArgs| a.auth.authenticator(a.listen).map(|a| a.mode());
        assert_eq!(mode(&args).ok(), Some(crate::auth::AuthMode::Required));
        let args = serve(&["--auth", "none"]);
        assert_eq!(mode(&args).ok(), Some(crate::auth::AuthMode::None));
        let args = serve(&["--auth", "none", "--listen", "[::1]:9000"]);
        assert_eq!(mode(&args).ok(), Some(crate::auth::AuthMode::None));
        let args = serve(&["--auth", "none", "--listen", "0.0.0.0:8080"]);
        let err = mode(&args).expect_err("refused");
        assert!(err.to_string().contains("--auth none"), "{err}");
    }

    #[test]
    fn serve_defaults_to_loopback_8080() {
        let cli = Cli::try_parse_from(["scaff", "serve"]).expect("parses");
        let Command::Serve(args) = cli.command else {
            panic!("serve")
        };
        assert_eq!(args.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(args.max_body_bytes, 1024 * 1024);
    }

    #[test]
    fn notify_flags_parse_into_settings() {
        let addr: SocketAddr = "127.0.0.1:9999".parse().expect("addr");
        let cli = Cli::try_parse_from(["scaff", "serve"]).expect("parses");
        let Command::Serve(args) = cli.command else {
            panic!("serve")
        };
        let s = args.notify.settings(addr);
        assert_eq!(s.from, "scaff@localhost");
        assert_eq!(s.public_url, "http://127.0.0.1:9999");
        assert_eq!(s.poll, std::time::Duration::from_secs(1));
        let cli = Cli::try_parse_from([
            "scaff",
            "serve",
            "--smtp-url",
            "smtp://mail.example.com:2525",
            "--smtp-from",
            "Scaff <scaff@example.com>",
            "--public-url",
            "https://scaff.example.com",
            "--outbox-poll-ms",
            "250",
        ])
        .expect("parses");
        let Command::Serve(args) = cli.command else {
            panic!("serve")
        };
        let s = args.notify.settings(addr);
        assert_eq!(s.smtp_url.as_deref(), Some("smtp://mail.example.com:2525"));
        assert_eq!(s.from, "Scaff <scaff@example.com>");
        assert_eq!(s.public_url, "https://scaff.example.com");
        assert_eq!(s.poll, std::time::Duration::from_millis(250));
        assert!(Cli::try_parse_from(["scaff", "serve", "--outbox-poll-ms", "0"]).is_err());
    }

    #[test]
    fn http_flags_parse_into_settings() {
        let cli = Cli::try_parse_from(["scaff", "serve"]).expect("parses");
        let Command::Serve(args) = cli.command else {
            panic!("serve")
        };
        assert_eq!(
            args.http.settings(),
            crate::executors::http::HttpSettings::default()
        );
        let cli = Cli::try_parse_from([
            "scaff",
            "serve",
            "--http-allow-hosts",
            "api.example.com, .example.org",
            "--http-deny-hosts=bad.example.org",
            "--http-deny-private-networks",
            "--http-max-response-bytes",
            "1024",
        ])
        .expect("parses");
        let Command::Serve(args) = cli.command else {
            panic!("serve")
        };
        let s = args.http.settings();
        assert_eq!(s.allow_hosts, ["api.example.com", ".example.org"]);
        assert_eq!(s.deny_hosts, ["bad.example.org"]);
        assert!(s.deny_private_networks);
        assert_eq!(s.max_response_bytes, 1024);
    }
}
