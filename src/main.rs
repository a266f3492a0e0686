//! The `scaff` binary: parses the command line and wires the concrete parts together.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use scaff::api::{self, Limits};
use std::sync::Arc;

use scaff::auth::{self, AuthMode};
use scaff::config::{
    AiArgs, AiProviderArg, Cli, Command, DatabaseArgs, KeysCommand, RotateKeyArgs, SecretsCommand,
    ServeArgs, ValidateArgs,
};
use scaff::executors::ai::{AnthropicProvider, MockProvider, OpenAiProvider, Providers};
use scaff::server::{self, Settings};
use scaff::store::{self, StoreOptions, redact_url};
use scaff::{report, telemetry};
use scaff_actors::AiSettings;
use scaff_core::workflow::{MockConfig, MockMode, Provider};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Inside the runtime's context: the gRPC span exporter needs one.
    let telemetry = {
        let _rt = runtime.enter();
        telemetry::init(cli.log_format, &cli.log)
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve(*args).await.map(|()| ExitCode::SUCCESS),
            Command::Migrate(args) => migrate(args).await.map(|()| ExitCode::SUCCESS),
            Command::Validate(args) => Ok(validate(&args)),
            Command::Openapi => {
                print!("{}", api::openapi_yaml());
                Ok(ExitCode::SUCCESS)
            }
            Command::Secrets(args) => match args.command {
                SecretsCommand::RotateKey(args) => {
                    rotate_key(args).await.map(|()| ExitCode::SUCCESS)
                }
            },
            Command::Keys(args) => keys(args.command).await.map(|()| ExitCode::SUCCESS),
        }
    });
    // Export the spans still queued before the process exits.
    telemetry.shutdown();
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    // Refused before anything else happens: `--auth none` off loopback, unreadable JWT keys.
    let auth = args.auth.authenticator(args.listen)?;
    let url = args.database.url();
    let store = store::connect(&url, &store_options(&args.database, true))
        .await
        .with_context(|| format!("opening {}", redact_url(&url)))?;
    if auth.mode() == AuthMode::Required {
        first_key(store.as_ref()).await?;
    } else {
        tracing::warn!(
            "authentication is off (--auth none): anyone who reaches {} may do anything",
            args.listen
        );
    }
    let (secrets_key, created) = args.secrets.load()?;
    if created {
        tracing::warn!(
            path = %args.secrets.secrets_key_file.display(),
            key_id = secrets_key.key_id(),
            "generated a new secrets key file; back it up: secrets cannot be read without it"
        );
    }
    // Bound first: the address it got is the default base of links in messages.
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let local = listener.local_addr()?;
    let settings = Settings {
        secrets_key: Some(secrets_key),
        notify: args.notify.settings(local),
        limits: Limits {
            max_body_bytes: args.max_body_bytes,
        },
        token_secret: args.resume_token_secret.clone(),
        token_ttl: Duration::from_secs(args.resume_token_ttl.as_secs()),
        max_wait: Duration::from_millis(args.max_wait_ms),
        ai: Arc::new(providers(&args.ai)?),
        ai_settings: ai_settings(&args.ai)?,
        http: args.http.settings(),
        auth: Arc::new(auth),
        runtime: scaff_actors::RuntimeConfig {
            checkpoint_batch_max: usize::try_from(args.checkpoint_batch_max).unwrap_or(1),
            checkpoint_writers: usize::try_from(args.checkpoint_writers).unwrap_or(1),
            ..Default::default()
        },
        ..Settings::default()
    };
    let state = server::build(store, settings).await?;
    let runtime = state.runtime.clone();
    let notifier = state.notifier.clone();
    let shutdown = shutdown_signal();
    tracing::info!(
        address = %local,
        database = %redact_url(&url),
        notifications = notifier.transport(),
        "scaff listening on http://{local}"
    );
    let grace = Duration::from_secs(args.shutdown_grace_s);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut server_stop = stop_rx.clone();
    let server = axum::serve(listener, api::router(state)).with_graceful_shutdown(async move {
        let _ = server_stop.wait_for(|stop| *stop).await;
    });
    let served = tokio::spawn(async move { server.await });
    let recovering = runtime.clone();
    tokio::spawn(async move { server::recover(&recovering).await });
    tokio::pin!(served);
    tokio::select! {
        r = &mut served => r??,
        () = shutdown => {
            let _ = stop_tx.send(true);
            // Open event streams end now: graceful shutdown waits for every response.
            runtime.events().close();
            // In-flight requests get `grace` to finish.
            match tokio::time::timeout(grace, &mut served).await {
                Ok(r) => r??,
                Err(_) => tracing::warn!("shutdown grace period over; exiting with requests still in flight"),
            }
        }
    }
    drop(stop_rx);
    // Runs mid-step are redone from their last checkpoint at the next start.
    runtime.shutdown(grace).await;
    notifier.shutdown(grace).await;
    tracing::info!("scaff stopped");
    Ok(())
}

