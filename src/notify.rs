//! Notifications to people: the outbox sender.
//!
//! Checkpoints queue messages in the outbox table (an approval starts waiting: one message per
//! approver; a reminder fires: one per approver still undecided). A background task claims
//! due messages, renders each with a fresh resume token for its recipient, and hands it to the
//! [`Transport`]: SMTP when configured, else the log. Delivery is at least once: a failed
//! attempt is retried with exponential back-off, a claim lapses after a lease if the sender
//! dies mid-delivery, and nothing here ever blocks a run.

pub mod render;
pub mod transport;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use scaff_core::run::{Clock, RunStatus, WaitingInput};
use scaff_core::store::{OutboxMessage, Store};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::store::redact_url;
use crate::tokens::ResumeTokens;
pub use transport::{LogTransport, Mail, SendError, SmtpTransport, Transport};

/// The sender address used when none is configured.
pub const DEFAULT_FROM: &str = "scaff@localhost";

/// How failed deliveries are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The wait after the first failed attempt; it doubles after each further one.
    pub first: Duration,
    /// The longest wait between attempts.
    pub max: Duration,
    /// Attempts in all; the message is given up on (status `failed`) after the last.
    pub max_attempts: i32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            first: Duration::from_secs(5),
            max: Duration::from_secs(3600),
            max_attempts: 10,
        }
    }
}

impl RetryPolicy {
    /// The wait after failed attempt `attempt` (1 for the first): `first · 2^(attempt-1)`,
    /// at most `max`.
    pub fn delay(&self, attempt: i32) -> Duration {
        let doublings = u32::try_from(attempt.saturating_sub(1)).unwrap_or(0);
        let factor = 1u32.checked_shl(doublings).unwrap_or(u32::MAX);
        self.first.saturating_mul(factor).min(self.max)
    }
}

/// How notifications are sent.
#[derive(Clone)]
pub struct NotifySettings {
    /// The SMTP server (`smtp://…`, `smtps://…`); `None` writes messages to the log.
    pub smtp_url: Option<String>,
    /// The sender address (`From`).
    pub from: String,
    /// The base URL of this server as approvers reach it, for the links in messages.
    pub public_url: String,
    /// How often the outbox is checked for due messages.
    pub poll: Duration,
    /// How long a claimed message is reserved for its sender before another may retry it.
    pub lease: Duration,
    /// Most messages claimed at once.
    pub batch: u32,
    /// How long one SMTP command may take.
    pub smtp_timeout: Duration,
    /// Back-off of failed deliveries.
    pub retry: RetryPolicy,
}

impl Default for NotifySettings {
    fn default() -> Self {
        Self {
            smtp_url: None,
            from: DEFAULT_FROM.to_string(),
            public_url: "http://127.0.0.1:8080".to_string(),
            poll: Duration::from_secs(1),
            lease: Duration::from_secs(60),
            batch: 32,
            smtp_timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
        }
    }
}

impl std::fmt::Debug for NotifySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotifySettings")
            .field("smtp_url", &self.smtp_url.as_deref().map(redact_url))
            .field("from", &self.from)
            .field("public_url", &self.public_url)
            .field("poll", &self.poll)
            .field("lease", &self.lease)
            .field("batch", &self.batch)
            .field("smtp_timeout", &self.smtp_timeout)
            .field("retry", &self.retry)
            .finish()
    }
}

/// Why notifications could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The SMTP URL is not one lettre understands (the password is not shown).
    #[error("SMTP URL `{url}`: {reason}")]
    SmtpUrl {
        /// The URL, password redacted.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The sender address does not parse.
    #[error("the sender address `{0}` is not an e-mail address")]
    From(String),
    /// The public URL is not an http(s) URL.
    #[error("the public URL `{0}` must start with http:// or https://")]
    PublicUrl(String),
}

/// The running sender; clones share it. [`Notifier::shutdown`] stops it.
#[derive(Clone)]
pub struct Notifier {
    stop: watch::Sender<bool>,
    task: Arc<Mutex<Option<JoinHandle<()>>>>,
    transport: &'static str,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("transport", &self.transport)
            .finish_non_exhaustive()
    }
}

impl Notifier {
    /// Starts the sender over `store` with the transport `settings` name (SMTP, or the log).
    /// Must be called inside a tokio runtime.
    pub fn start(
        store: Arc<dyn Store>,
        tokens: Arc<ResumeTokens>,
        clock: Arc<dyn Clock>,
        settings: &NotifySettings,
    ) -> Result<Notifier, NotifyError> {
        let transport: Arc<dyn Transport> = match settings.smtp_url.as_deref() {
            Some(url) => Arc::new(SmtpTransport::new(
                url,
                &settings.from,
                settings.smtp_timeout,
            )?),
            None => Arc::new(LogTransport),
        };
        Self::start_with(store, tokens, clock, transport, settings)
    }

