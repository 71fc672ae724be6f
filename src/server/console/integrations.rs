//! The integrations page (`GET /`): every integration with its status in words, token expiry,
//! last refresh, last error and the account it is authorized as; Authorize, Test, Edit and
//! Remove; and the add/edit form, which keeps what was typed (never the secret) when a save
//! fails and lists every problem next to its field, and asks before replacing an existing
//! integration.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use secrecy::SecretString;
use serde::Deserialize;
use tern_engine::IntegrationName;
use tern_engine::http::tls::certificate_facts;
use tern_engine::tokens::TokenOwner;
use tern_integrations::config::{ClientAuth, IntegrationConfig, KeyIn, Kind, Profile, RateLimit, parse_endpoint};
use tern_integrations::{ACCOUNT_ID, Draft, Field, Problem, Reachability, SaveError, SaveOptions};
use tern_store::{IntegrationRecord, IntegrationStatus, Readiness};

use super::layout::{Nav, page, prose};
use super::runs::url_query;
use super::session::Session;
use super::{ConsoleForm, CsrfForm, SignedIn, html, store_failed};
use crate::server::AppState;
use crate::server::pages::ALL_SET;

/// What the page shows above the list.
#[derive(Debug, Default, Deserialize)]
pub struct PageQuery {
    /// An authorization of this integration completed.
    #[serde(default)]
    authorized: Option<String>,
    /// An authorization failed with this message.
    #[serde(default)]
    error: Option<String>,
    /// This integration was saved.
    #[serde(default)]
    saved: Option<String>,
    /// This integration was removed.
    #[serde(default)]
    removed: Option<String>,
    /// Open the form on this integration.
    #[serde(default)]
    edit: Option<String>,
    /// Open the form of this kind (`authorization_code`, `client_credentials`, `static`).
    #[serde(default)]
    kind: Option<String>,
}

/// The add/edit form, as typed. The client secret is never sent back to the browser.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct IntegrationForm {
    #[serde(default)]
    csrf: String,
    /// The name the form was opened on (editing), empty when adding.
    #[serde(default)]
    original: String,
    /// Set when the person confirmed replacing an integration of the same name.
    #[serde(default)]
    replace: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    profile: String,
    #[serde(default)]
    data_center: String,
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
    #[serde(default)]
    static_secret: String,
    #[serde(default)]
    static_header: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    api_key: String,
    #[serde(default)]
    key_in: String,
    #[serde(default)]
    key_name: String,
    #[serde(default)]
    identity_url: String,
    #[serde(default)]
    account_field: String,
    #[serde(default)]
    event_identifier: String,
    #[serde(default)]
    rate_limit: String,
    #[serde(default)]
    private_key: String,
    #[serde(default)]
    subject: String,
    #[serde(default)]
    client_cert: String,
    #[serde(default)]
    client_key: String,
    #[serde(default)]
    ca_cert: String,
}

impl IntegrationForm {
    /// The form filled from a stored integration (for Edit).
    fn of(r: &IntegrationRecord) -> Self {
        let c = &r.config;
        let url = |u: &Option<url::Url>| u.as_ref().map(url::Url::to_string).unwrap_or_default();
        Self {
            original: r.name.to_string(),
            name: r.name.to_string(),
            kind: c.kind.as_str().to_string(),
            profile: c.profile.map(|p| p.as_str().to_string()).unwrap_or_default(),
            data_center: c.data_center.clone().unwrap_or_default(),
            client_id: c.client_id.clone().unwrap_or_default(),
            scopes: c.scopes.join(" "),
            authorization_url: url(&c.authorization_url),
            token_url: url(&c.token_url),
            api_origins: c.api_origins.join(" "),
            // A fixed credential has no token endpoint: no client authentication to choose.
            client_auth: if c.kind.uses_tokens() {
                serde_json::to_value(c.client_auth).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
            } else {
                String::new()
            },
            username: c.username.clone().unwrap_or_default(),
            key_in: if c.key_in == Some(KeyIn::Query) { "query".into() } else { String::new() },
            key_name: c.key_name.clone().unwrap_or_default(),
            params: c.extra_authorize_params.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" "),
            static_secret: c.static_secret.clone().unwrap_or_default(),
            static_header: c.static_header.clone().unwrap_or_default(),
            identity_url: url(&c.identity_url),
            account_field: c.account_field.clone().unwrap_or_default(),
            event_identifier: c.event_identifier.clone().unwrap_or_default(),
            rate_limit: c.rate_limit.map(|r| r.to_string()).unwrap_or_default(),
            subject: c.subject.clone().unwrap_or_default(),
            // Certificates are public: shown, so that an edit keeps them as they are.
            client_cert: c.client_cert.clone().unwrap_or_default(),
            ca_cert: c.ca_cert.clone().unwrap_or_default(),
            ..Self::default()
        }
    }
}

