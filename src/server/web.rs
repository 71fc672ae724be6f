//! The integrations web page (`GET /`) and the admin JSON API (`/v1/integrations`).
//!
//! The page lists integrations with their status, has an "Add integration" form with the
//! callback URL ready to copy, an Authorize button per integration that goes to the provider,
//! and a banner after the callback ("All set! Your authorization is complete!" or the error).
//! It is server-rendered HTML without scripts. It needs the admin token (HTTP Basic, any user
//! name), and every form carries a per-process CSRF token, since browsers resend Basic
//! credentials on cross-site form posts.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use base64::Engine as _;
use html_escape::{encode_double_quoted_attribute as attr, encode_text as text};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use tern_engine::IntegrationName;
use tern_engine::integrations::config::{ClientAuth, IntegrationConfig, Kind, Profile};
use tern_engine::store::{IntegrationRecord, Store};
use tern_engine::tokens::TokenOwner;

use super::openapi::ErrorBody;
use super::{AppState, error};

use super::pages::ALL_SET;

fn basic_ok(state: &AppState, headers: &HeaderMap) -> bool {
    let Some(b64) =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Basic "))
    else {
        return false;
    };
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(b64) else { return false };
    let text = String::from_utf8_lossy(&decoded);
    let password = text.split_once(':').map_or("", |(_, p)| p);
    subtle::ConstantTimeEq::ct_eq(password.as_bytes(), state.admin_token.expose_secret().as_bytes()).into()
}

fn challenge() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Basic realm=\"Tern\", charset=\"UTF-8\"")],
        "the admin token is the password",
    )
        .into_response()
}

/// Query of `GET /`: what the banner says.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// An authorization of this integration completed.
    #[serde(default)]
    authorized: Option<String>,
    /// An authorization or a save failed with this message.
    #[serde(default)]
    error: Option<String>,
    /// This integration was saved.
    #[serde(default)]
    saved: Option<String>,
}

/// `GET /`: the integrations page.
#[utoipa::path(
    get,
    path = "/",
    tag = "integrations",
    security(("admin_basic" = [])),
    params(PageQuery),
    responses(
        (status = 200, description = "The integrations page", content_type = "text/html", body = String),
        (status = 400, description = "The query string is malformed", body = ErrorBody),
        (status = 401, description = "No or wrong admin token (HTTP Basic, any user name)", body = ErrorBody, headers(("www-authenticate" = String, description = "`Basic realm=\"Tern\"`"))),
        (status = 503, description = "At the concurrency limit (`Retry-After`)", body = ErrorBody),
    )
)]
pub async fn page(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Response {
    if !basic_ok(&state, &headers) {
        return challenge();
    }
    let Query(q) = match query {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("the query string is malformed: {}", e.body_text())),
    };
    let list = match state.store.list_integrations().await {
        Ok(l) => l,
        Err(e) => return store_failed(&e),
    };
    let csrf = attr(state.csrf.expose_secret()).into_owned();
    let mut banner = String::new();
    if q.authorized.is_some() {
        banner = format!("<p class=\"banner ok\" role=\"status\">{}</p>", text(ALL_SET));
    } else if let Some(e) = &q.error {
        banner = format!("<p class=\"banner err\" role=\"alert\">Authorization failed: {}</p>", text(e));
    } else if let Some(n) = &q.saved {
        banner = format!(
            "<p class=\"banner ok\" role=\"status\">Integration {} saved. Register the callback URL at the provider, then click Authorize.</p>",
            text(n)
        );
    }
    let mut rows = String::new();
    for r in &list {
        let button = if r.config.kind == Kind::AuthorizationCode {
            format!(
                "<form method=\"post\" action=\"/integrations/{name}/authorize\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><button id=\"authorize-{name}\">Authorize</button></form>",
                name = attr(r.name.as_str())
            )
        } else {
            String::new()
        };
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td><span class=\"status {}\" id=\"status-{}\">{}</span>{}</td><td>{}</td><td>{}</td></tr>",
            text(r.name.as_str()),
            text(r.config.kind.as_str()),
            attr(r.status.as_str()),
            attr(r.name.as_str()),
            text(r.status.as_str()),
            r.status_message.as_ref().map(|m| format!("<br><small>{}</small>", text(m))).unwrap_or_default(),
            text(&r.config.api_origins.join(", ")),
            button
        ));
    }
    if rows.is_empty() {
        rows = "<tr><td colspan=\"5\">No integrations yet.</td></tr>".into();
    }
    let profiles: String = Profile::NAMES.iter().map(|p| format!("<option value=\"{p}\">{p}</option>")).collect();
    let callback = attr(state.integrations.callback_url().as_str()).into_owned();
    Html(format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Tern integrations</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em}}table{{border-collapse:collapse;width:100%}}td,th{{border-bottom:1px solid #ddd;padding:.4em;text-align:left}}
.banner{{padding:.8em;border-radius:4px}}.ok{{background:#e6f4ea}}.err{{background:#fde8e8}}.status{{font-weight:bold}}label{{display:block;margin:.4em 0}}input,select{{width:100%}}</style></head>
<body><h1>Integrations</h1>{banner}
<table><thead><tr><th>Name</th><th>Kind</th><th>Status</th><th>API origins</th><th></th></tr></thead><tbody>{rows}</tbody></table>
<h2>Add integration</h2>
<form method="post" action="/integrations" id="add">
<input type="hidden" name="csrf" value="{csrf}">
<label>Callback URL (register it at the provider) <input id="callback" readonly value="{callback}"></label>
<label>Name <input name="name" required pattern="[A-Za-z_][A-Za-z0-9_-]{{0,63}}"></label>
<label>Profile <select name="profile"><option value="">(none)</option>{profiles}</select></label>
<label>Data center (Zoho, Intercom) <input name="data_center"></label>
<label>Kind <select name="kind"><option value="authorization_code">authorization_code</option><option value="client_credentials">client_credentials</option></select></label>
<label>Client ID <input name="client_id"></label>
<label>Client secret <input name="client_secret" type="password" autocomplete="off"></label>
<label>Scopes (space or comma separated) <input name="scopes"></label>
<label>Authorization URL <input name="authorization_url"></label>
<label>Token URL <input name="token_url"></label>
<label>API origins (space separated) <input name="api_origins"></label>
<label>Client authentication <select name="client_auth"><option value="">(profile default)</option><option value="basic">basic</option><option value="body">body</option></select></label>
<label>Extra authorization parameters (key=value, space separated) <input name="params"></label>
<button id="save">Save</button></form></body></html>"#
    ))
    .into_response()
}

/// The "Add integration" form.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct AddForm {
    csrf: String,
    name: String,
    #[serde(default)]
    profile: String,
    #[serde(default)]
    data_center: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    client_secret: String,
    #[serde(default)]
    scopes: String,
    #[serde(default)]
    authorization_url: String,
    #[serde(default)]
    token_url: String,
    #[serde(default)]
    api_origins: String,
    #[serde(default)]
    client_auth: String,
    #[serde(default)]
    params: String,
}

