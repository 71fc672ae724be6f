//! The admin API of channels: `GET /v1/channels`, `GET|PUT|DELETE /v1/channels/{name}`, behind
//! the admin token. Adapters over [`Channels`](tern_engine::channels::Channels): the rules and
//! their words are the service's; secrets are write-only (never in an answer).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use tern_engine::channel::{ChannelKind, ChannelName};
use tern_engine::channels::{ChannelDraft, ChannelError, ChannelSummary};

use super::AppState;
use super::auth::Admin;
use super::error::ApiError;
use super::openapi::{ErrorBody, FieldProblem};

/// `GET /v1/channels`'s answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ChannelList {
    /// Every channel: configured (`default`, `tern.toml`) and stored, by name. Which
    /// credentials are set, never their values.
    pub channels: Vec<ChannelSummary>,
}

/// `PUT /v1/channels/{name}`'s body. A PUT replaces every setting: the secrets are write-only
/// (never returned), so send them again to keep them.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelSettings {
    /// The kind of platform.
    kind: ChannelKind,
    /// Bearer tokens (write-only), each 16 to 512 printable characters; at most 8.
    #[serde(default)]
    tokens: Vec<String>,
    /// Standard Webhooks signing secrets (`whsec_…`, write-only); at most 8.
    #[serde(default)]
    signing_secrets: Vec<String>,
    /// Where replies are posted (http or https).
    #[serde(default)]
    webhook_url: Option<String>,
    /// The secret replies are signed with (`whsec_…`, write-only); needs `webhook_url`.
    #[serde(default)]
    webhook_secret: Option<String>,
    /// Telegram: the secret token Telegram sends with every update (setWebhook's
    /// `secret_token`; write-only).
    #[serde(default)]
    secret_token: Option<String>,
    /// Telegram: the bot's token from @BotFather (write-only).
    #[serde(default)]
    bot_token: Option<String>,
    /// A platform's API base URL (default: the platform's own, e.g. `https://api.telegram.org`,
    /// `https://graph.facebook.com/v23.0`).
    #[serde(default)]
    api_base: Option<String>,
    /// WhatsApp: the Meta app's secret, which signs every notification (write-only).
    #[serde(default)]
    app_secret: Option<String>,
    /// WhatsApp: the verify token of the webhook's handshake (write-only).
    #[serde(default)]
    verify_token: Option<String>,
    /// WhatsApp: the id of the business phone number replies are sent from (digits).
    #[serde(default)]
    phone_number_id: Option<String>,
    /// WhatsApp and Slack: the integration whose token authenticates the replies.
    #[serde(default)]
    integration: Option<String>,
    /// Twilio: the account's auth token, which signs every webhook and authenticates the
    /// replies (write-only).
    #[serde(default)]
    auth_token: Option<String>,
    /// Twilio: the Account SID (`AC…`).
    #[serde(default)]
    account_sid: Option<String>,
    /// Twilio: where replies come from (`+15017122661`, `whatsapp:+…` or a Messaging Service
    /// SID `MG…`).
    #[serde(default)]
    from: Option<String>,
    /// Slack: the app's signing secret, which signs every request (write-only).
    #[serde(default)]
    signing_secret: Option<String>,
    /// Web: the origins of the pages that embed the chat (`https://www.example.com`).
    #[serde(default)]
    origins: Vec<String>,
}

/// A store failure: the detail goes to the log, not to the caller.
fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal("use the store for the channels API", &e, "the store failed; see the server log")
}

/// The channel name of the path, or a 400 `bad-channel-name` with the problem at `name`.
fn channel_name(name: &str) -> Result<ChannelName, ApiError> {
    ChannelName::new(name).map_err(|e| {
        let message = e.to_string();
        ApiError::bad_request(message.clone())
            .code("bad-channel-name")
            .problems(vec![FieldProblem { field: "name".into(), message }])
    })
}

/// A service error as an answer.
fn answer(e: ChannelError) -> ApiError {
    match e {
        ChannelError::Invalid { name, problems } => {
            let list: Vec<FieldProblem> = problems
                .iter()
                .map(|p| FieldProblem { field: p.field.json_name().to_string(), message: p.message.clone() })
                .collect();
            let text: Vec<String> = list.iter().map(|p| format!("/{}: {}", p.field, p.message)).collect();
            ApiError::unprocessable(format!("channel `{name}` was not saved: {}", text.join("; ")))
                .code("invalid-settings")
                .problems(list)
        }
        ChannelError::NotFound { name } => ApiError::not_found(format!("no channel `{name}`")).code("no-such-channel"),
        e @ ChannelError::Configured { .. } => {
            ApiError::new(StatusCode::CONFLICT, e.to_string()).code("channel-configured-at-start-up")
        }
        e @ ChannelError::Exists { .. } => ApiError::new(StatusCode::CONFLICT, e.to_string()).code("channel-exists"),
        ChannelError::Store(e) => internal(e),
    }
}