/// Problems with a form, by field (`""` for the form as a whole).
type Problems = Vec<(&'static str, String)>;

/// The form's fields: name, label, help.
const FIELDS: &[(&str, &str, &str)] = &[
    (
        "client_id",
        "Client ID",
        "From the provider's app registration; for a service account key, its e-mail (a JSON key file fills it in).",
    ),
    ("client_secret", "Client secret", "Stored encrypted; never shown again."),
    ("scopes", "Scopes", "Space-separated, e.g. contacts offline_access."),
    ("authorization_url", "Authorization URL", "Not needed with a profile."),
    ("token_url", "Token URL", "Not needed with a profile."),
    (
        "api_origins",
        "API origins",
        "Space-separated; the token is only ever sent to these, e.g. https://api.example.com.",
    ),
    ("params", "Extra authorization parameters", "Space-separated key=value, e.g. prompt=consent."),
    (
        "static_secret",
        "Static key: secret name",
        "The name of a secret that holds the key, set with `tern secrets set NAME`.",
    ),
    ("static_header", "Static key: header", "Header that carries the key (default Authorization: Bearer)."),
    ("username", "User name", "Sent with the password as HTTP Basic authentication (RFC 7617)."),
    ("password", "Password", "Stored encrypted; never shown again; sent only to the API origins."),
    ("api_key", "API key", "Stored encrypted; never shown again; sent only to the API origins."),
    (
        "key_name",
        "Key header or parameter",
        "The header (e.g. X-API-Key) or query parameter (e.g. api_key) the API documents for its key.",
    ),
    (
        "identity_url",
        "Identity URL",
        "Called with the token to learn the account (and by Test); needs the two fields below.",
    ),
    (
        "account_field",
        "Account field",
        "Where the account id is in the identity answer (or, without an identity URL, in the token response), e.g. data.id.",
    ),
    (
        "event_identifier",
        "Event identifier",
        "Where the account id is in an event the service posts to Tern, e.g. account.id.",
    ),
    ("data_center", "Data center", "Zoho and Intercom: e.g. `eu`."),
    (
        "private_key",
        "Service account key",
        "Paste the JSON key file (Google Cloud console: IAM → Service accounts → Keys → Add key → JSON) or an RSA private key in PEM. Stored encrypted; never shown again.",
    ),
    ("subject", "Subject", "Optional: the user the service account acts for (domain-wide delegation)."),
    (
        "client_cert",
        "Client certificate",
        "Optional, for APIs that require one (mutual TLS): PEM, the certificate then any intermediates. Presented only to the API origins.",
    ),
    (
        "client_key",
        "Client certificate key",
        "PEM; needed with a new certificate. Stored encrypted; never shown again.",
    ),
    (
        "ca_cert",
        "Private CA",
        "Optional: PEM of the CA that signed the API's own certificate, trusted only for the API origins.",
    ),
    (
        "rate_limit",
        "Rate limit",
        "Most requests to the API from this server, e.g. 5/s or 100/min (optionally `5/s burst 10`); more wait their turn. Empty: none.",
    ),
];

/// The kinds, with the words of their tabs.
const KINDS: &[(&str, &str)] = &[
    ("authorization_code", "Authorization code (a person signs in)"),
    ("client_credentials", "Service account (client credentials)"),
    ("static", "Static API key"),
    ("basic", "User name and password (Basic)"),
    ("api_key", "API key (header or query)"),
    ("jwt_bearer", "Service account key (JWT bearer, e.g. Google)"),
];

/// The form fields that hold a secret: a password input, never filled in.
const SECRET_FIELDS: &[&str] = &["client_secret", "password", "api_key", "private_key", "client_key"];

/// The form fields that hold a PEM or JSON text: a text area.
const LONG_FIELDS: &[&str] = &["private_key", "client_cert", "client_key", "ca_cert"];

/// Whether the form of `kind` has `field`: each kind shows only what it uses.
fn shown(kind: &str, field: &str) -> bool {
    match field {
        "client_secret" | "client_auth" | "profile" | "data_center" => {
            matches!(kind, "authorization_code" | "client_credentials")
        }
        "client_id" | "scopes" | "token_url" => {
            matches!(kind, "authorization_code" | "client_credentials" | "jwt_bearer")
        }
        "private_key" | "subject" => kind == "jwt_bearer",
        "authorization_url" | "params" => kind == "authorization_code",
        "static_secret" | "static_header" => kind == "static",
        "username" | "password" => kind == "basic",
        "api_key" | "key_in" | "key_name" => kind == "api_key",
        _ => true,
    }
}

/// The kind of the form: one of [`KINDS`], the first when `kind` is none of them.
fn kind_of(kind: &str) -> &'static str {
    KINDS.iter().map(|(k, _)| *k).find(|k| *k == kind).unwrap_or(KINDS[0].0)
}

/// The form field a setting is edited in: its JSON name, but for the extra parameters.
fn form_field(field: Field) -> &'static str {
    match field {
        Field::ExtraAuthorizeParams => "params",
        other => other.json_name(),
    }
}