fn csrf_ok(state: &AppState, given: &str) -> bool {
    subtle::ConstantTimeEq::ct_eq(given.as_bytes(), state.csrf.expose_secret().as_bytes()).into()
}

fn back_with_error(message: &str) -> Response {
    let q: String = url::form_urlencoded::Serializer::new(String::new()).append_pair("error", message).finish();
    Redirect::to(&format!("/?{q}")).into_response()
}

/// `POST /integrations`: the page's "Add integration" form.
#[utoipa::path(
    post,
    path = "/integrations",
    tag = "integrations",
    security(("admin_basic" = [])),
    request_body(content = AddForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "Back to the page with `?saved=NAME` or `?error=…`", headers(("location" = String, description = "The page with the outcome"))),
        (status = 401, description = "No or wrong admin token (HTTP Basic, any user name)", body = ErrorBody),
        (status = 403, description = "The form's CSRF token is stale or forged", body = ErrorBody),
        (status = 413, description = "The body is over 64 KiB", body = ErrorBody),
        (status = 415, description = "The content type is not a form", body = ErrorBody),
        (status = 422, description = "A required form field is missing", body = ErrorBody),
        (status = 503, description = "At the concurrency limit (`Retry-After`)", body = ErrorBody),
    )
)]
pub async fn add(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    form: Result<Form<AddForm>, FormRejection>,
) -> Response {
    if !basic_ok(&state, &headers) {
        return challenge();
    }
    let Form(f) = match form {
        Ok(f) => f,
        Err(e) => return error(e.status(), format!("the form is malformed: {}", e.body_text())),
    };
    if !csrf_ok(&state, &f.csrf) {
        return error(StatusCode::FORBIDDEN, "the form is stale or forged; reload the page");
    }
    let opt = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_string());
    let result = (|| -> Result<(IntegrationName, IntegrationConfig, Option<SecretString>), String> {
        let name = IntegrationName::new(f.name.trim())?;
        let parse_url =
            |s: &str, what: &str| opt(s).map(|u| url::Url::parse(&u).map_err(|e| format!("{what}: {e}"))).transpose();
        let config = IntegrationConfig {
            kind: if f.kind == "client_credentials" { Kind::ClientCredentials } else { Kind::AuthorizationCode },
            client_id: opt(&f.client_id),
            scopes: IntegrationConfig::split_scopes(&f.scopes),
            authorization_url: parse_url(&f.authorization_url, "authorization URL")?,
            token_url: parse_url(&f.token_url, "token URL")?,
            api_origins: f.api_origins.split_whitespace().map(str::to_string).collect(),
            extra_authorize_params: f
                .params
                .split_whitespace()
                .map(|kv| {
                    kv.split_once('=')
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .ok_or(format!("`{kv}` is not key=value"))
                })
                .collect::<Result<BTreeMap<_, _>, _>>()?,
            profile: opt(&f.profile).map(|p| Profile::parse(&p)).transpose()?,
            data_center: opt(&f.data_center),
            ..IntegrationConfig::default()
        };
        let client_auth = match f.client_auth.as_str() {
            "basic" => Some(ClientAuth::Basic),
            "body" => Some(ClientAuth::Body),
            _ => None,
        };
        let config = config.finish(client_auth).map_err(|problems| problems.join("; "))?;
        Ok((name, config, opt(&f.client_secret).map(SecretString::from)))
    })();
    match result {
        Ok((name, config, secret)) => match state.store.put_integration(&name, &config, secret.as_ref()).await {
            Ok(()) => {
                state.integrations.invalidate(&name);
                Redirect::to(&format!(
                    "/?saved={}",
                    url::form_urlencoded::byte_serialize(name.as_str().as_bytes()).collect::<String>()
                ))
                .into_response()
            }
            Err(e) => {
                tracing::error!(error = %e, "could not save an integration");
                back_with_error("the store failed; see the server log")
            }
        },
        Err(e) => back_with_error(&e),
    }
}

