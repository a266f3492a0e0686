//! Where rendered messages go: an SMTP server (lettre), or the log when none is configured.

use std::time::Duration;

use async_trait::async_trait;
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::PoolConfig;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use uuid::Uuid;

use super::NotifyError;
use crate::store::redact_url;

/// A message ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    /// The outbox message id (also the `Message-ID`, so receivers can drop duplicates).
    pub id: Uuid,
    /// The recipient's e-mail address.
    pub to: String,
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub body: String,
}

/// Why a message was not delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Worth trying again later (a 4xx reply, a refused connection, a timeout).
    #[error("{0}")]
    Transient(String),
    /// Will fail again the same way (a 5xx reply, a malformed address).
    #[error("{0}")]
    Permanent(String),
}

/// Delivers rendered messages.
#[async_trait]
pub trait Transport: Send + Sync {
    /// A short name for logs (`smtp`, `log`).
    fn name(&self) -> &'static str;

    /// Hands `mail` over for delivery.
    async fn send(&self, mail: &Mail) -> Result<(), SendError>;
}

/// Without an SMTP server, a message is "delivered" as one log line (and stays readable in
/// the outbox through `GET /v1/outbox`).
#[derive(Debug, Default, Clone, Copy)]
pub struct LogTransport;

#[async_trait]
impl Transport for LogTransport {
    fn name(&self) -> &'static str {
        "log"
    }

    async fn send(&self, mail: &Mail) -> Result<(), SendError> {
        // `?` (Debug) keeps the body on one line: newlines are escaped.
        tracing::info!(
            message_id = %mail.id,
            to = %mail.to,
            subject = %mail.subject,
            body = ?mail.body,
            "notification (no SMTP server configured; see GET /v1/outbox)"
        );
        Ok(())
    }
}

/// Sends through an SMTP server, reusing pooled connections.
pub struct SmtpTransport {
    inner: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    /// The domain of `Message-ID`s (the sender's domain).
    domain: String,
}

impl std::fmt::Debug for SmtpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpTransport")
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

impl SmtpTransport {
    /// A transport for `url`: `smtp://host[:port]` (plain, port 25), `smtp://…?tls=required`
    /// or `?tls=opportunistic` (STARTTLS, port 587), `smtps://host[:port]` (TLS, port 465);
    /// `user:password@` authenticates. Each SMTP command waits at most `timeout`.
    pub fn new(url: &str, from: &str, timeout: Duration) -> Result<Self, NotifyError> {
        let from: Mailbox = from
            .parse()
            .map_err(|_| NotifyError::From(from.to_string()))?;
        let inner = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| NotifyError::SmtpUrl {
                url: redact_url(url),
                reason: e.to_string(),
            })?
            .timeout(Some(timeout))
            .pool_config(PoolConfig::new().max_size(4))
            .build();
        let domain = from.email.domain().to_string();
        Ok(Self {
            inner,
            from,
            domain,
        })
    }
}

#[async_trait]
impl Transport for SmtpTransport {
    fn name(&self) -> &'static str {
        "smtp"
    }

    async fn send(&self, mail: &Mail) -> Result<(), SendError> {
        let to: Mailbox = mail.to.parse().map_err(|e| {
            SendError::Permanent(format!("`{}` is not an e-mail address: {e}", mail.to))
        })?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(mail.subject.as_str())
            .message_id(Some(format!("<{}@{}>", mail.id, self.domain)))
            .header(ContentType::TEXT_PLAIN)
            .body(mail.body.clone())
            .map_err(|e| SendError::Permanent(format!("cannot build the message: {e}")))?;
        match self.inner.send(message).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_permanent() => Err(SendError::Permanent(format!("SMTP: {e}"))),
            Err(e) => Err(SendError::Transient(format!("SMTP: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_urls_and_senders_are_refused_without_echoing_passwords() {
        let t = Duration::from_secs(1);
        let err = SmtpTransport::new("http://u:hunter2@mail.example.com", "a@b.c", t)
            .expect_err("not smtp");
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert!(matches!(
            SmtpTransport::new("smtp://mail.example.com", "not an address", t),
            Err(NotifyError::From(_))
        ));
    }

    #[tokio::test]
    async fn smtp_urls_of_every_kind_build() {
        let t = Duration::from_secs(1);
        for url in [
            "smtp://127.0.0.1:2525",
            "smtp://u:p@mail.example.com?tls=required",
            "smtp://mail.example.com?tls=opportunistic",
            "smtps://mail.example.com",
        ] {
            assert!(
                SmtpTransport::new(url, "Scaff <scaff@example.com>", t).is_ok(),
                "{url}"
            );
        }
    }
}