/// A problem in the console's words, at its form field: the fields it mentions by their labels.
fn worded(problem: &Problem) -> (&'static str, String) {
    let label = |field: Field| {
        let name = form_field(field);
        let label = match FIELDS.iter().find(|(f, _, _)| *f == name) {
            Some((_, label, _)) => label,
            None if name == "key_in" => "Send the key in",
            None => "Profile",
        };
        Cow::Owned(format!("“{label}”"))
    };
    (form_field(problem.field), problem.words(label))
}

fn status_badge(r: &IntegrationRecord) -> Markup {
    let (class, words) = match r.readiness() {
        Readiness::Ready(w) => ("ok", w),
        Readiness::NeedsAction(w) if r.status == IntegrationStatus::NeedsReauthorization => ("bad", w),
        Readiness::NeedsAction(_) => ("warn", NOT_AUTHORIZED),
    };
    html! { span class={"badge " (class)} id={"status-" (r.name.as_str())} data-status=(r.status.as_str()) { (words) } }
}

/// The status of an authorization-code integration nobody has authorized yet.
const NOT_AUTHORIZED: &str = "Not authorized yet";

/// A readiness that needs a person, in the console's words.
fn needs_action_words(r: &IntegrationRecord, words: &'static str) -> &'static str {
    if r.status == IntegrationStatus::NeedsReauthorization { words } else { NOT_AUTHORIZED }
}

use crate::humanize::relative_s as relative;

fn secs_time(s: i64) -> String {
    super::layout::time_ms(s.saturating_mul(1000))
}

/// The reason without the command-line advice (the page has its own Authorize button).
fn reason(message: &str) -> &str {
    message.split("; run `tern integrations authorize").next().unwrap_or(message)
}

struct Row {
    record: IntegrationRecord,
    expires_at: Option<Option<i64>>,
    obtained_at: Option<i64>,
    account: Option<String>,
    /// The last failed token request, when none succeeded since (this process's).
    failure: Option<(i64, String)>,
}

async fn rows(state: &AppState) -> Result<Vec<Row>, tern_store::StoreError> {
    let mut out = Vec::new();
    for record in state.store.list_integrations().await? {
        let token = state.store.get_token(&record.name, &TokenOwner::Workspace).await?;
        out.push(Row {
            failure: state.integrations.last_refresh_failure(&record.name),
            expires_at: token.as_ref().map(|t| t.expires_at),
            obtained_at: token.as_ref().map(|t| t.obtained_at),
            account: token
                .as_ref()
                .and_then(|t| t.metadata.get(ACCOUNT_ID))
                .and_then(|v| v.as_str())
                .map(str::to_owned),
            record,
        });
    }
    Ok(out)
}

/// Renders the page: banners, the list, the form (with what was typed and its problems).
async fn render(
    state: &AppState,
    session: &Session,
    banners: Markup,
    form: &IntegrationForm,
    problems: &Problems,
    status: StatusCode,
) -> Response {
    let list = match rows(state).await {
        Ok(l) => l,
        Err(e) => return store_failed("read the integrations", &e, Some(&session.csrf)),
    };
    let now = state.store.clock().now_s();
    let csrf = session.csrf.as_str();
    let problem_of =
        |field: &str| problems.iter().filter(|(f, _)| *f == field).map(|(_, p)| p.clone()).collect::<Vec<_>>();
    let kind = kind_of(&form.kind);
    // Problems at a field this kind's form does not have are said above the form.
    let general: Vec<String> =
        problems.iter().filter(|(f, _)| f.is_empty() || !shown(kind, f)).map(|(_, p)| p.clone()).collect();
    let editing = !form.original.is_empty();
    let tab_href = |k: &str| {
        let edit = if editing { format!("edit={}&", url_query(&form.original)) } else { String::new() };
        format!("/?{edit}kind={k}#add")
    };
    let body = html! {
        h1 { "Integrations" }
        (banners)
        (attention(&list, now, csrf))
        @if list.is_empty() {
            p.card { "No integrations yet. Add one below: Tern keeps its tokens fresh and sends them only to its API origins." }
        } @else {
            div.scroll {
                table #integrations {
                    thead { tr { th { "Name" } th { "Status" } th { "Account" } th { "Token" } th { "Last refresh" } th { "Last problem" } th { "Actions" } } }
                    tbody {
                        @for r in &list {
                            @let rec = &r.record;
                            @let name = rec.name.as_str();
                            tr id={"row-" (name)} {
                                td {
                                    strong { (name) } br; span.muted { (rec.config.kind.as_str().replace('_', " ")) }
                                    @if let Some(f) = rec.config.client_cert.as_deref().and_then(|c| certificate_facts(c).ok()) {
                                        br;
                                        @if f.expires_soon(now) {
                                            span.badge.warn id={"cert-" (name)} title=(f.subject) {
                                                "Client certificate " (if f.not_after <= now { "expired " } else { "expires " }) (relative(f.not_after, now)) ": renew it"
                                            }
                                        } @else {
                                            span.muted id={"cert-" (name)} title=(f.subject) { "client certificate expires " (relative(f.not_after, now)) }
                                        }
                                    }
                                }
                                td { (status_badge(rec)) }
                                td { (r.account.as_deref().unwrap_or("–")) }
                                td {
                                    @match r.expires_at {
                                        None => { span.muted { "none" } }
                                        Some(None) => { "does not expire" }
                                        Some(Some(e)) if e <= now => { span.badge.bad { "expired " (relative(e, now)) } }
                                        Some(Some(e)) => { "expires " (relative(e, now)) }
                                    }
                                }
                                td { @if let Some(o) = r.obtained_at { span title=(secs_time(o)) { (relative(o.min(now), now)) } } @else { "–" } }
                                td {
                                    @if let Some(m) = &rec.status_message {
                                        (prose(reason(m))) br; span.muted { (secs_time(rec.updated_at)) }
                                    } @else { "–" }
                                }
                                td {
                                    @if rec.config.kind == Kind::AuthorizationCode {
                                        form.inline method="post" action={"/integrations/" (name) "/authorize"} {
                                            input type="hidden" name="csrf" value=(csrf);
                                            button id={"authorize-" (name)} type="submit" { "Authorize" }
                                        } " "
                                    }
                                    form.inline method="post" action={"/integrations/" (name) "/test"} {
                                        input type="hidden" name="csrf" value=(csrf);
                                        button.secondary id={"test-" (name)} type="submit" { "Test" }
                                    } " "
                                    a id={"edit-" (name)} href={"/?edit=" (url_query(name)) "#add"} { "Edit" } " "
                                    form.inline method="post" action={"/integrations/" (name) "/remove"} {
                                        input type="hidden" name="csrf" value=(csrf);
                                        button.danger id={"remove-" (name)} type="submit" { "Remove" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 #form-title { @if editing { "Edit integration " (form.original) } @else { "Add integration" } }
        // One form per kind, each with only its own fields; the tabs are links, so that it
        // works without JavaScript (the console runs none).
        nav.tabs #kind-tabs aria-label="Kind of integration" {
            span.muted { "Kind: " }
            @for (k, words) in KINDS {
                a id={"kind-" (k)} href=(tab_href(k)) aria-current=[(kind == *k).then_some("page")] { (words) }
            }
        }
        form.card #add method="post" action="/integrations" novalidate data-kind=(kind) {
            input type="hidden" name="csrf" value=(csrf);
            input type="hidden" name="original" value=(form.original);
            input type="hidden" name="kind" value=(kind);
            @if !general.is_empty() {
                div.banner.bad role="alert" #problems {
                    p { "The integration was not saved:" }
                    ul { @for p in &general { li { (prose(p)) } } }
                }
            }
            @if problems.iter().any(|(f, _)| !f.is_empty()) && general.is_empty() {
                p.banner.bad role="alert" #problems { "The integration was not saved; see the problems next to the fields below." }
            }
            @if kind == "authorization_code" {
                p.muted { "Callback URL to register at the provider: " code #callback { (state.integrations.callback_url()) } }
            }
            label for="f-name" { "Name" }
            input #f-name type="text" name="name" value=(form.name) required aria-invalid=[(!problem_of("name").is_empty()).then_some("true")];
            @for p in problem_of("name") { p.field-error { (prose(&p)) } }
            @if problems.iter().any(|(f, _)| *f == "name") && form.replace != "yes" && !editing {
                label { input type="checkbox" name="replace" value="yes"; " Replace the existing integration of this name" }
            }
            @if shown(kind, "profile") {
                label for="f-profile" { "Profile" }
                select #f-profile name="profile" {
                    option value="" { "None (enter the URLs)" }
                    @for p in Profile::names() { option value=(p) selected[form.profile == p] { (p) } }
                }
            }
            @for p in problem_of("profile") { p.field-error { (prose(&p)) } }
            @for (field, label, help) in FIELDS.iter().filter(|(f, _, _)| shown(kind, f)) {
                label for={"f-" (field)} { (label) }
                @let secret = SECRET_FIELDS.contains(field);
                @let value = if secret { "" } else { field_value(form, field) };
                @if LONG_FIELDS.contains(field) {
                    textarea id={"f-" (field)} name=(field) rows="4" spellcheck="false" autocomplete="off"
                        aria-invalid=[(!problem_of(field).is_empty()).then_some("true")]
                        aria-describedby={"h-" (field)} { (value) }
                } @else {
                    input id={"f-" (field)} type=(if secret { "password" } else { "text" }) name=(field) value=(value)
                        autocomplete="off" aria-invalid=[(!problem_of(field).is_empty()).then_some("true")]
                        aria-describedby={"h-" (field)};
                }
                p.muted id={"h-" (field)} {
                    (prose(help))
                    @if secret && editing { " Leave blank to keep the stored secret." }
                }
                @for p in problem_of(field) { p.field-error { (prose(&p)) } }
            }
            @if shown(kind, "key_in") {
                label for="f-key_in" { "Send the key in" }
                select #f-key_in name="key_in" {
                    option value="" selected[form.key_in != "query"] { "A header" }
                    option value="query" selected[form.key_in == "query"] { "A query parameter (never shown in logs)" }
                }
            }
            @if shown(kind, "client_auth") {
                label for="f-client_auth" { "Client authentication" }
                select #f-client_auth name="client_auth" {
                    option value="" selected[form.client_auth.is_empty()] { "Provider default" }
                    option value="basic" selected[form.client_auth == "basic"] { "HTTP Basic (client_secret_basic)" }
                    option value="body" selected[form.client_auth == "body"] { "In the body (client_secret_post)" }
                }
            }
            p { button #save type="submit" { @if editing { "Save changes" } @else { "Save" } } " "
                @if editing { a href="/" { "Cancel" } } }
        }
    };
    (status, html(page("Integrations", Nav::Integrations, Some(csrf), body))).into_response()
}

/// What needs an operator before contacts notice, one banner per integration, with the way to
/// fix it: an authorization the provider revoked (an Authorize button), a token request that
/// failed and has not succeeded since (a Test button), and a client certificate that expires
/// within [`EXPIRY_WARNING_SECS`] or has expired (the command that renews it). The same
/// conditions are sent as connection events (`tern_integrations::alerts`).
///
/// [`EXPIRY_WARNING_SECS`]: tern_engine::http::tls::EXPIRY_WARNING_SECS
fn attention(list: &[Row], now: i64, csrf: &str) -> Markup {
    html! {
        @for r in list {
            @let rec = &r.record;
            @let name = rec.name.as_str();
            @if rec.status == IntegrationStatus::NeedsReauthorization {
                div.banner.bad role="alert" id={"attention-" (name)} {
                    "Integration " strong { (name) } " needs to be authorized again"
                    @if let Some(m) = &rec.status_message { ": " (prose(reason(m))) }
                    ". Flows that use it fail until then. "
                    form.inline method="post" action={"/integrations/" (name) "/authorize"} {
                        input type="hidden" name="csrf" value=(csrf);
                        button type="submit" { "Authorize " (name) }
                    }
                }
            }
            @if let Some((at, why)) = r.failure.as_ref().filter(|_| rec.status != IntegrationStatus::NeedsReauthorization) {
                div.banner.warn role="alert" id={"attention-refresh-" (name)} {
                    "The last token request of " strong { (name) } " failed " (relative(*at, now)) ": " (prose(why))
                    ". Tern tries again when a flow next uses it. "
                    form.inline method="post" action={"/integrations/" (name) "/test"} {
                        input type="hidden" name="csrf" value=(csrf);
                        button.secondary type="submit" { "Test " (name) }
                    }
                }
            }
            @if let Some(f) = rec.config.client_cert.as_deref().and_then(|c| certificate_facts(c).ok()).filter(|f| f.expires_soon(now)) {
                div.banner.warn role="alert" id={"attention-cert-" (name)} {
                    "The client certificate of " strong { (name) } " (" (f.subject) ") "
                    (if f.not_after <= now { "expired " } else { "expires " }) (relative(f.not_after, now))
                    ": its API will refuse the calls. Renew it with "
                    code { "tern integrations add " (name) " --update … --client-cert NEW.pem --client-key NEW-key.pem" }
                    "."
                }
            }
        }
    }
}

fn field_value<'a>(f: &'a IntegrationForm, field: &str) -> &'a str {
    match field {
        "client_id" => &f.client_id,
        "scopes" => &f.scopes,
        "authorization_url" => &f.authorization_url,
        "token_url" => &f.token_url,
        "api_origins" => &f.api_origins,
        "params" => &f.params,
        "static_secret" => &f.static_secret,
        "static_header" => &f.static_header,
        "username" => &f.username,
        "key_name" => &f.key_name,
        "identity_url" => &f.identity_url,
        "account_field" => &f.account_field,
        "event_identifier" => &f.event_identifier,
        "rate_limit" => &f.rate_limit,
        "subject" => &f.subject,
        "client_cert" => &f.client_cert,
        "ca_cert" => &f.ca_cert,
        "data_center" => &f.data_center,
        _ => "",
    }
}

/// `GET /`.
pub async fn show(
    State(state): State<Arc<AppState>>,
    // After signing in, back here with the query: an authorization's outcome is not lost.
    SignedIn(session): SignedIn,
    q: Result<Query<PageQuery>, QueryRejection>,
) -> Response {
    let q = q.map(|Query(q)| q).unwrap_or_default();
    // Banners name only integrations that exist: a link cannot put words in the console's mouth.
    let exists = |n: &Option<String>| {
        let state = state.clone();
        let n = n.clone();
        async move {
            match n.as_deref().and_then(|n| IntegrationName::new(n).ok()) {
                Some(name) => state.store.get_integration(&name).await.ok().flatten().is_some(),
                None => false,
            }
        }
    };
    let q = PageQuery {
        authorized: if exists(&q.authorized).await { q.authorized } else { None },
        saved: if exists(&q.saved).await { q.saved } else { None },
        ..q
    };
    let banners = html! {
        @if let Some(n) = &q.authorized {
            p.banner.ok role="status" { (ALL_SET) " Integration " strong { (n) } " is authorized." }
        }
        @if let Some(e) = &q.error { p.banner.bad role="alert" { "Authorization failed: " (prose(e)) } }
        @if let Some(n) = &q.saved {
            p.banner.ok role="status" { "Integration " strong { (n) } " saved. Register the callback URL at the provider, then click Authorize." }
        }
        @if let Some(n) = &q.removed { p.banner.ok role="status" { "Integration " strong { (n) } " removed with its tokens." } }
    };
    let mut form = IntegrationForm { kind: "authorization_code".into(), ..IntegrationForm::default() };
    if let Some(name) = q.edit.as_deref().and_then(|n| IntegrationName::new(n).ok()) {
        match state.store.get_integration(&name).await {
            Ok(Some(r)) => form = IntegrationForm::of(&r),
            Ok(None) => {}
            Err(e) => return store_failed("read an integration", &e, Some(&session.csrf)),
        }
    }
    if let Some(k) = &q.kind {
        form.kind = kind_of(k).to_string();
    }
    render(&state, &session, banners, &form, &Vec::new(), StatusCode::OK).await
}

/// Reads the form over `base` (the integration the form was opened on, whose settings the form
/// does not show are kept): the name and what to save, or every problem by field. A form that
/// cannot be read is checked all the same, so that every problem shows at once.
fn parse(f: &IntegrationForm, base: Option<&IntegrationRecord>) -> Result<(IntegrationName, Draft), Problems> {
    let mut problems: Problems = Vec::new();
    let opt = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_string());
    let name = IntegrationName::new(f.name.trim()).map_err(|e| problems.push(("name", e.to_string()))).ok();
    let mut url = |field: &'static str, s: &str| {
        opt(s).and_then(|u| parse_endpoint(&u).map_err(|e| problems.push((field, e.to_string()))).ok())
    };
    let authorization_url = url("authorization_url", &f.authorization_url);
    let token_url = url("token_url", &f.token_url);
    let identity_url = url("identity_url", &f.identity_url);
    let mut params = BTreeMap::new();
    for kv in f.params.split_whitespace() {
        match kv.split_once('=') {
            Some((k, v)) => {
                params.insert(k.to_string(), v.to_string());
            }
            None => problems.push(("params", format!("`{kv}` is not key=value"))),
        }
    }
    let profile =
        opt(&f.profile).and_then(|p| Profile::parse(&p).map_err(|e| problems.push(("profile", e.to_string()))).ok());
    let rate_limit = opt(&f.rate_limit)
        .and_then(|r| RateLimit::parse(&r).map_err(|e| problems.push(("rate_limit", e.to_string()))).ok());
    let config = IntegrationConfig {
        kind: match f.kind.as_str() {
            "client_credentials" => Kind::ClientCredentials,
            "static" => Kind::Static,
            "basic" => Kind::Basic,
            "api_key" => Kind::ApiKey,
            "jwt_bearer" => Kind::JwtBearer,
            _ => Kind::AuthorizationCode,
        },
        client_id: opt(&f.client_id),
        scopes: IntegrationConfig::split_scopes(&f.scopes),
        authorization_url,
        token_url,
        api_origins: f.api_origins.split_whitespace().map(str::to_string).collect(),
        extra_authorize_params: params,
        profile,
        data_center: opt(&f.data_center),
        static_secret: opt(&f.static_secret),
        static_header: opt(&f.static_header),
        username: opt(&f.username),
        key_in: (f.kind == "api_key").then_some(if f.key_in == "query" { KeyIn::Query } else { KeyIn::Header }),
        key_name: opt(&f.key_name),
        identity_url,
        account_field: opt(&f.account_field),
        event_identifier: opt(&f.event_identifier),
        rate_limit,
        subject: opt(&f.subject),
        // A certificate left blank keeps the stored one (the form shows it when editing).
        client_cert: opt(&f.client_cert).or_else(|| base.and_then(|r| r.config.client_cert.clone())),
        ca_cert: opt(&f.ca_cert).or_else(|| base.and_then(|r| r.config.ca_cert.clone())),
        // Settings the form does not show (refresh_on_status, refresh_skew_secs, …) are kept.
        ..base.map(|r| r.config.clone()).unwrap_or_default()
    };
    let client_auth = match f.client_auth.as_str() {
        "basic" => Some(ClientAuth::Basic),
        "body" => Some(ClientAuth::Body),
        _ => None,
    };
    // The secret field of the form's kind (the others are not shown, so not sent).
    let secret = match f.kind.as_str() {
        "basic" => &f.password,
        "api_key" => &f.api_key,
        "jwt_bearer" => &f.private_key,
        _ => &f.client_secret,
    };
    let mut config = config;
    let mut client_secret = opt(secret).map(SecretString::from);
    if config.kind == Kind::JwtBearer
        && let Some(text) = client_secret.take()
    {
        // A JSON key file names its account and key, in place of what the form still shows.
        match tern_integrations::jwt::key_material(text, &mut config) {
            Ok(key) => client_secret = Some(key),
            Err(e) => problems.push(("private_key", e.to_string())),
        }
    }
    // A client certificate's key left blank keeps the stored one.
    let client_key = opt(&f.client_key).map(SecretString::from);
    let draft = Draft { config, client_auth, client_secret, client_key };
    match name {
        Some(name) if problems.is_empty() => Ok((name, draft)),
        _ => {
            let mut unreadable: Vec<&str> = problems.iter().map(|(f, _)| *f).collect();
            // A key file that did not read filled in nothing: "required" would blame the wrong field.
            if unreadable.contains(&"private_key") {
                unreadable.extend(["client_id", "token_url"]);
            }
            for (field, text) in draft.check(base).err().iter().flatten().map(worded) {
                // A URL that did not parse already has its problem; "required" would contradict it.
                if !unreadable.contains(&field) {
                    problems.push((field, text));
                }
            }
            Err(problems)
        }
    }
}