/// The Authorize button's form.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct CsrfForm {
    /// The page's CSRF token.
    csrf: String,
}

/// `POST /integrations/{name}/authorize`: the page's Authorize button.
#[utoipa::path(
    post,
    path = "/integrations/{name}/authorize",
    tag = "integrations",
    security(("admin_basic" = [])),
    params(("name" = String, Path, description = "The integration name")),
    request_body(content = CsrfForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "To the provider's authorization page, or back to the page with `?error=…`", headers(("location" = String, description = "Where the browser goes"))),
        (status = 400, description = "The path is not UTF-8", body = ErrorBody),
        (status = 401, description = "No or wrong admin token (HTTP Basic, any user name)", body = ErrorBody),
        (status = 403, description = "The form's CSRF token is stale or forged", body = ErrorBody),
        (status = 404, description = "No such route (an empty or dot-segment name)", body = ErrorBody),
        (status = 413, description = "The body is over 64 KiB", body = ErrorBody),
        (status = 415, description = "The content type is not a form", body = ErrorBody),
        (status = 422, description = "The form has no CSRF token", body = ErrorBody),
        (status = 503, description = "At the concurrency limit (`Retry-After`)", body = ErrorBody),
    )
)]
pub async fn authorize(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    if !basic_ok(&state, &headers) {
        return challenge();
    }
    let Form(f) = match form {
        Ok(f) => f,
        Err(e) => return error(e.status(), format!("the form is malformed: {}", e.body_text())),
    };
    if !csrf_ok(&state, &f.csrf) {
        return error(StatusCode::FORBIDDEN, "the form is stale or forged; reload the page");
    }
    let Ok(name) = IntegrationName::new(name) else { return back_with_error("no such integration") };
    match state.integrations.begin(&name, TokenOwner::Workspace).await {
        Ok(start) => Redirect::to(start.url.as_str()).into_response(),
        Err(e) => back_with_error(&e.to_string()),
    }
}

/// `GET /v1/integrations`'s answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct IntegrationList {
    /// Every integration (never a secret).
    pub integrations: Vec<IntegrationRecord>,
    /// The OAuth callback URL to register at providers.
    pub callback_url: String,
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
pub async fn api_list(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if !state.is_admin(&headers) {
        return error(StatusCode::UNAUTHORIZED, "the admin API needs `Authorization: Bearer <admin token>`");
    }
    match state.store.list_integrations().await {
        Ok(list) => axum::Json(IntegrationList {
            integrations: list,
            callback_url: state.integrations.callback_url().to_string(),
        })
        .into_response(),
        Err(e) => store_failed(&e),
    }
}

/// A store failure: the detail goes to the log, not to the page.
fn store_failed(e: &tern_engine::store::StoreError) -> Response {
    tracing::error!(error = %e, "the integrations page could not read the store");
    error(StatusCode::INTERNAL_SERVER_ERROR, "the store failed; see the server log")
}
