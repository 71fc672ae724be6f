//! The admin API under `/v1/`: integrations (add, replace, remove), secrets (write-only: names
//! and times, never values) and the loaded flows. Every route needs the bearer admin token.

use std::borrow::Cow;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use secrecy::SecretString;
use serde::Serialize;
use serde_json::Value;
use tern_engine::IntegrationName;
use tern_integrations::config::{ClientAuth, IntegrationConfig};
use tern_integrations::{Draft, Field, Problem, Reachability, SaveError, SaveOptions};
use tern_store::IntegrationRecord;

use super::AppState;
use super::auth::Admin;
use super::error::ApiError;
use super::json_errors::json_body;
use super::openapi::{ErrorBody, IntegrationSettings};

/// An integration as saved, with the callback URL to register at the provider.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SavedIntegration {
    /// The integration (never its secret).
    pub integration: IntegrationRecord,
    /// The OAuth callback URL.
    pub callback_url: String,
    /// What was saved but deserves a look, each with its JSON path (`/client_cert`): e.g. a
    /// stored client certificate these settings leave out, which is removed.
    pub warnings: Vec<String>,
}

/// `GET /v1/secrets`: names, never values.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SecretList {
    /// Secrets stored with `tern secrets set` or the admin API.
    pub stored: Vec<StoredSecret>,
    /// Names of `TERN_SECRET_*` environment variables (without the prefix).
    pub environment: Vec<String>,
}

/// A stored secret's name and when it was set.
#[derive(Serialize, utoipa::ToSchema)]
pub struct StoredSecret {
    /// Its name.
    pub name: String,
    /// Always true: the value is set (and never returned).
    pub set: bool,
    /// Unix seconds.
    pub updated_at: i64,
    /// Whether the value decrypts with the loaded master key; `false` means flows that use it
    /// fail (restore the key it was stored with, or set the secret again).
    pub decrypts: bool,
}

/// `PUT /v1/secrets/{name}`'s body.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // the schema of a body read as JSON by hand
pub struct SecretValue {
    /// The value (write-only).
    #[schema(min_length = 1)]
    value: String,
}

/// `GET /v1/flows`: the flows that can start, in the order triggers are tried.
#[derive(Serialize, utoipa::ToSchema)]
pub struct FlowList {
    /// The flows.
    pub flows: Vec<FlowSummary>,
}

/// One loaded flow.
#[derive(Serialize, utoipa::ToSchema)]
pub struct FlowSummary {
    /// Its id.
    pub id: String,
    /// Its name, when it has one.
    pub name: Option<String>,
    /// Its version: SHA-256 of the source, hex.
    pub version: String,
    /// Its trigger, described (`{"type": "message", …}`), when it has one.
    pub trigger: Option<Value>,
    /// The trigger's priority (higher is tried first).
    pub priority: Option<i32>,
    /// How many steps it has.
    pub steps: usize,
    /// The integrations it uses.
    pub integrations: Vec<String>,
}

/// A store or service failure: the detail (paths, driver messages) goes to the log, not to the
/// caller.
fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal("use the store for the admin API", &e, "the store failed; see the server log")
}