/// `GET /v1/channels`: every channel, never a secret.
#[utoipa::path(
    get,
    path = "/v1/channels",
    tag = "admin",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "Every channel with which credentials it has (never their values)", body = ChannelList),
        (status = 401, description = "No or wrong admin token", body = ErrorBody),
        (status = 503, description = "At the concurrency limit (`Retry-After`)", body = ErrorBody),
    )
)]
pub async fn list_channels(State(state): State<Arc<AppState>>, _: Admin) -> Result<Response, ApiError> {
    let channels = state.channel_service.list().await.map_err(answer)?;
    Ok(axum::Json(ChannelList { channels }).into_response())
}

/// `GET /v1/channels/{name}`: one channel, never a secret.
#[utoipa::path(
    get,
    path = "/v1/channels/{name}",
    tag = "admin",
    security(("admin_token" = [])),
    params(("name" = String, Path, description = "The channel name")),
    responses(
        (status = 200, description = "The channel (which credentials are set, never their values)", body = ChannelSummary),
        (status = 400, description = "A bad name", body = ErrorBody),
        (status = 401, description = "No or wrong admin token", body = ErrorBody),
        (status = 404, description = "No such channel", body = ErrorBody),
        (status = 503, description = "At the concurrency limit (`Retry-After`)", body = ErrorBody),
    )
)]
pub async fn get_channel(
    State(state): State<Arc<AppState>>,
    _: Admin,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let name = channel_name(&name)?;
    let channel = state.channel_service.get(&name).await.map_err(answer)?;
    Ok(axum::Json(channel).into_response())
}

/// `PUT /v1/channels/{name}`: creates or replaces a stored channel.
#[utoipa::path(
    put,
    path = "/v1/channels/{name}",
    tag = "admin",
    security(("admin_token" = [])),
    params(("name" = String, Path, description = "The channel name")),
    request_body(content = ChannelSettings, content_type = "application/json"),
    responses(
        (status = 200, description = "Saved (used by lookups on this instance at once, on others within 5 s)", body = ChannelSummary),
        (status = 400, description = "A bad name, or a body that is not JSON", body = ErrorBody),
        (status = 401, description = "No or wrong admin token", body = ErrorBody),
        (status = 404, description = "No such route (an empty or dot-segment name)", body = ErrorBody),
        (status = 409, description = "The channel is configured at start-up (`default`, `tern.toml`), not stored", body = ErrorBody),
        (status = 413, description = "The body is over 64 KiB", body = ErrorBody),
        (status = 422, description = "Settings of the wrong shape, or that break rules (`problems`: each at its field)", body = ErrorBody),
        (status = 503, description = "At the concurrency limit (`Retry-After`)", body = ErrorBody),
    )
)]
pub async fn put_channel(
    State(state): State<Arc<AppState>>,
    _: Admin,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let name = channel_name(&name)?;
    let json = super::json_errors::json_body(&body)?;
    if !json.is_object() {
        return Err(ApiError::unprocessable(
            "the body must be a JSON object of channel settings: {\"kind\": \"generic\", \"tokens\": […], …}",
        )
        .code("invalid-settings"));
    }
    let settings: ChannelSettings = super::json_errors::from_value(json).map_err(|e| {
        ApiError::unprocessable(e.to_string())
            .code("invalid-settings")
            .problems(vec![FieldProblem { field: e.field, message: e.message }])
    })?;
    let secret = |s: String| SecretString::from(s);
    let draft = ChannelDraft {
        kind: Some(settings.kind),
        tokens: settings.tokens.into_iter().map(secret).collect(),
        signing_secrets: settings.signing_secrets.into_iter().map(secret).collect(),
        webhook_url: settings.webhook_url,
        webhook_secret: settings.webhook_secret.map(secret),
        secret_token: settings.secret_token.map(secret),
        bot_token: settings.bot_token.map(secret),
        api_base: settings.api_base,
        app_secret: settings.app_secret.map(secret),
        verify_token: settings.verify_token.map(secret),
        phone_number_id: settings.phone_number_id,
        integration: settings.integration,
        auth_token: settings.auth_token.map(secret),
        account_sid: settings.account_sid,
        from: settings.from,
        signing_secret: settings.signing_secret.map(secret),
        origins: settings.origins,
        session_key: None,
    };
    let saved = state.channel_service.save(name.as_str(), draft, true).await.map_err(answer)?;
    Ok(axum::Json(saved).into_response())
}

/// `DELETE /v1/channels/{name}`: removes a stored channel.
#[utoipa::path(
    delete,
    path = "/v1/channels/{name}",
    tag = "admin",
    security(("admin_token" = [])),
    params(("name" = String, Path, description = "The channel name")),
    responses(
        (status = 204, description = "Removed (its messages are refused on this instance at once, on others within 5 s)"),
        (status = 400, description = "A bad name", body = ErrorBody),
        (status = 401, description = "No or wrong admin token", body = ErrorBody),
        (status = 404, description = "No such channel", body = ErrorBody),
        (status = 409, description = "The channel is configured at start-up (`default`, `tern.toml`), not stored", body = ErrorBody),
        (status = 503, description = "At the concurrency limit (`Retry-After`)", body = ErrorBody),
    )
)]
pub async fn delete_channel(
    State(state): State<Arc<AppState>>,
    _: Admin,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let name = channel_name(&name)?;
    state.channel_service.remove(&name).await.map_err(answer)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
