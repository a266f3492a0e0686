//! Live lifecycle events as Server-Sent Events: one run's (`GET /v1/executions/{id}/stream`,
//! resumable with `Last-Event-ID`) and every run's (`GET /v1/events/stream`, live only,
//! filtered by workflow and status).
//!
//! Events reach the streams through the runtime's [`EventHub`](scaff_actors::EventHub) once
//! their checkpoint is persisted. The per-run stream subscribes first, then reads what the
//! store already has, and goes back to the store whenever it may have missed something (it
//! fell behind, saw a gap, or its periodic re-read is due), so it delivers every event of the
//! run exactly once, in `seq` order, and ends after the run's terminal event.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream};
use scaff_actors::{RunEvent, RunSubscription};
use scaff_core::run::{EventRecord, RunStatus};
use scaff_core::store::Store;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::{broadcast, watch};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::AppState;
use super::error::{ApiError, Problem};
use super::executions::{EventView, existing_run, run_id, status_filter};
use super::extract::{ApiPath, ApiQuery};

/// How often an idle stream sends a keep-alive comment.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// How often a run's stream re-reads the store even without news from the hub: events written
/// by another node sharing the database reach this node's clients within this delay.
pub const STORE_POLL: Duration = Duration::from_secs(5);

/// The event sent on the all-runs stream when the client fell behind and events were dropped.
pub const LAGGED_EVENT: &str = "stream.lagged";

/// Where `GET /v1/executions/{id}/stream` starts.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunStreamParams {
    /// Send only the events after this `seq` (default 0: all of them). A `Last-Event-ID`
    /// header takes precedence.
    #[param(value_type = Option<i64>, minimum = 0)]
    pub after: Option<String>,
}

/// Filters for `GET /v1/events/stream`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AllStreamParams {
    /// Only events of runs of this workflow.
    pub workflow_id: Option<String>,
    /// Only events after which the run is in this status (queued, running, waiting,
    /// completed, failed, canceled).
    pub status: Option<String>,
}

/// One event on the all-runs stream: the event as `/events` renders it, and its run.
#[derive(Debug, Serialize, ToSchema)]
pub struct StreamEventView {
    /// The run.
    pub run_id: Uuid,
    /// The run's workflow.
    pub workflow_id: String,
    /// The workflow version the run executes.
    pub workflow_version: i64,
    /// The run's status after the event.
    pub status: String,
    /// The event.
    #[serde(flatten)]
    pub event: EventView,
}

/// The `data` of a `stream.lagged` event.
#[derive(Debug, Serialize)]
pub struct LaggedView {
    /// How many events this client missed.
    pub missed: u64,
}