fn integration_name(name: &str) -> Result<IntegrationName, ApiError> {
    IntegrationName::new(name).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// `PUT /v1/integrations/{name}`: the settings of DESIGN §4 as JSON (the same fields as
/// `tern integrations show --json`), plus an optional write-only secret: `client_secret`, or for the kinds
/// `basic`, `api_key` and `jwt_bearer` their `password`, `api_key` or `private_key` (an RSA key
/// in PEM, or a Google service-account JSON key file's text, which also fills in `client_id`,
/// `key_id` and `token_url` when they are not given); `client_key` with `client_cert`.
#[utoipa::path(
    put,
    path = "/v1/integrations/{name}",
    tag = "admin",
    security(("admin_token" = [])),
    params(("name" = String, Path, description = "The integration name")),
    request_body(content = IntegrationSettings, content_type = "application/json"),
    responses(
        (status = 200, description = "Saved", body = SavedIntegration),
        (status = 400, description = "A bad name, or a body that is not JSON", body = ErrorBody),
        (status = 401, description = "No or wrong admin token", body = ErrorBody),
        (status = 404, description = "No such route (an empty or dot-segment name)", body = ErrorBody),
        (status = 413, description = "The body is over 64 KiB", body = ErrorBody),
        (status = 422, description = "Settings that are wrong or incomplete (the JSON path and the problem)", body = ErrorBody),
        (status = 503, description = "At the concurrency limit (`Retry-After`)", body = ErrorBody),
    )
)]
pub async fn put_integration(
    State(state): State<Arc<AppState>>,
    _: Admin,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let name = integration_name(&name)?;
    let mut value = json_body(&body)?;
    let object = value
        .as_object_mut()
        .ok_or_else(|| ApiError::unprocessable("the body must be a JSON object of integration settings"))?;
    // The write-only secret, under its kind's name: `client_secret`, `password`, `api_key` or
    // `private_key`.
    let mut secrets = Vec::new();
    for field in [Field::ClientSecret, Field::Password, Field::ApiKey, Field::PrivateKey] {
        match object.remove(field.json_name()) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if !s.is_empty() => secrets.push((field, SecretString::from(s))),
            Some(_) => {
                return Err(ApiError::unprocessable(format!("/{} must be a non-empty string", field.json_name())));
            }
        }
    }
    let client_key = match object.remove("client_key") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.is_empty() => Some(SecretString::from(s)),
        Some(_) => return Err(ApiError::unprocessable("/client_key must be a non-empty string (PEM)")),
    };
    let explicit_auth = object.contains_key("client_auth");
    let config: IntegrationConfig =
        super::json_errors::from_value(value).map_err(|e| ApiError::unprocessable(e.to_string()))?;
    let client_auth: Option<ClientAuth> = explicit_auth.then_some(config.client_auth);
    let own = Field::secret_of(config.kind);
    let secret = match secrets.pop() {
        None => None,
        Some((field, secret)) if field == own && secrets.is_empty() => Some(secret),
        Some((field, _)) => {
            return Err(ApiError::unprocessable(format!(
                "/{}: a {} integration takes its secret as `{}` (and only that one)",
                field.json_name(),
                config.kind.as_str(),
                own.json_name()
            )));
        }
    };
    // A service account's JSON key file fills in its account, key id and token URL.
    let mut config = config;
    let secret = match (config.kind, secret) {
        (tern_integrations::config::Kind::JwtBearer, Some(text)) => Some(
            tern_integrations::jwt::key_material(text, &mut config)
                .map_err(|e| ApiError::unprocessable(format!("/private_key: {e}")))?,
        ),
        (_, secret) => secret,
    };
    let draft = Draft { config, client_auth, client_secret: secret, client_key };
    // A PUT replaces; it resolves no host names (what the console and the CLI flag).
    let options = SaveOptions { replace: true, reachability: Reachability::Unchecked };
    let saved = state.integrations.save(&name, draft, options).await.map_err(|e| match e {
        SaveError::Invalid { problems, .. } => {
            ApiError::unprocessable(problems.iter().map(json_words).collect::<Vec<_>>().join("; "))
        }
        other => internal(other),
    })?;
    let callback = state.integrations.callback_url();
    let warnings = saved.warnings.iter().map(json_words).collect();
    Ok(axum::Json(SavedIntegration { integration: saved.record, callback_url: callback.to_string(), warnings })
        .into_response())
}

/// A problem in the API's words: at its JSON pointer, fields named as in the JSON body.
fn json_words(problem: &Problem) -> String {
    let message = problem.words(|f| Cow::Owned(format!("`{}`", f.json_name())));
    format!("/{}: {message}", problem.field.json_name())
}