    /// Starts the sender with a given transport.
    pub fn start_with(
        store: Arc<dyn Store>,
        tokens: Arc<ResumeTokens>,
        clock: Arc<dyn Clock>,
        transport: Arc<dyn Transport>,
        settings: &NotifySettings,
    ) -> Result<Notifier, NotifyError> {
        let public_url = settings.public_url.trim_end_matches('/').to_string();
        if !(public_url.starts_with("http://") || public_url.starts_with("https://")) {
            return Err(NotifyError::PublicUrl(settings.public_url.clone()));
        }
        let name = transport.name();
        let (stop, stopped) = watch::channel(false);
        let sender = Sender {
            store,
            tokens,
            clock,
            transport,
            public_url,
            poll: settings.poll.max(Duration::from_millis(1)),
            lease: settings.lease,
            batch: settings.batch.max(1),
            retry: settings.retry,
        };
        tracing::debug!(transport = name, "notification sender started");
        let task = tokio::spawn(sender.run(stopped));
        Ok(Notifier {
            stop,
            task: Arc::new(Mutex::new(Some(task))),
            transport: name,
        })
    }

    /// The transport in use (`smtp` or `log`).
    pub fn transport(&self) -> &'static str {
        self.transport
    }

    /// Stops the sender: a delivery in progress gets `grace` to finish; messages claimed but
    /// not delivered are retried once their lease lapses.
    pub async fn shutdown(&self, grace: Duration) {
        let _ = self.stop.send(true);
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        if let Some(mut task) = task
            && tokio::time::timeout(grace, &mut task).await.is_err()
        {
            task.abort();
            tracing::warn!("notification sender stopped mid-delivery; the message will be retried");
        }
    }
}

/// What became of one message before it reached the transport.
enum Prepared {
    /// Ready to send.
    Mail(Mail),
    /// Not to be sent (the wait it is about is over): given up on with this reason.
    Drop(String),
    /// Not sendable now (the store failed): retried like a failed delivery.
    Retry(String),
}

/// The sender task's state.
struct Sender {
    store: Arc<dyn Store>,
    tokens: Arc<ResumeTokens>,
    clock: Arc<dyn Clock>,
    transport: Arc<dyn Transport>,
    public_url: String,
    poll: Duration,
    lease: Duration,
    batch: u32,
    retry: RetryPolicy,
}

impl Sender {
    async fn run(self, mut stop: watch::Receiver<bool>) {
        loop {
            self.drain(&stop).await;
            tokio::select! {
                changed = stop.changed() => {
                    // Stopped, or every handle dropped.
                    if changed.is_err() || *stop.borrow() {
                        break;
                    }
                }
                () = tokio::time::sleep(self.poll) => {}
            }
        }
        tracing::debug!("notification sender stopped");
    }