/// Stream one run's events (Server-Sent Events), resumable.
///
/// First the events already stored (after `Last-Event-ID` or `after`), then live ones as they
/// are persisted, each once and in `seq` order. Each message has `id: <seq>`, `event: <kind>`
/// and `data: <the event as /events renders it>`. The stream ends after the run's terminal
/// event (at once for a finished run with nothing left to send).
#[utoipa::path(
    get, path = "/v1/executions/{id}/stream", tag = "events",
    params(
        ("id" = String, Path, description = "Run id"),
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event `seq` (EventSource sends it when it reconnects); takes precedence over `after`"),
        RunStreamParams,
    ),
    responses(
        (status = 200, description = "A `text/event-stream`; each message's `data` is one event, as JSON", body = EventView, content_type = "text/event-stream"),
        (status = 400, description = "`Last-Event-ID` or `after` is not an integer ≥ 0", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such run", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn run_stream(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
    ApiQuery(params): ApiQuery<RunStreamParams>,
) -> Result<impl IntoResponse, ApiError> {
    let after = resume_point(&headers, params.after.as_deref())?;
    let hub = state.runtime.events();
    // Subscribe before reading the store, so no event falls between the two.
    let subscription = hub.subscribe_run(run_id(&id)?);
    let closing = hub.closing();
    let run = existing_run(&state, &id).await?;
    // The run before its events: if it is terminal here, every event it will have is read.
    let stored = state.store.run_events(run.id).await?;
    let mut feed = RunFeed {
        store: state.store.clone(),
        run_id: run.id,
        subscription,
        closing,
        poll: poll_interval(),
        last: after,
        queue: VecDeque::new(),
        done: run.status.is_terminal(),
    };
    feed.queue_new(stored);
    let events = stream::unfold(feed, |mut feed| async move {
        feed.next().await.map(|e| (Ok::<_, Infallible>(e), feed))
    });
    Ok(sse(events))
}

/// Stream every run's events live (Server-Sent Events), filtered by workflow and status.
///
/// Events are sent as they are persisted; `status` keeps those after which the run is in that
/// status. Live only: nothing from before the connection is replayed (read
/// `/v1/executions/{id}/events` for a run's history), and `Last-Event-ID` is ignored. Each
/// message has `id: <run_id>/<seq>`, `event: <kind>` and `data: <the event plus run_id,
/// workflow_id, workflow_version, status>`. A client too slow to keep up gets a
/// `stream.lagged` event whose `data` says how many events it missed.
#[utoipa::path(
    get, path = "/v1/events/stream", tag = "events",
    params(AllStreamParams),
    responses(
        (status = 200, description = "A `text/event-stream`; each message's `data` is one event with its run, as JSON (or, for `event: stream.lagged`, `{\"missed\": <count>}`)", body = StreamEventView, content_type = "text/event-stream"),
        (status = 400, description = "Unknown `status`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn all_stream(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<AllStreamParams>,
) -> Result<impl IntoResponse, ApiError> {
    let status = status_filter(params.status.as_deref())?;
    let hub = state.runtime.events();
    let feed = AllFeed {
        rx: hub.subscribe(),
        closing: hub.closing(),
        workflow_id: params.workflow_id,
        status,
    };
    let events = stream::unfold(feed, |mut feed| async move {
        feed.next().await.map(|e| (Ok::<_, Infallible>(e), feed))
    });
    Ok(sse(events))
}

/// The SSE response: keep-alive comments, and no buffering by proxies that honour the hint.
fn sse<S>(events: S) -> impl IntoResponse
where
    S: Stream<Item = Result<Event, Infallible>> + Send + 'static,
{
    let keep_alive = KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive");
    (
        [(
            HeaderName::from_static("x-accel-buffering"),
            HeaderValue::from_static("no"),
        )],
        Sse::new(events).keep_alive(keep_alive),
    )
}

/// The `seq` to resume after: the `Last-Event-ID` header, else `after`, else 0. An empty
/// header counts as absent (EventSource sends none when it saw no id).
fn resume_point(headers: &HeaderMap, after: Option<&str>) -> Result<i64, ApiError> {
    let header = headers
        .get("last-event-id")
        .map(|value| {
            value.to_str().map(str::trim).map_err(|_| {
                bad_request("the Last-Event-ID header must be an event `seq` (an integer ≥ 0)")
            })
        })
        .transpose()?
        .filter(|text| !text.is_empty());
    match (header, after) {
        (Some(seq), _) => parse_seq(seq, "the Last-Event-ID header"),
        (None, Some(seq)) => parse_seq(seq, "`after`"),
        (None, None) => Ok(0),
    }
}

fn parse_seq(text: &str, what: &str) -> Result<i64, ApiError> {
    text.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
        bad_request(&format!(
            "{what} must be an event `seq` (an integer ≥ 0); got `{text}`"
        ))
    })
}

fn bad_request(detail: &str) -> ApiError {
    ApiError::BadRequest {
        detail: detail.to_string(),
        errors: Vec::new(),
    }
}

