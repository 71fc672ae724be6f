//! Run history over the admin API: `GET /v1/runs` (one page of summaries, filtered) and
//! `GET /v1/runs/{id}` (a run with every activation). Thin adapters over
//! [`Conversations::runs`](tern_engine::conversation::Conversations::runs) and
//! [`Conversations::run`](tern_engine::conversation::Conversations::run).

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tern_engine::conversation::{MAX_RUNS_PAGE, RunCursor, RunId, RunQuery, RunStatus};

use super::AppState;
use super::auth::Admin;
use super::error::ApiError;
use super::openapi::ErrorBody;

/// What the caller is told when the run history cannot be read (the detail is logged).
const UNREADABLE: &str = "the store could not be read; see the server log";

/// Query of `GET /v1/runs`. Every parameter that is given narrows the list.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunsParams {
    /// Only runs of this flow id.
    flow: Option<String>,
    /// Only runs with this status: `completed`, `paused`, `failed`.
    status: Option<String>,
    /// Only runs of this conversation id: the channel's own id with `channel`, else the id as
    /// run summaries show it (`channel:NAME@INCARNATION:ID` for a stored channel's).
    conversation: Option<String>,
    /// The channel whose conversation `conversation` is (needs `conversation`).
    channel: Option<String>,
    /// Runs per page, 1 to 200 (default 50).
    limit: Option<String>,
    /// Where the page starts: the `next` of the previous page.
    after: Option<String>,
}

impl RunsParams {
    /// The query, or every problem with the parameters.
    fn query(self) -> Result<RunQuery, Vec<String>> {
        let mut problems = Vec::new();
        let status = self
            .status
            .as_deref()
            .and_then(|s| s.parse::<RunStatus>().map_err(|e| problems.push(format!("status: {e}"))).ok());
        let limit = match self.limit.as_deref().map(str::parse::<usize>) {
            None => tern_engine::conversation::DEFAULT_RUNS_PAGE,
            Some(Ok(n)) if (1..=MAX_RUNS_PAGE).contains(&n) => n,
            Some(_) => {
                problems.push(format!("limit: must be a whole number from 1 to {MAX_RUNS_PAGE}"));
                0
            }
        };
        let after = self
            .after
            .as_deref()
            .and_then(|a| a.parse::<RunCursor>().map_err(|e| problems.push(format!("after: {e}"))).ok());
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(RunQuery { flow_id: self.flow, status, conversation_id: self.conversation, after, limit })
    }
}

/// `GET /v1/runs`: run summaries, newest activity first, one page at a time.
#[utoipa::path(
    get,
    path = "/v1/runs",
    tag = "admin",
    security(("admin_token" = [])),
    params(RunsParams),
    responses(
        (status = 200, description = "One page of runs; `next` is where the following page starts", body = tern_engine::conversation::RunPage),
        (status = 400, description = "A parameter is not valid (every problem is listed)", body = ErrorBody),
        (status = 401, description = "No or wrong admin token", body = ErrorBody),
        (status = 503, description = "At the concurrency limit (`Retry-After`)", body = ErrorBody),
    )
)]
pub async fn list_runs(
    State(state): State<Arc<AppState>>,
    _: Admin,
    params: Result<Query<RunsParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let channel = params.as_ref().ok().and_then(|Query(p)| p.channel.clone());
    let query = match params {
        Ok(Query(p)) => p.query(),
        Err(e) => Err(vec![format!("the query string is malformed: {}", super::rejection_text(&e.body_text()))]),
    };
    let mut query = query.map_err(|problems| ApiError::bad_request(problems.join("; ")).code("bad-query"))?;
    if let Some(channel) = &channel {
        query.conversation_id = Some(channel_conversation(&state, channel, query.conversation_id.as_deref()).await?);
    }
    let page = state.conversations.runs(&query).await.map_err(|e| ApiError::internal("list runs", &e, UNREADABLE))?;
    Ok(axum::Json(page).into_response())
}

/// The stored conversation id of `conversation` of channel `name`, or a 400 that says what is
/// wrong.
async fn channel_conversation(state: &AppState, name: &str, conversation: Option<&str>) -> Result<String, ApiError> {
    let name = tern_engine::channel::ChannelName::new(name)
        .map_err(|e| ApiError::bad_request(format!("channel: {e}")).code("bad-query"))?;
    let Some(id) = conversation else {
        return Err(ApiError::bad_request("channel: give `conversation` too (the channel's own conversation id)")
            .code("bad-query"));
    };
    match tern_engine::conversation::ConversationId::of_current_channel(state.channels.as_ref(), &name, id).await {
        Ok(Some(id)) => Ok(id.as_str().to_string()),
        Ok(None) => Err(ApiError::bad_request(format!("channel: no channel `{name}`; GET /v1/channels lists them"))
            .code("bad-query")),
        Err(e @ tern_engine::conversation::ConversationError::BadId { .. }) => {
            Err(ApiError::bad_request(format!("conversation: {e}")).code("bad-query"))
        }
        Err(e) => Err(ApiError::internal("look up a channel", &e, UNREADABLE)),
    }
}

/// `GET /v1/runs/{id}`: a run's history.
#[utoipa::path(
    get,
    path = "/v1/runs/{id}",
    tag = "admin",
    security(("admin_token" = [])),
    params(("id" = String, Path, description = "The run id (`run_id` of an answer)")),
    responses(
        (status = 200, description = "The run: summary and every activation", body = tern_engine::conversation::RunHistory),
        (status = 400, description = "The path is not UTF-8", body = ErrorBody),
        (status = 401, description = "No or wrong admin token", body = ErrorBody),
        (status = 404, description = "No such run (or no longer kept)", body = ErrorBody),
        (status = 503, description = "At the concurrency limit (`Retry-After`)", body = ErrorBody),
    )
)]
pub async fn get_run(
    State(state): State<Arc<AppState>>,
    _: Admin,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    // An id that cannot be a run id names no run.
    let run = match RunId::new(id.as_str()) {
        Ok(run_id) => state
            .conversations
            .run(&run_id)
            .await
            .map_err(|e| ApiError::internal(&format!("read run {id}"), &e, UNREADABLE))?,
        Err(_) => None,
    };
    let run = run.ok_or_else(|| {
        ApiError::not_found(format!("no run {id} (runs are kept as long as --history-retention says)"))
    })?;
    Ok(axum::Json(run).into_response())
}