/// `POST /integrations`: add or edit.
pub async fn save(
    State(state): State<Arc<AppState>>,
    ConsoleForm { session, form: f }: ConsoleForm<IntegrationForm>,
) -> Response {
    let base = match IntegrationName::new(f.original.as_str()) {
        Ok(original) if !f.original.is_empty() => match state.store.get_integration(&original).await {
            Ok(r) => r,
            Err(e) => return store_failed("read an integration", &e, Some(&session.csrf)),
        },
        _ => None,
    };
    let (name, draft) = match parse(&f, base.as_ref()) {
        Ok(v) => v,
        Err(problems) => {
            return render(&state, &session, html! {}, &f, &problems, StatusCode::UNPROCESSABLE_ENTITY).await;
        }
    };
    // Adding under a name that exists asks first; renaming in the edit form does too.
    let options =
        SaveOptions { replace: f.original == name.as_str() || f.replace == "yes", reachability: Reachability::Refuse };
    match state.integrations.save(&name, draft, options).await {
        Ok(_) => Redirect::to(&format!("/?saved={}", url_query(name.as_str()))).into_response(),
        Err(SaveError::Invalid { problems, .. }) => {
            let problems: Problems = problems.iter().map(worded).collect();
            render(&state, &session, html! {}, &f, &problems, StatusCode::UNPROCESSABLE_ENTITY).await
        }
        Err(SaveError::Exists { integration }) => {
            let problems = vec![(
                "name",
                format!(
                    "an integration named `{integration}` already exists; tick the box below to replace it, or choose another name"
                ),
            )];
            render(&state, &session, html! {}, &f, &problems, StatusCode::CONFLICT).await
        }
        Err(e) => store_failed("save an integration", &e, Some(&session.csrf)),
    }
}

