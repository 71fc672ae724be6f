//! `GET /v1/channels/{name}/web/stream`: the visitor's transcript as it grows, as Server-Sent
//! Events (HTML Living Standard, "Server-sent events"). Each entry is one event `entry` whose
//! `id` is its `seq` and whose data is its JSON; the stream starts after `?after=` (or the
//! `Last-Event-ID` a reconnecting client sends) and sends the entries already there first.
//!
//! Entries committed by this process wake the stream at once
//! ([`Conversations::watch_transcript`](tern_engine::conversation::Conversations::watch_transcript));
//! those committed by another instance on the same database are found by reading the store
//! every [`STREAM_POLL_MS`](web_chat::STREAM_POLL_MS). Bounds: [`MAX_STREAMS`](web_chat::MAX_STREAMS)
//! open streams per process (then `503`), at most 20 per address (then `429`) and 3 per
//! session (a newer one ends the oldest: [`StreamSlots`](web_chat::StreamSlots)), a limit of
//! new streams per session, and each stream ends after
//! [`STREAM_MAX_SECS`](web_chat::STREAM_MAX_SECS) (the widget opens the next one from the last
//! entry it saw), or when its channel is removed; a keep-alive comment every
//! [`STREAM_KEEP_ALIVE_SECS`](web_chat::STREAM_KEEP_ALIVE_SECS).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use tern_engine::conversation::ConversationId;
use tern_engine::web_chat::{self, Entry};
use tokio::time::Instant;

use super::{After, WebRequest, slow_down};
use crate::server::AppState;
use crate::server::error::ApiError;
use crate::server::openapi::ErrorBody;

/// What one open stream holds.
struct Follow {
    state: Arc<AppState>,
    conversation: ConversationId,
    /// The last `seq` sent.
    last: i64,
    /// Read and not sent yet.
    pending: VecDeque<Entry>,
    /// Woken when this process commits entries of the conversation.
    wake: Arc<tokio::sync::Notify>,
    ends_at: Instant,
    /// When to look again whether the channel is still there (every poll interval, however
    /// busy the conversation).
    next_check: Instant,
    /// The channel as the session names it (with its incarnation): when it is removed, the
    /// stream ends.
    channel: (tern_engine::channel::ChannelName, String),
    /// The stream's place among the open ones, given back when it ends.
    _permit: tokio::sync::OwnedSemaphorePermit,
    /// Its place among its session's and its address's streams.
    slot: web_chat::StreamSlot,
}

impl Follow {
    /// The next event, or `None` when the stream ends (its time is up, the store failed).
    async fn next(mut self) -> Option<(Result<Event, Infallible>, Self)> {
        loop {
            if let Some(entry) = self.pending.pop_front() {
                self.last = entry.seq;
                let json = serde_json::to_string(&entry).unwrap_or_else(|_| "{}".into());
                let data = tern_engine::secrets::known::mask(&json).into_owned();
                let event = Event::default().event("entry").id(entry.seq.to_string()).data(data);
                return Some((Ok(event), self));
            }
            // Registered before the read, so that a commit between the read and the wait
            // still wakes it.
            let wake = self.wake.clone();
            let woken = wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            match self.state.conversations.transcript(&self.conversation, self.last).await {
                Ok(entries) if !entries.is_empty() => {
                    self.pending.extend(entries);
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(conversation = %self.conversation, error = %e, "a web chat stream could not read its transcript; it ends (the widget reconnects)");
                    return None;
                }
            }
            let poll = tokio::time::sleep(Duration::from_millis(web_chat::STREAM_POLL_MS));
            let replaced = self.slot.ended.clone();
            tokio::select! {
                () = &mut woken => {}
                () = poll => {}
                () = replaced.notified() => return None,
                () = tokio::time::sleep_until(self.ends_at) => return None,
            }
            if Instant::now() >= self.next_check {
                if !self.channel_is_there().await {
                    return None;
                }
                self.next_check = Instant::now() + Duration::from_millis(web_chat::STREAM_POLL_MS);
            }
        }
    }

    /// Whether the stream's channel is still the one its session was made for.
    async fn channel_is_there(&self) -> bool {
        let (name, reference) = &self.channel;
        match self.state.channels.channel(name).await {
            Ok(Some(c)) => c.web.is_some() && tern_engine::channel::ChannelRef::of(&c).to_string() == *reference,
            Ok(None) => false,
            // The store cannot be read: go on, the next look decides.
            Err(_) => true,
        }
    }
}

/// The transcript as Server-Sent Events.
#[utoipa::path(
    get,
    path = "/v1/channels/{name}/web/stream",
    tag = "web chat",
    description = "The visitor's transcript as it grows, as Server-Sent Events: `event: entry`, `id: <seq>`, `data: <entry JSON>`; keep-alive comments every 15 s; the stream ends after 10 minutes (open the next one from the last `seq`, with `?after=` or `Last-Event-ID`).",
    params(("name" = String, Path, description = "The web channel's name"), After),
    security(("web_session" = [])),
    responses(
        (status = 200, description = "The stream", content_type = "text/event-stream", body = String),
        (status = 401, description = "No valid session (`unauthorized`)", body = ErrorBody),
        (status = 403, description = "Not a page of an allowed origin (`origin-not-allowed`)", body = ErrorBody),
        (status = 429, description = "Too many streams opened by this session (`rate-limited`, `Retry-After`)", body = ErrorBody),
        (status = 503, description = "Too many streams open (`Retry-After`)", body = ErrorBody),
    )
)]
pub async fn get_stream(State(state): State<Arc<AppState>>, Query(after): Query<After>, req: WebRequest) -> Response {
    let answer = open(state, after, &req).await.unwrap_or_else(IntoResponse::into_response);
    req.answer(answer)
}

async fn open(state: Arc<AppState>, after: After, req: &WebRequest) -> Result<Response, ApiError> {
    let session = req.session()?;
    let now_ms = tern_engine::clock::system().now_ms();
    if let Err(wait) = state.web.limits.stream(req.channel.name.as_str(), &session.id, now_ms) {
        return Err(slow_down(wait, "reconnections"));
    }
    let slot = state.web.slots.take(&session.id, &req.address).map_err(|e| {
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, format!("{e}; close some, or try again later"))
            .code("too-many-streams")
            .retry_after_secs(30)
    })?;
    let permit = state.web.streams.clone().try_acquire_owned().map_err(|_| {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "too many chats are open on this server; try again shortly")
            .code("too-many-streams")
            .retry_after_secs(5)
    })?;
    let last_event_id =
        req.headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<i64>().ok());
    let conversation = req.conversation(&session)?;
    let follow = Follow {
        wake: state.conversations.watch_transcript(&conversation),
        state,
        conversation,
        last: after.after.or(last_event_id).unwrap_or(0).max(0),
        pending: VecDeque::new(),
        ends_at: Instant::now() + Duration::from_secs(web_chat::STREAM_MAX_SECS),
        next_check: Instant::now() + Duration::from_millis(web_chat::STREAM_POLL_MS),
        channel: (req.channel.name.clone(), req.channel_ref()),
        _permit: permit,
        slot,
    };
    let events = futures_util::stream::unfold(follow, Follow::next);
    let sse =
        Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(web_chat::STREAM_KEEP_ALIVE_SECS)));
    let mut r = sse.into_response();
    // Proxies must pass the events on as they come (nginx buffers by default).
    r.headers_mut().insert("x-accel-buffering", header::HeaderValue::from_static("no"));
    Ok(r)
}
