//! Durable timers: deadlines that must fire even if the server restarts before they are due.
//!
//! A timer is armed by the checkpoint that creates the reason for it (a run starts waiting, a
//! step parks for a long back-off), in the same transaction, so a crash cannot lose one. The
//! timer service fires due timers into their runs; a timer whose run moved on is a no-op (its
//! `version` no longer matches) and is deleted like any other fired timer.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::StoreError;

/// What a timer does when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimerKind {
    /// A waiting step's deadline: continue at `on_timeout`, else fail the run.
    Timeout,
    /// Remind the people a waiting step waits for.
    Reminder,
    /// A step parked for a back-off longer than a few seconds runs again.
    Retry,
}

impl TimerKind {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            TimerKind::Timeout => "timeout",
            TimerKind::Reminder => "reminder",
            TimerKind::Retry => "retry",
        }
    }

    /// From the stored text.
    pub fn parse(s: &str) -> Option<TimerKind> {
        match s {
            "timeout" => Some(TimerKind::Timeout),
            "reminder" => Some(TimerKind::Reminder),
            "retry" => Some(TimerKind::Retry),
            _ => None,
        }
    }
}

/// A timer to arm, carried by a [`Checkpoint`](super::Checkpoint).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimerSpec {
    /// What it does.
    pub kind: TimerKind,
    /// The step it concerns.
    pub step_id: String,
    /// The fence: the wait's version (timeouts, reminders) or the run's version (retries) it
    /// was armed for. Firing checks it still holds.
    pub version: i64,
    /// Which reminder this is (1, 2, …), or the attempt a retry runs; 0 for timeouts.
    pub nth: i32,
    /// When it is due.
    pub fire_at: DateTime<Utc>,
}

/// An armed timer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timer {
    /// Timer id.
    pub id: Uuid,
    /// The run it belongs to.
    pub run_id: Uuid,
    /// What and when.
    pub spec: TimerSpec,
}

/// Finding and retiring due timers (arming happens in checkpoints).
#[async_trait]
pub trait TimerStore: Send + Sync {
    /// When the earliest armed timer is due, if any is armed.
    async fn next_timer_at(&self) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// Timers due at `now`, earliest first, at most `limit`.
    async fn due_timers(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<Timer>, StoreError>;

    /// Retires a fired timer (deleting one already gone is not an error).
    async fn delete_timer(&self, id: Uuid) -> Result<(), StoreError>;
}