/// The form of a button on a row (Authorize, Test, Remove): the CSRF token, and for Remove
/// whether it was confirmed.
#[derive(Debug, Deserialize)]
pub struct ActionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    confirm: String,
}

impl CsrfForm for ActionForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

impl CsrfForm for IntegrationForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// `POST /integrations/{name}/authorize`: to the provider.
pub async fn authorize(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    _: ConsoleForm<ActionForm>,
) -> Response {
    let Ok(name) = IntegrationName::new(name) else {
        return Redirect::to("/?error=no+such+integration").into_response();
    };
    match state.integrations.begin(&name, TokenOwner::Workspace).await {
        Ok(start) => Redirect::to(start.url.as_str()).into_response(),
        Err(e) => Redirect::to(&format!("/?error={}", url_query(&e.to_string()))).into_response(),
    }
}

/// `POST /integrations/{name}/test`: one live check, shown above the list.
pub async fn test(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    ConsoleForm { session, .. }: ConsoleForm<ActionForm>,
) -> Response {
    let Ok(name) = IntegrationName::new(name) else { return Redirect::to("/").into_response() };
    let banner = match state.integrations.test(&name).await {
        Ok(report) => test_banner(&report, state.store.clock().now_s()),
        Err(e) => html! { p.banner.bad role="alert" #test-result { (prose(&e.to_string())) } },
    };
    let form = IntegrationForm { kind: "authorization_code".into(), ..IntegrationForm::default() };
    render(&state, &session, banner, &form, &Vec::new(), StatusCode::OK).await
}

/// What a test did and found, in words: the verdict first, then each thing it did. A test
/// that called nothing says so rather than "it works".
fn test_banner(report: &tern_integrations::TestReport, now: i64) -> Markup {
    let record = &report.record;
    let name = record.name.as_str();
    let kind = record.config.kind;
    let usable = report.token_error.is_none() && matches!(record.readiness(), Readiness::Ready(_));
    // (class, verdict)
    let (class, verdict) = match (&report.live, usable) {
        (_, false) => ("bad", "it cannot be used.".to_string()),
        (Some(l), true) if l.error.is_some() => ("bad", "the live call failed.".to_string()),
        (Some(_), true) => ("ok", "it works: the identity URL answered.".to_string()),
        (None, true) => match kind {
            Kind::Static | Kind::Basic | Kind::ApiKey => {
                ("warn", "nothing to call; add an identity URL to test it.".to_string())
            }
            Kind::JwtBearer => (
                "ok",
                "a token was fetched with the service account's signed assertion; no API was called (add an identity URL to call one)."
                    .to_string(),
            ),
            Kind::ClientCredentials => (
                "ok",
                "a token was fetched with the client id and secret; no API was called (add an identity URL to call one)."
                    .to_string(),
            ),
            Kind::AuthorizationCode => (
                "ok",
                "the stored token is usable; no API was called (add an identity URL to call one).".to_string(),
            ),
        },
    };
    let account =
        report.live.as_ref().and_then(|l| l.account.clone()).or_else(|| report.token.as_ref()?.account.clone());
    html! {
        div #test-result class={"banner " (class)} role="status" data-verdict=(class) {
            p { strong { "Test of " (name) ": " } (verdict) }
            ul {
                @if let Some(a) = account { li { "Authorized as " strong { (a) } } }
                @if let Some(e) = &report.token_error { li { "Token: " (prose(reason(e))) } }
                @if let Readiness::NeedsAction(w) = record.readiness() { li { (needs_action_words(record, w)) ": click Authorize." } }
                @if kind == Kind::Static && report.token_error.is_none() {
                    li {
                        "The key is in the secret "
                        code { (record.config.static_secret.as_deref().unwrap_or("")) }
                        ", which is set"
                        @if report.live.is_some() { "; it was sent with the call below." } @else { "; it was not sent anywhere." }
                    }
                }
                @if matches!(kind, Kind::Basic | Kind::ApiKey) && report.token_error.is_none() {
                    li { "The " (kind.secret_name()) " is stored" @if report.live.is_some() { "; it was sent with the call below." } @else { "; it was not sent anywhere." } }
                }
                @if let Some(t) = report.token.as_ref().filter(|_| kind.uses_tokens()) {
                    li { "Token " (t.expires_at.map_or("does not expire".to_string(), |e| format!("expires {}", relative(e, now)))) "; refresh token " (if t.refreshable { "stored" } else { "none" }) }
                }
                @if let Some(l) = &report.live {
                    li {
                        "Called GET " code { (l.url) } ": "
                        @if let Some(s) = l.status { "answered " (s) }
                        @match (&l.error, l.status) {
                            // The status alone says it (the error only repeats it).
                            (Some(e), Some(s)) if e.contains(&s.to_string()) => {}
                            (Some(e), Some(_)) => { "; " (prose(e)) },
                            (Some(e), None) => { (prose(e)) },
                            (None, _) => { ", OK" },
                        }
                    }
                }
            }
        }
    }
}