/// The model providers the flags configure: the mock always, the others when keyed.
fn providers(args: &AiArgs) -> anyhow::Result<Providers> {
    let default = match args.ai_provider {
        AiProviderArg::Mock => Provider::Mock,
        AiProviderArg::Openai => Provider::Openai,
        AiProviderArg::Anthropic => Provider::Anthropic,
    };
    let mut providers = Providers::new(MockProvider::new(args.seed())).with_default(default);
    let openai_key = args.openai_key();
    if openai_key.is_some() || args.openai_api_key_secret.is_some() {
        providers = providers.with_openai(
            OpenAiProvider::new(&args.openai_base_url, openai_key, &args.openai_model)
                .context("building the OpenAI client")?,
        );
    }
    let anthropic_key = args.anthropic_key();
    if anthropic_key.is_some() || args.anthropic_api_key_secret.is_some() {
        providers = providers.with_anthropic(
            AnthropicProvider::new(
                &args.anthropic_base_url,
                anthropic_key,
                &args.anthropic_model,
            )
            .context("building the Anthropic client")?,
        );
    }
    anyhow::ensure!(
        providers.is_configured(default),
        "--ai-provider {} needs its API key (SCAFF_{}_API_KEY or SCAFF_{}_API_KEY_SECRET)",
        provider_name(default),
        provider_name(default).to_uppercase(),
        provider_name(default).to_uppercase()
    );
    Ok(providers)
}

fn provider_name(p: Provider) -> &'static str {
    match p {
        Provider::Mock => "mock",
        Provider::Openai => "openai",
        Provider::Anthropic => "anthropic",
    }
}

fn ai_settings(args: &AiArgs) -> anyhow::Result<AiSettings> {
    let mode: MockMode = serde_json::from_value(serde_json::Value::String(
        args.mock_ai_mode.clone(),
    ))
    .map_err(|_| {
        anyhow::anyhow!(
            "--mock-ai-mode must be one of success, schema_violation, timeout, transient_error"
        )
    })?;
    Ok(AiSettings {
        default_provider: match args.ai_provider {
            AiProviderArg::Mock => Provider::Mock,
            AiProviderArg::Openai => Provider::Openai,
            AiProviderArg::Anthropic => Provider::Anthropic,
        },
        default_mock: MockConfig {
            mode,
            fail_times: None,
        },
        timeout: Duration::from_secs(args.ai_timeout_s.max(1)),
        openai_key_secret: args.openai_api_key_secret.clone(),
        anthropic_key_secret: args.anthropic_api_key_secret.clone(),
        ..AiSettings::default()
    })
}

async fn migrate(args: DatabaseArgs) -> anyhow::Result<()> {
    let url = args.url();
    store::connect(&url, &store_options(&args, true))
        .await
        .with_context(|| format!("migrating {}", redact_url(&url)))?;
    println!("migrations applied to {}", redact_url(&url));
    Ok(())
}

/// `scaff secrets rotate-key`.
async fn rotate_key(args: RotateKeyArgs) -> anyhow::Result<()> {
    let url = args.database.url();
    let store = store::connect(&url, &store_options(&args.database, true))
        .await
        .with_context(|| format!("opening {}", redact_url(&url)))?;
    let new_key_file = args.new_key_file();
    let report = scaff::secrets::rotate_key_file(
        store.as_ref(),
        &args.key.secrets_key_file,
        args.key.inline_key()?,
        &new_key_file,
    )
    .await
    .context("rotating the secrets key")?;
    if report.resumed {
        println!(
            "resumed an interrupted rotation with the key in {}",
            new_key_file.display()
        );
    }
    if report.rotation.already_new > 0 {
        println!(
            "{} secret(s) were already sealed with the new key",
            report.rotation.already_new
        );
    }
    println!(
        "re-sealed {} secret(s) with key {} (was {})",
        report.rotation.resealed, report.new_key_id, report.old_key_id
    );
    match &report.old_key_file {
        Some(old) => println!(
            "{} now holds the new key; the old key is kept in {}",
            report.new_key_location.display(),
            old.display()
        ),
        None => println!(
            "the new key is in {}: configure it as SCAFF_SECRETS_KEY (or --secrets-key) before \
             starting the servers",
            report.new_key_location.display()
        ),
    }
    Ok(())
}

