//! Assembles the application around a store: the run runtime (with recovery of unfinished
//! runs), the resume-token service and the API state. `main` and the tests both build the
//! server through [`build`], so they exercise the same wiring.

use std::sync::Arc;
use std::time::Duration;

use scaff_actors::{
    AiSettings, CommandError, DefaultExecutor, Deps, HttpStepSettings, Metrics, Runtime,
    RuntimeConfig, StepExecutor,
};
use scaff_core::ai::AiProvider;
use scaff_core::run::{Clock, SystemClock};
use scaff_core::store::Store;

use crate::api::{self, AppState, Limits};
use crate::executors::ai::{MockProvider, Providers};
pub use crate::executors::http::HttpSettings;
use crate::executors::http::ReqwestHttp;
use crate::notify::{Notifier, NotifyError, NotifySettings};
use crate::secrets::{self, MasterKey, SecretsService};
use crate::tokens::{self, ResumeTokens, SecretError};

/// How the server behaves, beyond where its data lives.
#[derive(Clone)]
pub struct Settings {
    /// Request limits.
    pub limits: Limits,
    /// A configured resume-token secret; generated and stored when absent.
    pub token_secret: Option<String>,
    /// How long a resume token stays valid after its wait began.
    pub token_ttl: Duration,
    /// The longest `wait_ms` a client may ask for.
    pub max_wait: Duration,
    /// Runtime tunables.
    pub runtime: RuntimeConfig,
    /// The step executor; `None` builds the default one over [`Settings::ai`] (tests inject
    /// faults by giving their own).
    pub executor: Option<Arc<dyn StepExecutor>>,
    /// The model providers AI steps call.
    pub ai: Arc<dyn AiProvider>,
    /// Defaults and limits of AI steps.
    pub ai_settings: AiSettings,
    /// The time source.
    pub clock: Arc<dyn Clock>,
    /// What `api_call` requests may reach (host policy, SSRF) and how much they may read.
    pub http: HttpSettings,
    /// Back-off of `api_call` retries.
    pub http_steps: HttpStepSettings,
    /// The master key sealing secrets; `None` reads (or creates) the default key file,
    /// `scaff.key` in the working directory. The default settings carry a random key that
    /// lives as long as the process, so tests never touch a key file.
    pub secrets_key: Option<MasterKey>,
    /// Approval messages: SMTP or the log, links, polling and retries.
    pub notify: NotifySettings,
    /// Who may call the API. The default lets every request through (tests, embedding);
    /// `scaff serve` requires credentials unless told `--auth none`.
    pub auth: Arc<crate::auth::Authenticator>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            token_secret: None,
            token_ttl: Duration::from_secs(7 * 24 * 3600),
            max_wait: Duration::from_secs(60),
            runtime: RuntimeConfig::default(),
            executor: None,
            ai: Arc::new(Providers::new(MockProvider::new(42))),
            ai_settings: AiSettings::default(),
            clock: Arc::new(SystemClock),
            http: HttpSettings::default(),
            http_steps: HttpStepSettings::default(),
            secrets_key: Some(MasterKey::generate()),
            notify: NotifySettings::default(),
            auth: Arc::new(crate::auth::Authenticator::none()),
        }
    }
}

/// Why the server could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// No usable resume-token secret.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// No usable master key for secrets.
    #[error("secrets: {0}")]
    SecretsKey(#[from] secrets::SecretError),
    /// The HTTP client of `api_call` steps could not be built.
    #[error("http client: {0}")]
    Http(#[from] reqwest::Error),
    /// The notification sender could not be set up.
    #[error("notifications: {0}")]
    Notify(#[from] NotifyError),
    /// The runtime did not start.
    #[error("runtime: {0}")]
    Runtime(#[from] CommandError),
}

/// The API state over `store`, with the runtime started. Call [`recover`] once serving.
pub async fn build(store: Arc<dyn Store>, settings: Settings) -> Result<AppState, BuildError> {
    let secret = tokens::secret(store.as_ref(), settings.token_secret.as_deref()).await?;
    let secrets_key = match settings.secrets_key {
        Some(key) => key,
        None => MasterKey::load_or_create(std::path::Path::new(secrets::DEFAULT_KEY_FILE))?.0,
    };
    let secrets = Arc::new(SecretsService::new(
        store.clone(),
        secrets_key,
        settings.clock.clone(),
    ));
    // Load the stored secrets once, so the redaction filter knows their values before the
    // first log line or event that could hold one.
    if let Err(e) = secrets.decrypted().await {
        tracing::warn!(error = %e, "cannot read the stored secrets; their values are not redacted until they can be");
    }
    let http = Arc::new(ReqwestHttp::new(&settings.http)?);
    let deps = Deps {
        runs: store.clone(),
        workflows: store.clone(),
        timers: store.clone(),
        clock: settings.clock.clone(),
        executor: settings.executor.unwrap_or_else(|| {
            Arc::new(
                DefaultExecutor::new(
                    settings.ai.clone(),
                    store.clone(),
                    settings.ai_settings.clone(),
                )
                .with_http(http)
                .with_http_settings(settings.http_steps.clone())
                .with_secrets(secrets.clone()),
            )
        }),
        config: settings.runtime,
        redactor: secrets.redactor().clone(),
        metrics: Arc::new(Metrics::default()),
    };
    let tokens = Arc::new(ResumeTokens::new(&secret, settings.token_ttl));
    let notifier = Notifier::start(
        store.clone(),
        tokens.clone(),
        settings.clock.clone(),
        &settings.notify,
    )?;
    let runtime = Runtime::start(deps).await?;
    Ok(AppState {
        store,
        runtime,
        tokens,
        notifier,
        clock: settings.clock,
        limits: settings.limits,
        max_wait: settings.max_wait,
        openapi_yaml: api::openapi_yaml().into(),
        secrets,
        auth: settings.auth,
    })
}

/// Continues every run a crash left queued or running, logging how many.
pub async fn recover(runtime: &Runtime) {
    match runtime.recover().await {
        Ok(0) => {}
        Ok(n) => tracing::info!(runs = n, "recovered unfinished runs"),
        Err(e) => tracing::error!(error = %e, "recovering unfinished runs failed"),
    }
}