    /// Sends every due message, batch by batch.
    async fn drain(&self, stop: &watch::Receiver<bool>) {
        loop {
            if *stop.borrow() {
                return;
            }
            let claimed = match self
                .store
                .claim_messages(self.clock.now(), self.lease, self.batch)
                .await
            {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the outbox; trying again later");
                    return;
                }
            };
            let full = claimed.len() >= self.batch as usize;
            for message in claimed {
                if *stop.borrow() {
                    // The rest are retried once their lease lapses.
                    return;
                }
                self.deliver(message).await;
            }
            if !full {
                return;
            }
        }
    }

    async fn deliver(&self, message: OutboxMessage) {
        let mail = match self.prepare(&message).await {
            Prepared::Mail(mail) => mail,
            Prepared::Drop(reason) => {
                tracing::info!(
                    message_id = %message.message.id,
                    run_id = %message.run_id,
                    step_id = %message.message.step_id,
                    reason = %reason,
                    "notification dropped"
                );
                self.record_failure(&message, &reason, None).await;
                return;
            }
            Prepared::Retry(error) => return self.failed(&message, &error).await,
        };
        match self.transport.send(&mail).await {
            Ok(()) => {
                if let Err(e) = self
                    .store
                    .mark_sent(mail.id, &mail.subject, &mail.body, self.clock.now())
                    .await
                {
                    // It was delivered; it will be delivered again after the lease.
                    tracing::warn!(message_id = %mail.id, error = %e, "cannot record a delivered notification");
                }
                tracing::debug!(message_id = %mail.id, transport = self.transport.name(), "notification sent");
            }
            Err(SendError::Permanent(error)) => {
                tracing::warn!(
                    message_id = %mail.id,
                    run_id = %message.run_id,
                    recipient = %mail.to,
                    attempt = message.attempts + 1,
                    error = %error,
                    "notification refused; giving up on it"
                );
                self.record_failure(&message, &error, None).await;
            }
            Err(SendError::Transient(error)) => self.failed(&message, &error).await,
        }
    }

    /// The message rendered for its recipient, with a token minted now.
    async fn prepare(&self, m: &OutboxMessage) -> Prepared {
        let run = match self.store.get_run(m.run_id).await {
            Ok(Some(run)) => run,
            Ok(None) => return Prepared::Drop("not sent: the execution no longer exists".into()),
            Err(e) => return Prepared::Retry(format!("reading the execution: {e}")),
        };
        let step = &m.message.step_id;
        let waiting = run
            .waiting
            .as_ref()
            .filter(|_| run.status == RunStatus::Waiting)
            .filter(|w| w.step_id == *step && w.version == m.message.wait_version);
        let Some(waiting) = waiting else {
            return Prepared::Drop(format!(
                "not sent: the execution no longer waits on step `{step}`"
            ));
        };
        if let WaitingInput::Approval { decisions, .. } = &waiting.input
            && decisions
                .iter()
                .any(|d| d.approver.eq_ignore_ascii_case(&m.message.recipient))
        {
            return Prepared::Drop(format!(
                "not sent: {} has already decided",
                m.message.recipient
            ));
        }
        let token = match &waiting.input {
            // A form's token is the run's own (any holder may submit it once).
            WaitingInput::Form { .. } => self.tokens.issue(&run, self.clock.now()),
            WaitingInput::Approval { .. } => {
                self.tokens
                    .issue_for(&run, &m.message.recipient, self.clock.now())
            }
        };
        let Some(token) = token else {
            return Prepared::Retry("cannot sign a resume token".into());
        };
        let expires = self
            .tokens
            .verify(&token)
            .ok()
            .and_then(|c| DateTime::<Utc>::from_timestamp(c.exp, 0));
        let rendered = render::render(m, &self.public_url, &token, expires);
        Prepared::Mail(Mail {
            id: m.message.id,
            to: m.message.recipient.clone(),
            subject: rendered.subject,
            body: rendered.body,
        })
    }

    /// A failed attempt: retried after the back-off, or given up on after the last attempt.
    async fn failed(&self, m: &OutboxMessage, error: &str) {
        let attempt = m.attempts.saturating_add(1);
        let retry_in = (attempt < self.retry.max_attempts).then(|| self.retry.delay(attempt));
        let retry_at = retry_in.map(|d| {
            self.clock.now() + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::hours(1))
        });
        match retry_in {
            Some(d) => tracing::warn!(
                message_id = %m.message.id,
                run_id = %m.run_id,
                recipient = %m.message.recipient,
                attempt,
                retry_in_ms = d.as_millis() as u64,
                error = %error,
                "notification not delivered; will retry"
            ),
            None => tracing::error!(
                message_id = %m.message.id,
                run_id = %m.run_id,
                recipient = %m.message.recipient,
                attempt,
                error = %error,
                "notification not delivered after the last attempt; giving up"
            ),
        }
        self.record_failure(m, error, retry_at).await;
    }

    async fn record_failure(
        &self,
        m: &OutboxMessage,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
    ) {
        if let Err(e) = self.store.mark_failed(m.message.id, error, retry_at).await {
            tracing::warn!(message_id = %m.message.id, error = %e, "cannot record a failed notification; it is retried after its lease");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_doubles_up_to_the_cap() {
        let p = RetryPolicy::default();
        let secs: Vec<u64> = (1..=12).map(|a| p.delay(a).as_secs()).collect();
        assert_eq!(
            secs,
            [5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600, 3600]
        );
        assert_eq!(p.delay(i32::MAX), Duration::from_secs(3600));
        assert_eq!(p.delay(0), Duration::from_secs(5));
    }

    #[test]
    fn settings_never_show_the_smtp_password() {
        let s = NotifySettings {
            smtp_url: Some("smtp://me:hunter2@mail.example.com".into()),
            ..NotifySettings::default()
        };
        let shown = format!("{s:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("mail.example.com"));
    }
}
