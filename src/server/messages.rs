//! `POST /v1/conversations/{id}/messages`: resume the conversation's paused run, or start the
//! flow whose trigger matches; answer with the replies.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tern_engine::store::{PausedConversation, now};
use tern_engine::{Message, RunInput, RunResult, RunSnapshot, RunStatus};

use super::{AppState, error};

/// The request body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncomingMessage {
    /// What the contact wrote.
    pub text: String,
    /// The contact: `{"id": …}` plus any attributes.
    #[serde(default)]
    pub contact: Option<Map<String, Value>>,
    /// The channel's id for the message; a repeated id is answered from the first time.
    #[serde(default)]
    pub message_id: Option<String>,
}

pub async fn post_message(
    State(state): State<Arc<AppState>>,
    Path(conversation): Path<String>,
    body: Result<axum::Json<IncomingMessage>, JsonRejection>,
) -> Response {
    let axum::Json(msg) = match body {
        Ok(b) => b,
        Err(e) => {
            return error(
                e.status(),
                format!(
                    "{}; send {{\"text\": \"…\", \"contact\": {{\"id\": \"…\"}}, \"message_id\": \"…\"}}",
                    e.body_text()
                ),
            );
        }
    };
    if conversation.is_empty() || conversation.len() > 200 {
        return error(StatusCode::BAD_REQUEST, "the conversation id must be 1 to 200 characters");
    }
    match handle_locked(&state, &conversation, msg, None).await {
        Ok(body) => ([(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// Handles a message or event with the conversation's lock held: one at a time, in arrival
/// order.
pub async fn handle_locked(
    state: &Arc<AppState>,
    conversation: &str,
    msg: IncomingMessage,
    event: Option<Value>,
) -> Result<String, String> {
    let lock = conversation_lock(state, conversation);
    let response = {
        let _guard = lock.lock().await;
        handle(state, conversation, msg, event).await
    };
    drop(lock);
    release_lock(state, conversation);
    response
}

async fn handle(
    state: &Arc<AppState>,
    conversation: &str,
    msg: IncomingMessage,
    event: Option<Value>,
) -> Result<String, String> {
    let store = &state.store;
    state.metrics.message();
    if let Some(id) = &msg.message_id
        && let Some(previous) = store.processed(conversation, id).await.map_err(|e| e.to_string())?
    {
        return Ok(previous);
    }
    let contact = Value::Object(msg.contact.clone().unwrap_or_default());
    let is_event = event.is_some();
    let input = RunInput {
        event,
        conversation_id: conversation.to_string(),
        contact,
        message: Message { text: msg.text.clone(), id: msg.message_id.clone() },
    };
    let stored = store.paused(conversation).await.map_err(|e| e.to_string())?;
    // An expired paused run is replaced (or cleared) like a live one.
    let was_paused = stored.is_some();
    let paused = stored.filter(|p| p.expires_at > now());
    let (result, hash) = match paused {
        Some(p) => {
            let flow = state.version(&p.flow_hash).await.ok_or("the paused run's flow version is gone")?;
            let snapshot: RunSnapshot = serde_json::from_value(p.snapshot).map_err(|e| e.to_string())?;
            (state.engine.resume(&flow, snapshot, input, None).await, p.flow_hash)
        }
        None if is_event => return Ok(json!({"status": "no_paused_run", "replies": []}).to_string()),
        None => {
            // The flow set as it is now (a reload swaps it whole).
            let flows = state.flows.read().unwrap_or_else(|p| p.into_inner()).clone();
            let Some(loaded) = flows.iter().find(|f| f.flow.trigger.as_ref().is_some_and(|t| t.matches(&msg.text)))
            else {
                let body = json!({"status": "no_flow", "replies": []}).to_string();
                return Ok(body);
            };
            (state.engine.start(&loaded.flow, input, Map::new(), None).await, loaded.hash.clone())
        }
    };
    state.metrics.observe(&result);
    record(state, conversation, &result, &hash, was_paused).await?;
    let body = answer(&result);
    if let Some(id) = &msg.message_id {
        store.set_processed(conversation, id, &body).await.map_err(|e| e.to_string())?;
    }
    deliver(state, conversation, &body);
    Ok(body)
}

/// Posts the answer to the outbound webhook, when one is configured (in the background; a
/// failing webhook is logged, never retried blindly).
fn deliver(state: &Arc<AppState>, conversation: &str, body: &str) {
    let Some(url) = state.webhook.clone() else { return };
    let Ok(mut payload) = serde_json::from_str::<Value>(body) else { return };
    payload["conversation_id"] = Value::from(conversation);
    let client = state.engine.outbound.client.clone();
    tokio::spawn(async move {
        let req = tern_engine::http::PreparedRequest {
            method: tern_engine::http::Method::Post,
            url: url.clone(),
            headers: Default::default(),
            body: Some(tern_engine::http::RequestBody::Json(payload)),
            timeout: std::time::Duration::from_secs(10),
        };
        match client.send(&req, None).await {
            Ok(r) if r.status.is_success() => {}
            Ok(r) => tracing::warn!(status = r.status.as_u16(), "the outbound webhook refused the replies"),
            Err(e) => tracing::warn!(error = %e, "the outbound webhook failed"),
        }
    });
}

async fn record(
    state: &AppState,
    conversation: &str,
    result: &RunResult,
    hash: &str,
    was_paused: bool,
) -> Result<(), String> {
    let store = &state.store;
    let paused = match (&result.status, &result.snapshot) {
        (RunStatus::Paused, Some(s)) => Some(PausedConversation {
            flow_hash: hash.to_string(),
            snapshot: serde_json::to_value(s).map_err(|e| e.to_string())?,
            expires_at: now() + state.pause_ttl_secs,
        }),
        _ => None,
    };
    // A conversation that was not paused and did not pause has nothing to store or clear.
    if paused.is_some() || was_paused {
        store.set_paused(conversation, paused.as_ref()).await.map_err(|e| e.to_string())?;
    }
    let status =
        serde_json::to_value(result.status).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
    let history = serde_json::to_string(result).map_err(|e| e.to_string())?;
    store.put_run(&result.run_id, conversation, result.flow_id.as_str(), &status, &history);
    Ok(())
}

/// Starts `loaded` for an integration event, under the conversation's lock.
pub async fn start_with_event(
    state: &Arc<AppState>,
    conversation: &str,
    loaded: &super::LoadedFlow,
    event: Value,
) -> Result<String, String> {
    let lock = conversation_lock(state, conversation);
    let guard = lock.lock().await;
    let input = RunInput {
        conversation_id: conversation.to_string(),
        contact: Value::Object(Map::new()),
        message: Message::default(),
        event: Some(event),
    };
    let result = state.engine.start(&loaded.flow, input, Map::new(), None).await;
    state.metrics.observe(&result);
    let was_paused = state.store.paused(conversation).await.map_err(|e| e.to_string())?.is_some();
    record(state, conversation, &result, &loaded.hash, was_paused).await?;
    let body = answer(&result);
    deliver(state, conversation, &body);
    drop(guard);
    drop(lock);
    release_lock(state, conversation);
    Ok(body)
}

/// The JSON answer to a message or event: the run, its status and replies.
fn answer(result: &RunResult) -> String {
    json!({
        "run_id": result.run_id,
        "flow_id": result.flow_id,
        "status": result.status,
        "replies": result.replies.iter().map(|r| json!({"text": r.text})).collect::<Vec<_>>(),
        "error": result.error,
    })
    .to_string()
}

/// The lock of one conversation (created on first use).
fn conversation_lock(state: &AppState, conversation: &str) -> Arc<tokio::sync::Mutex<()>> {
    let mut locks = state.locks.lock().unwrap_or_else(|p| p.into_inner());
    locks.entry(conversation.to_string()).or_default().clone()
}

/// Forgets a conversation's lock when nobody else holds or waits for it.
fn release_lock(state: &AppState, conversation: &str) {
    let mut locks = state.locks.lock().unwrap_or_else(|p| p.into_inner());
    if locks.get(conversation).is_some_and(|l| Arc::strong_count(l) == 1) {
        locks.remove(conversation);
    }
}
