//! The notification outbox: messages to people (approval requests, reminders), written in the
//! checkpoint that makes them necessary and sent at least once by a sender that retries.
//!
//! The checkpoint stores the facts ([`NewMessage`]); the sender renders the subject and body
//! (with fresh resume links) when it delivers, and records what it sent.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use uuid::Uuid;

use super::{Page, StoreError};

/// Why a message is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    /// An approval step started waiting for this approver.
    ApprovalRequested,
    /// A reminder: the approval still waits for this approver.
    ApprovalReminder,
    /// A form started waiting; this person is on its `notify` list.
    FormRequested,
    /// A reminder: the form still waits.
    FormReminder,
}

impl MessageKind {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::ApprovalRequested => "approval_requested",
            MessageKind::ApprovalReminder => "approval_reminder",
            MessageKind::FormRequested => "form_requested",
            MessageKind::FormReminder => "form_reminder",
        }
    }

    /// From the stored text.
    pub fn parse(s: &str) -> Option<MessageKind> {
        match s {
            "approval_requested" => Some(MessageKind::ApprovalRequested),
            "approval_reminder" => Some(MessageKind::ApprovalReminder),
            "form_requested" => Some(MessageKind::FormRequested),
            "form_reminder" => Some(MessageKind::FormReminder),
            _ => None,
        }
    }
}

/// A message to queue, carried by a [`Checkpoint`](super::Checkpoint).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewMessage {
    /// Message id (UUIDv7).
    pub id: Uuid,
    /// Why it is sent.
    pub kind: MessageKind,
    /// The e-mail address it goes to.
    pub recipient: String,
    /// The step it is about.
    pub step_id: String,
    /// The wait's version, so the sender can mint a resume token for exactly this wait.
    pub wait_version: i64,
    /// What the sender needs to render it: workflow id/version, the step's message, a summary
    /// of the context, the deadline.
    pub data: Json,
}

/// Where a message is in its delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageStatus {
    /// Not yet delivered (possibly after failed attempts).
    Pending,
    /// Delivered (to the SMTP server, or to the log when no SMTP server is configured).
    Sent,
    /// Given up on after too many failed attempts.
    Failed,
}

impl MessageStatus {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Pending => "pending",
            MessageStatus::Sent => "sent",
            MessageStatus::Failed => "failed",
        }
    }

    /// From the stored text.
    pub fn parse(s: &str) -> Option<MessageStatus> {
        match s {
            "pending" => Some(MessageStatus::Pending),
            "sent" => Some(MessageStatus::Sent),
            "failed" => Some(MessageStatus::Failed),
            _ => None,
        }
    }
}

/// A message in the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxMessage {
    /// What was queued.
    pub message: NewMessage,
    /// The run it belongs to.
    pub run_id: Uuid,
    /// Delivery status.
    pub status: MessageStatus,
    /// Delivery attempts so far.
    pub attempts: i32,
    /// The last delivery error, if any.
    pub last_error: Option<String>,
    /// The subject sent (once delivered).
    pub subject: Option<String>,
    /// The body sent (once delivered).
    pub body: Option<String>,
    /// When it was queued.
    pub created_at: DateTime<Utc>,
    /// When the next attempt may happen (pending messages).
    pub next_attempt_at: DateTime<Utc>,
    /// When it was delivered.
    pub sent_at: Option<DateTime<Utc>>,
}

/// Filters and position for listing the outbox (newest first).
#[derive(Debug, Clone, Default)]
pub struct OutboxQuery {
    /// Only messages in this status.
    pub status: Option<MessageStatus>,
    /// Only messages of this run.
    pub run_id: Option<Uuid>,
    /// Only messages older than this id (ids are UUIDv7, so they sort by time).
    pub before: Option<Uuid>,
    /// Page size.
    pub limit: u32,
}

/// Delivering and listing queued messages (queuing happens in checkpoints).
#[async_trait]
pub trait OutboxStore: Send + Sync {
    /// Claims up to `limit` pending messages due at `now`, oldest first: each claimed
    /// message's `next_attempt_at` moves to `now + lease`, so a concurrent sender skips it
    /// and a sender that dies mid-delivery leaves it to be retried after the lease.
    async fn claim_messages(
        &self,
        now: DateTime<Utc>,
        lease: std::time::Duration,
        limit: u32,
    ) -> Result<Vec<OutboxMessage>, StoreError>;

    /// Records a delivery: status sent, what was sent, when; counts the attempt.
    async fn mark_sent(
        &self,
        id: Uuid,
        subject: &str,
        body: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Records a failed attempt: retried at `retry_at`, or given up on (status failed) when
    /// `retry_at` is `None`.
    async fn mark_failed(
        &self,
        id: Uuid,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError>;

    /// Messages, newest first.
    async fn list_messages(
        &self,
        query: &OutboxQuery,
    ) -> Result<Page<OutboxMessage, Uuid>, StoreError>;
}