fn poll_interval() -> tokio::time::Interval {
    let mut poll = tokio::time::interval_at(tokio::time::Instant::now() + STORE_POLL, STORE_POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    poll
}

/// SSE fields cannot hold line breaks (axum panics on them); event kinds never do, but make
/// sure.
fn one_line(text: &str) -> String {
    text.replace(['\r', '\n'], " ")
}

/// The SSE message for one event of the run's stream.
fn run_message(event: EventRecord) -> Event {
    let seq = event.seq;
    let name = one_line(&event.kind);
    let message = Event::default().id(seq.to_string()).event(name);
    let view = EventView::from(event);
    message.json_data(&view).unwrap_or_else(|e| {
        Event::default().comment(one_line(&format!("event {seq} not shown: {e}")))
    })
}

/// One run's stream: stored events first, then live ones, de-duplicated by `seq`.
struct RunFeed {
    store: Arc<dyn Store>,
    run_id: Uuid,
    subscription: RunSubscription,
    closing: watch::Receiver<bool>,
    poll: tokio::time::Interval,
    /// The `seq` of the last event queued (or the resume point).
    last: i64,
    queue: VecDeque<Event>,
    /// Nothing more will be queued.
    done: bool,
}

/// What woke a feed up.
enum Wake {
    Closing,
    Received(Result<Arc<RunEvent>, broadcast::error::RecvError>),
    Poll,
}

impl RunFeed {
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(message) = self.queue.pop_front() {
                return Some(message);
            }
            if self.done {
                return None;
            }
            self.advance().await;
        }
    }

    /// Waits for news and queues what it brings.
    async fn advance(&mut self) {
        let wake = tokio::select! {
            _ = self.closing.wait_for(|closing| *closing) => Wake::Closing,
            received = self.subscription.recv() => Wake::Received(received),
            _ = self.poll.tick() => Wake::Poll,
        };
        match wake {
            Wake::Closing | Wake::Received(Err(broadcast::error::RecvError::Closed)) => {
                self.done = true;
            }
            Wake::Received(Ok(item)) => {
                let seq = i64::from(item.event.seq);
                if seq <= self.last {
                    // Already sent (read from the store after subscribing).
                } else if seq == self.last + 1 && !item.status.is_terminal() {
                    self.last = seq;
                    self.queue.push_back(run_message(item.event.clone()));
                } else {
                    // A gap (this feed fell behind), or the run finished: the store has every
                    // event up to this one, and for a finished run, all of them.
                    self.catch_up().await;
                }
            }
            Wake::Received(Err(broadcast::error::RecvError::Lagged(_))) | Wake::Poll => {
                self.catch_up().await;
            }
        }
    }

    /// Queues the stored events after `last`; ends the feed when the run is finished (or can
    /// no longer be read: the client reconnects with `Last-Event-ID` and loses nothing).
    async fn catch_up(&mut self) {
        let run = match self.store.get_run(self.run_id).await {
            Ok(Some(run)) => run,
            Ok(None) => {
                self.done = true;
                return;
            }
            Err(e) => {
                tracing::warn!(run_id = %self.run_id, error = %e, "cannot read the run; ending its event stream");
                self.done = true;
                return;
            }
        };
        match self.store.run_events(self.run_id).await {
            Ok(events) => self.queue_new(events),
            Err(e) => {
                tracing::warn!(run_id = %self.run_id, error = %e, "cannot read the run's events; ending its event stream");
                self.done = true;
                return;
            }
        }
        if run.status.is_terminal() {
            self.done = true;
        }
    }

    /// Queues the events after `last`, in `seq` order.
    fn queue_new(&mut self, mut events: Vec<EventRecord>) {
        events.sort_by_key(|e| e.seq);
        for event in events {
            let seq = i64::from(event.seq);
            if seq > self.last {
                self.last = seq;
                self.queue.push_back(run_message(event));
            }
        }
    }
}

/// The all-runs stream: live events that pass the filters.
struct AllFeed {
    rx: broadcast::Receiver<Arc<RunEvent>>,
    closing: watch::Receiver<bool>,
    workflow_id: Option<String>,
    status: Option<RunStatus>,
}

impl AllFeed {
    async fn next(&mut self) -> Option<Event> {
        loop {
            let received = tokio::select! {
                _ = self.closing.wait_for(|closing| *closing) => return None,
                received = self.rx.recv() => received,
            };
            match received {
                Ok(item) if self.wanted(&item) => return Some(all_message(&item)),
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    return Some(
                        Event::default()
                            .event(LAGGED_EVENT)
                            .json_data(LaggedView { missed })
                            .unwrap_or_else(|_| {
                                Event::default()
                                    .event(LAGGED_EVENT)
                                    .data(json!({ "missed": missed }).to_string())
                            }),
                    );
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    fn wanted(&self, item: &RunEvent) -> bool {
        self.workflow_id
            .as_deref()
            .is_none_or(|w| w == item.workflow_id)
            && self.status.is_none_or(|s| s == item.status)
    }
}

/// The SSE message for one event of the all-runs stream.
fn all_message(item: &RunEvent) -> Event {
    let id = format!("{}/{}", item.run_id, item.event.seq);
    let message = Event::default()
        .id(id.clone())
        .event(one_line(&item.event.kind));
    let view = StreamEventView {
        run_id: item.run_id,
        workflow_id: item.workflow_id.clone(),
        workflow_version: item.workflow_version,
        status: item.status.as_str().to_string(),
        event: EventView::from(item.event.clone()),
    };
    message.json_data(&view).unwrap_or_else(|e| {
        Event::default().comment(one_line(&format!("event {id} not shown: {e}")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(last_event_id: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            "last-event-id",
            HeaderValue::from_str(last_event_id).expect("header"),
        );
        h
    }

    #[test]
    fn resume_point_prefers_the_header_and_refuses_non_sequences() {
        assert_eq!(resume_point(&HeaderMap::new(), None).ok(), Some(0));
        assert_eq!(resume_point(&HeaderMap::new(), Some("4")).ok(), Some(4));
        assert_eq!(resume_point(&headers("7"), Some("4")).ok(), Some(7));
        assert_eq!(resume_point(&headers(""), Some("4")).ok(), Some(4));
        for bad in ["-1", "abc", "1.5", "3/4"] {
            assert!(resume_point(&headers(bad), None).is_err(), "{bad}");
            assert!(resume_point(&HeaderMap::new(), Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn fields_never_break_a_frame() {
        assert_eq!(one_line("run.completed"), "run.completed");
        assert_eq!(one_line("a\nb\rc"), "a b c");
    }
}