/// `DELETE /v1/integrations/{name}`: removes it with its tokens.
#[utoipa::path(
    delete,
    path = "/v1/integrations/{name}",
    tag = "admin",
    security(("admin_token" = [])),
    params(("name" = String, Path, description = "The integration name")),
    responses(
        (status = 204, description = "Removed with its tokens"),
        (status = 400, description = "A bad name", body = ErrorBody),
        (status = 401, description = "No or wrong admin token", body = ErrorBody),
        (status = 404, description = "No such integration", body = ErrorBody),
        (status = 503, description = "At the concurrency limit (`Retry-After`)", body = ErrorBody),
    )
)]
pub async fn delete_integration(
    State(state): State<Arc<AppState>>,
    _: Admin,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let name = integration_name(&name)?;
    if !state.integrations.remove(&name).await.map_err(internal)? {
        return Err(ApiError::not_found(format!("no integration `{name}`")));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /v1/secrets`: which secrets are set, never their values.
#[utoipa::path(
    get,
    path = "/v1/secrets",
    tag = "admin",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "Secret names", body = SecretList),
        (status = 401, description = "No or wrong admin token", body = ErrorBody),
        (status = 503, description = "At the concurrency limit (`Retry-After`)", body = ErrorBody),
    )
)]
pub async fn list_secrets(State(state): State<Arc<AppState>>, _: Admin) -> Result<Response, ApiError> {
    let list = state.store.list_secrets().await.map_err(internal)?;
    let stored = list
        .into_iter()
        .map(|s| StoredSecret { name: s.name, set: true, updated_at: s.updated_at, decrypts: s.decrypts })
        .collect();
    let mut env: Vec<String> = std::env::vars_os()
        .filter_map(|(k, _)| k.to_str().and_then(|k| k.strip_prefix("TERN_SECRET_")).map(str::to_string))
        .collect();
    env.sort();
    Ok(axum::Json(SecretList { stored, environment: env }).into_response())
}

// The name parameters' patterns are set from the engine's constants by `openapi::Patterns`.
fn secret_name(name: &str) -> Result<(), ApiError> {
    tern_engine::secrets::check_secret_name(name).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// `PUT /v1/secrets/{name}` with `{"value": "..."}`: sets a secret (write-only).
#[utoipa::path(
    put,
    path = "/v1/secrets/{name}",
    tag = "admin",
    security(("admin_token" = [])),
    params(("name" = String, Path, description = "The secret name: letters, digits and `_`, not starting with a digit")),
    request_body(content = SecretValue, content_type = "application/json"),
    responses(
        (status = 204, description = "Set; used by the next run"),
        (status = 400, description = "A bad name, or a body that is not JSON", body = ErrorBody),
        (status = 401, description = "No or wrong admin token", body = ErrorBody),
        (status = 404, description = "No such route (an empty or dot-segment name)", body = ErrorBody),
        (status = 413, description = "The body is over 64 KiB", body = ErrorBody),
        (status = 422, description = "The body is not `{\"value\": \"<non-empty string>\"}`", body = ErrorBody),
        (status = 503, description = "At the concurrency limit (`Retry-After`)", body = ErrorBody),
    )
)]
pub async fn put_secret(
    State(state): State<Arc<AppState>>,
    _: Admin,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    secret_name(&name)?;
    let value = json_body(&body)?;
    let text = value
        .get("value")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::unprocessable("the body must be {\"value\": \"<non-empty string>\"}"))?;
    let secret = SecretString::from(text.to_string());
    state.store.put_secret(&name, &secret).await.map_err(internal)?;
    state.secrets.update(&name, Some(secret));
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `DELETE /v1/secrets/{name}`.
#[utoipa::path(
    delete,
    path = "/v1/secrets/{name}",
    tag = "admin",
    security(("admin_token" = [])),
    params(("name" = String, Path, description = "The secret name")),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "A bad name", body = ErrorBody),
        (status = 401, description = "No or wrong admin token", body = ErrorBody),
        (status = 404, description = "No such stored secret", body = ErrorBody),
        (status = 503, description = "At the concurrency limit (`Retry-After`)", body = ErrorBody),
    )
)]
pub async fn delete_secret(
    State(state): State<Arc<AppState>>,
    _: Admin,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    secret_name(&name)?;
    if !state.store.remove_secret(&name).await.map_err(internal)? {
        return Err(ApiError::not_found(format!("no stored secret `{name}`")));
    }
    state.secrets.update(&name, None);
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /v1/flows`: the flows that can start, in the order they are tried.
#[utoipa::path(
    get,
    path = "/v1/flows",
    tag = "admin",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The loaded flows", body = FlowList),
        (status = 401, description = "No or wrong admin token", body = ErrorBody),
        (status = 503, description = "At the concurrency limit (`Retry-After`)", body = ErrorBody),
    )
)]
pub async fn list_flows(State(state): State<Arc<AppState>>, _: Admin) -> Result<Response, ApiError> {
    let flows = state.conversations.flows();
    let list = flows
        .iter()
        .map(|f| FlowSummary {
            id: f.flow.id.to_string(),
            name: f.flow.name.clone(),
            version: f.hash.clone(),
            trigger: f.flow.trigger.as_ref().map(|t| t.describe()),
            priority: f.flow.trigger.as_ref().map(|t| t.priority()),
            steps: f.flow.steps.len(),
            integrations: f.flow.integrations.iter().map(|i| i.to_string()).collect(),
        })
        .collect();
    Ok(axum::Json(FlowList { flows: list }).into_response())
}

/// `GET /v1/integrations`'s answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct IntegrationList {
    /// Every integration (never a secret).
    pub integrations: Vec<IntegrationItem>,
    /// The OAuth callback URL to register at providers.
    pub callback_url: String,
}

/// One integration in [`IntegrationList`]: the stored record and where it stands in one word.
#[derive(Serialize, utoipa::ToSchema)]
pub struct IntegrationItem {
    /// The stored record (`status` is the stored status: a key or service account that was
    /// never refused stays `incomplete` there).
    #[serde(flatten)]
    pub record: IntegrationRecord,
    /// Where it stands, as `tern integrations list` says it: `ready` (a key, password or service
    /// account that needs no person), `authorized`, `incomplete` (never authorized) or
    /// `needs_reauthorization`.
    pub state: &'static str,
    /// When the last token request of the workspace's credential failed (Unix seconds) and
    /// why, if none succeeded since, as this instance saw it.
    pub last_refresh_failure: Option<RefreshFailure>,
}

/// A failed token request.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RefreshFailure {
    /// When, Unix seconds.
    pub at: i64,
    /// Why.
    pub reason: String,
}

/// `GET /v1/integrations`: every integration, never a secret.
#[utoipa::path(
    get,
    path = "/v1/integrations",
    tag = "admin",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "Every integration with its status and settings", body = IntegrationList),
        (status = 401, description = "No or wrong admin token", body = ErrorBody),
        (status = 503, description = "At the concurrency limit (`Retry-After`)", body = ErrorBody),
    )
)]
pub async fn api_list(State(state): State<Arc<AppState>>, _: Admin) -> Result<Response, ApiError> {
    let list = state.store.list_integrations().await.map_err(internal)?;
    let list = list
        .into_iter()
        .map(|record| IntegrationItem {
            state: record.status_word(),
            last_refresh_failure: state
                .integrations
                .last_refresh_failure(&record.name)
                .map(|(at, reason)| RefreshFailure { at, reason }),
            record,
        })
        .collect();
    let callback_url = state.integrations.callback_url().to_string();
    Ok(axum::Json(IntegrationList { integrations: list, callback_url }).into_response())
}