/// On a database that never had an API key, creates the first admin key and prints it once,
/// framed, to stderr (the log line says only that it happened).
async fn first_key(store: &dyn scaff_core::store::KeyStore) -> anyhow::Result<()> {
    let issued = auth::bootstrap_key(store, chrono::Utc::now())
        .await
        .context("creating the first API key")?;
    if let Some(issued) = issued {
        eprintln!("{}", auth::first_key_banner(&issued.key));
        tracing::info!(
            key = %issued.record.name,
            prefix = %issued.record.prefix,
            "created the first admin API key; it was printed once above"
        );
    }
    Ok(())
}

/// `scaff keys …`.
async fn keys(command: KeysCommand) -> anyhow::Result<()> {
    let database = match &command {
        KeysCommand::Create(a) => &a.database,
        KeysCommand::List(d) => d,
        KeysCommand::Revoke(a) => &a.database,
    };
    let url = database.url();
    let store = store::connect(&url, &store_options(database, true))
        .await
        .with_context(|| format!("opening {}", redact_url(&url)))?;
    let now = chrono::Utc::now();
    match command {
        KeysCommand::Create(args) => {
            let issued = auth::issue_key(store.as_ref(), &args.name, args.role.into(), now)
                .await
                .context("creating the key")?;
            eprintln!(
                "created {} key `{}` (id {}); it is shown once:",
                issued.record.role, issued.record.name, issued.record.id
            );
            println!("{}", issued.key);
        }
        KeysCommand::List(_) => {
            let keys = store.list_keys().await.context("listing keys")?;
            println!(
                "{:<36}  {:<8}  {:<15}  {:<20}  {:<20}  {:<20}  NAME",
                "ID", "ROLE", "PREFIX", "CREATED", "LAST USED", "REVOKED"
            );
            let when = |t: Option<chrono::DateTime<chrono::Utc>>| {
                t.map_or_else(
                    || "-".to_string(),
                    |t| t.format("%Y-%m-%d %H:%M:%S").to_string(),
                )
            };
            for k in keys {
                println!(
                    "{:<36}  {:<8}  {:<15}  {:<20}  {:<20}  {:<20}  {}",
                    k.id,
                    k.role.as_str(),
                    format!("{}{}", auth::KEY_PREFIX, k.prefix),
                    when(Some(k.created_at)),
                    when(k.last_used_at),
                    when(k.revoked_at),
                    k.name
                );
            }
        }
        KeysCommand::Revoke(args) => match store.revoke_key(args.id, now).await? {
            Some(k) => println!("revoked key `{}` ({})", k.name, k.id),
            None => anyhow::bail!("no key has id {}", args.id),
        },
    }
    Ok(())
}

fn store_options(args: &DatabaseArgs, migrate: bool) -> StoreOptions {
    StoreOptions {
        max_connections: args.db_max_connections,
        migrate,
    }
}

/// Checks each file; prints problems compiler-style; fails when any file has one.
fn validate(args: &ValidateArgs) -> ExitCode {
    let mut failed = false;
    for path in &args.files {
        let name = path.display().to_string();
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("{name}: error: cannot read the file: {e}");
                failed = true;
                continue;
            }
        };
        match scaff_core::workflow::parse(&text) {
            Ok(_) => println!("{name}: ok"),
            Err(diags) => {
                print!("{}", report::render(&name, &diags));
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Installs the ctrl-c and SIGTERM handlers now (so a signal arriving at any point after
/// start-up is seen) and returns a future that resolves on the first of them.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let (mut term, mut int) = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::terminate()).ok(),
            signal(SignalKind::interrupt()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            let term = async {
                match term.as_mut() {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            let int = async {
                match int.as_mut() {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = term => {},
                () = int => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("shutdown signal received; finishing in-flight requests");
    }
}