/// `POST /integrations/{name}/remove`: asks first, then removes it with its tokens.
pub async fn remove(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    ConsoleForm { session, form: f }: ConsoleForm<ActionForm>,
) -> Response {
    let Ok(name) = IntegrationName::new(name) else { return Redirect::to("/").into_response() };
    if f.confirm != "yes" {
        let body = html! {
            h1 { "Remove " (name.as_str()) "?" }
            p { "Its settings and tokens are deleted. Flows that use it fail until it is added and authorized again." }
            form method="post" action={"/integrations/" (name.as_str()) "/remove"} {
                input type="hidden" name="csrf" value=(session.csrf);
                input type="hidden" name="confirm" value="yes";
                button.danger #confirm-remove type="submit" { "Remove " (name.as_str()) } " "
                a href="/" { "Keep it" }
            }
        };
        return html(page("Remove integration", Nav::Integrations, Some(&session.csrf), body)).into_response();
    }
    match state.integrations.remove(&name).await {
        Ok(true) => Redirect::to(&format!("/?removed={}", url_query(name.as_str()))).into_response(),
        Ok(false) => Redirect::to("/").into_response(),
        Err(e) => store_failed("remove an integration", &e, Some(&session.csrf)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_form_lists_every_problem_by_field_and_keeps_no_secret() {
        let f = IntegrationForm {
            name: "bad name!".into(),
            kind: "authorization_code".into(),
            client_secret: "s3cret".into(),
            authorization_url: "not a url".into(),
            params: "novalue".into(),
            ..IntegrationForm::default()
        };
        let problems = parse(&f, None).unwrap_err();
        let fields: Vec<&str> = problems.iter().map(|(f, _)| *f).collect();
        for want in ["name", "authorization_url", "params"] {
            assert!(fields.contains(&want), "{want} in {problems:?}");
        }
        assert!(problems.iter().all(|(_, p)| !p.contains("s3cret")));
    }

    #[test]
    fn fields_in_configuration_problems_become_field_labels() {
        let problems = IntegrationConfig::default().problems();
        let client_id = problems.iter().find(|p| p.field == Field::ClientId).unwrap();
        let (field, text) = worded(client_id);
        assert_eq!(field, "client_id");
        assert_eq!(text, "a client id is required (“Client ID”)");
        let token = problems.iter().find(|p| p.field == Field::TokenUrl).unwrap();
        assert_eq!(worded(token), ("token_url", "a token URL is required (“Token URL”, or a “Profile”)".into()));
    }
}
