//! `POST /v1/integrations/{name}/events`: events a third party posts (Botpress-style). The
//! account identifier is read from the event with the integration's `event_identifier` path and
//! must equal the `account_field` captured when the integration was authorized; anything else
//! is rejected and logged, never guessed. A matching event starts the first flow with an
//! `integration_event` trigger for the integration, with the event as `{{event.*}}`.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tern_engine::mapping::ResponsePath;
use tern_engine::template::value_text;
use tern_engine::{IntegrationName, TokenOwner};

use super::openapi::ErrorBody;
use super::{AppState, error, messages};

/// `POST /v1/integrations/{name}/events`.
#[utoipa::path(
    post,
    path = "/v1/integrations/{name}/events",
    tag = "integrations",
    params(("name" = String, Path, description = "The integration name")),
    request_body(content = Object, content_type = "application/json", description = "The third party's event; the account identifier is read with the integration's `event_identifier`"),
    responses(
        (status = 200, description = "The started flow's answer (`no_flow` when no flow has an `integration_event` trigger for the integration)", body = tern_engine::conversation::Answer),
        (status = 202, description = "The run takes longer than the reply wait", body = messages::Accepted, headers(("location" = String, description = "The answer URL"))),
        (status = 400, description = "The body is not JSON, has no account identifier, or the path is not UTF-8", body = ErrorBody),
        (status = 404, description = "No such integration, one that takes no events, or an unknown account identifier", body = ErrorBody),
        (status = 413, description = "The body is over 64 KiB", body = ErrorBody),
        (status = 415, description = "The content type is not `application/json`", body = ErrorBody),
        (status = 422, description = "The JSON is not an event", body = ErrorBody),
        (status = 429, description = "Too many events waiting in this conversation (`Retry-After`)", body = ErrorBody),
        (status = 503, description = "Overloaded or shutting down (`Retry-After`)", body = ErrorBody),
    )
)]
pub async fn post_event(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    body: Result<axum::Json<Value>, JsonRejection>,
) -> Response {
    let axum::Json(event) = match body {
        Ok(b) => b,
        Err(e) => {
            return error(
                e.status(),
                format!("{}; send the event as a JSON object", super::rejection_text(&e.body_text())),
            );
        }
    };
    let Ok(name) = IntegrationName::new(name) else { return error(StatusCode::NOT_FOUND, "no such integration") };
    let rec = match state.store.get_integration(&name).await {
        Ok(Some(r)) => r,
        Ok(None) => return error(StatusCode::NOT_FOUND, format!("no integration `{name}`")),
        Err(e) => return internal(&e),
    };
    let (Some(path), Some(field)) = (&rec.config.event_identifier, &rec.config.account_field) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("integration `{name}` does not accept events; configure --event-identifier and --account-field"),
        );
    };
    let identifier = match ResponsePath::parse(path).and_then(|p| p.select(&event)) {
        Ok(v) => value_text(&v).into_owned(),
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("the event has no account identifier: {e}")),
    };
    let expected = match state.store.get_token(&name, &TokenOwner::Workspace).await {
        // Captured at authorization; tokens authorized before `account_id` existed keep the
        // token-response field itself.
        Ok(t) => t.and_then(|t| {
            let captured = t.metadata.get(tern_integrations::ACCOUNT_ID).or_else(|| t.metadata.get(field));
            captured.map(|v| value_text(v).into_owned())
        }),
        Err(e) => return internal(&e),
    };
    if expected.as_deref() != Some(identifier.as_str()) {
        tracing::warn!(integration = %name, "rejected an event for an unknown account identifier");
        return error(StatusCode::NOT_FOUND, "unknown account identifier for this integration");
    }
    let flows = state.conversations.flows();
    let Some(loaded) = flows.for_event(&name) else {
        return axum::Json(json!({"status": "no_flow", "replies": []})).into_response();
    };
    messages::start_with_event(&state, format!("event:{name}:{identifier}"), loaded.flow.id.as_str(), event).await
}

fn internal(e: &tern_store::StoreError) -> Response {
    tracing::error!(error = %e, "the store failed while handling an integration event");
    error(StatusCode::INTERNAL_SERVER_ERROR, "the store could not be read; see the server log")
}
