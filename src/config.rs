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

    /// How long a resume token stays valid after its wait began (`7d`, `12h`, `90m`).
    #[arg(long, env = "SCAFF_RESUME_TOKEN_TTL", default_value = "7d", value_parser = parse_duration)]
    pub resume_token_ttl: scaff_core::workflow::Duration,

    /// The longest `wait_ms` a client may ask for, in milliseconds.
    #[arg(long, env = "SCAFF_MAX_WAIT_MS", default_value_t = 60_000)]
    pub max_wait_ms: u64,

    /// Seconds to let in-flight requests finish after SIGTERM or ctrl-c.
    #[arg(long, env = "SCAFF_SHUTDOWN_GRACE_S", default_value_t = 10)]
    pub shutdown_grace_s: u64,

    /// The database.
    #[command(flatten)]
    pub database: DatabaseArgs,

    /// Model providers.
    #[command(flatten)]
    pub ai: AiArgs,
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

    /// Model for `anthropic` steps that name none.
    #[arg(
        long,
        env = "SCAFF_ANTHROPIC_MODEL",
        default_value = "claude-3-5-haiku-latest"
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
    fn serve_defaults_to_loopback_8080() {
        let cli = Cli::try_parse_from(["scaff", "serve"]).expect("parses");
        let Command::Serve(args) = cli.command else {
            panic!("serve")
        };
        assert_eq!(args.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(args.max_body_bytes, 1024 * 1024);
    }
}
