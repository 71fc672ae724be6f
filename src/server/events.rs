//! `POST /v1/integrations/{name}/events`: events a third party posts (Botpress-style). The
//! integrations service says whose account an event is for
//! ([`Integrations::event_account`](tern_integrations::Integrations::event_account): the
//! identifier must equal the one captured when the integration was authorized; anything else is
//! rejected and logged, never guessed). A matching event starts the first flow with an
//! `integration_event` trigger for the integration, with the event as `{{event.*}}`.
//!
//! First of all, the event must be signed with the integration's events secret
//! ([`Integrations::authenticate_event`](tern_integrations::Integrations::authenticate_event));
//! anything else is a 401 that says nothing about whether the integration exists.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tern_engine::IntegrationName;
use tern_integrations::EventError;

use super::error::ApiError;
use super::openapi::ErrorBody;
use super::{AppState, messages};

/// The one answer to an event without a valid signature.
const UNSIGNED: &str = "an integration event must be signed with the integration's events secret (Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature`)";

/// `POST /v1/integrations/{name}/events`.
#[utoipa::path(
    post,
    path = "/v1/integrations/{name}/events",
    tag = "integrations",
    params(("name" = String, Path, description = "The integration name")),
    request_body(content = Object, content_type = "application/json", description = "The third party's event; the account identifier is read with the integration's `event_identifier`"),
    security(("events_signature" = [])),
    responses(
        (status = 200, description = "The started flow's answer (`no_flow` when no flow has an `integration_event` trigger for the integration)", body = tern_engine::conversation::Answer),
        (status = 202, description = "The run takes longer than the reply wait", body = messages::Accepted, headers(("location" = String, description = "The answer URL"))),
        (status = 400, description = "The body is not JSON, has no account identifier, or the path is not UTF-8", body = ErrorBody),
        (status = 401, description = "Not signed with the integration's events secret (Standard Webhooks), or no such integration (`unauthorized`)", body = ErrorBody),
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
    name: Result<Path<String>, axum::extract::rejection::PathRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let name = name.map(|Path(n)| n).unwrap_or_default();
    let now_ms = tern_engine::clock::system().now_ms();
    let name: IntegrationName = match state
        .integrations
        .authenticate_event(&name, &headers, &body, &*state.store, now_ms)
        .await
    {
        Ok(name) => name,
        Err(EventError::Refused { integration, reason, code }) => {
            tracing::warn!(integration = %integration.escape_debug(), reason = code, error = %reason, "refused an integration event");
            let mut r = ApiError::new(StatusCode::UNAUTHORIZED, UNSIGNED).code("unauthorized").into_response();
            r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Signature"));
            return Ok(r);
        }
        Err(e) => {
            return Err(ApiError::internal(
                "authenticate an integration event",
                &e,
                "the store could not be read; see the server log",
            ));
        }
    };
    let event: Value = super::channel_request::json_body(&headers, &body).await.map_err(|e| {
        ApiError::new(e.status(), format!("{}; send the event as a JSON object", super::rejection_text(&e.body_text())))
    })?;
    let identifier = state.integrations.event_account(&name, &event).await.map_err(|e| match e {
        EventError::NoIdentifier { .. } => ApiError::bad_request(e.to_string()),
        EventError::Store { .. } => {
            ApiError::internal("handle an integration event", &e, "the store could not be read; see the server log")
        }
        EventError::Unknown { .. }
        | EventError::NoEvents { .. }
        | EventError::UnknownAccount { .. }
        | EventError::Refused { .. } => ApiError::not_found(e.to_string()),
    })?;
    let flows = state.conversations.flows();
    let Some(loaded) = flows.for_event(&name) else {
        return Ok(axum::Json(json!({"status": "no_flow", "replies": []})).into_response());
    };
    messages::start_with_event(&state, format!("event:{name}:{identifier}"), loaded.flow.id.as_str(), event).await
}
