//! `GET /channels`: every channel with its kind, where it is defined, which credentials it has
//! (never their values), its webhook URL (credentials in it masked) and whether it is open;
//! `POST /channels` adds a stored channel and `POST /channels/{name}/remove` removes one (after
//! asking). The rules are the channels service's ([`Channels::save`]), shown at their fields.
//!
//! The add form is filled with a new bearer token and a new webhook secret: they are not known
//! to the process until the channel is saved (so the page shows them, unmasked), and the
//! operator copies them into the channel's own settings before saving. After the save they are
//! never shown again.
//!
//! [`Channels::save`]: tern_engine::channels::Channels::save

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tern_engine::channel::{ChannelKind, ChannelName};
use tern_engine::channels::{ChannelDraft, ChannelError, ChannelSource, Field, new_token};
use tern_engine::standard_webhooks::WebhookSecret;

use super::layout::{Nav, page};
use super::runs::url_query;
use super::session::Session;
use super::{ConsoleForm, CsrfForm, SignedIn, html, store_failed};
use crate::server::AppState;

/// What the list says after a save or a removal.
#[derive(Debug, Default, Deserialize)]
pub struct Done {
    #[serde(default)]
    saved: String,
    #[serde(default)]
    removed: String,
}

/// The add form's fields (the secrets as typed: the caller's own input).
#[derive(Debug, Default, Deserialize)]
pub struct ChannelForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    token: String,
    #[serde(default)]
    signing_secret: String,
    #[serde(default)]
    webhook_url: String,
    #[serde(default)]
    webhook_secret: String,
}

impl CsrfForm for ChannelForm {
    const INCOMPLETE: &'static str = "Go back to the Channels page and fill in the form again.";

    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// The remove button's form.
#[derive(Debug, Deserialize)]
pub struct RemoveForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    confirm: String,
}

impl CsrfForm for RemoveForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// Problems at the form's fields (`""`: the whole form).
type Problems = Vec<(&'static str, String)>;

/// The form field of a channel setting.
fn form_field(field: Field) -> &'static str {
    match field {
        Field::Name => "name",
        Field::Kind => "",
        Field::Tokens => "token",
        Field::SigningSecrets => "signing_secret",
        Field::WebhookUrl => "webhook_url",
        Field::WebhookSecret => "webhook_secret",
        // The console's form makes generic channels only (platform channels: the CLI, the
        // admin API, tern.toml).
        Field::SecretToken
        | Field::BotToken
        | Field::ApiBase
        | Field::AppSecret
        | Field::VerifyToken
        | Field::PhoneNumberId
        | Field::Integration
        | Field::AuthToken
        | Field::AccountSid
        | Field::From
        | Field::SigningSecret
        | Field::Origins => "",
    }
}

/// `GET /channels`.
pub async fn list(
    State(state): State<Arc<AppState>>,
    SignedIn(session): SignedIn,
    done: Result<Query<Done>, QueryRejection>,
) -> Response {
    let done = done.map(|Query(d)| d).unwrap_or_default();
    let banner = html! {
        @if !done.saved.is_empty() { p.banner.ok role="status" #saved { "Channel " code { (done.saved) } " saved." } }
        @if !done.removed.is_empty() { p.banner.ok role="status" #removed { "Channel " code { (done.removed) } " removed: its messages are refused (on other instances within 5 seconds)." } }
    };
    let form = ChannelForm {
        token: new_token().expose_secret().to_string(),
        webhook_secret: WebhookSecret::generate().to_whsec(),
        ..ChannelForm::default()
    };
    render(&state, &session, banner, &form, &Vec::new(), StatusCode::OK).await
}

async fn render(
    state: &AppState,
    session: &Session,
    banner: Markup,
    form: &ChannelForm,
    problems: &Problems,
    status: StatusCode,
) -> Response {
    let channels = match state.channel_service.list().await {
        Ok(list) => list,
        Err(e) => return store_failed("read the channels", &e, Some(&session.csrf)),
    };
    let csrf = session.csrf.as_str();
    let problem_of =
        |field: &str| problems.iter().filter(|(f, _)| *f == field).map(|(_, p)| p.clone()).collect::<Vec<_>>();
    let general = problem_of("");
    let body = html! {
        h1 { "Channels" }
        (banner)
        p.muted { "Where messages come from and how replies go back. Also " code { "tern channels add NAME" } " and " code { "PUT /v1/channels/{name}" } "." }
        @for c in &channels {
            section.card id={"channel-" (c.name)} {
                h2 { (c.name) @if c.open { " " span.badge.bad { "open: no credentials needed" } } }
                dl.facts {
                    dt { "Kind" } dd { (c.kind.as_str()) }
                    dt { "Defined by" } dd { (c.source.describe()) }
                    @if c.source == ChannelSource::Builtin {
                        dt { "Pages" } dd { "The console's " a href="/try" { "Try it" } " only" }
                    } @else if c.kind == tern_engine::channel::ChannelKind::Web {
                        dt { "Allowed origins" } dd { (c.origins.join(", ")) }
                        dt { "On the pages" } dd {
                            p { "Put this tag on the pages of those origins:" }
                            pre.snippet { code { (tern_engine::web_chat::snippet(state.public_url.as_str(), &c.name)) } }
                        }
                    } @else if c.api_base.is_some() {
                        dt { "Webhook" } dd { "POST " code { "/v1/channels/" (c.name) "/webhook" } " (the platform posts its updates there)" }
                        @for (label, value) in c.platform_facts() { dt { (capitalized(label)) } dd { (value) } }
                    } @else {
                        dt { "Bearer tokens" } dd { @if c.tokens == 0 { "none" } @else { (c.tokens) " set" } }
                        dt { "Signing secrets" } dd { @if c.signing_secrets == 0 { "none" } @else { (c.signing_secrets) " set" } }
                        dt { "Webhook URL" } dd { (c.webhook_url.as_deref().unwrap_or("none")) }
                        dt { "Webhook secret" } dd { @if c.webhook_secret_set { "set" } @else { "not set" } }
                    }
                    @let a = state.conversations.activity().of(&c.name);
                    dt { "Last message received" } dd { (a.last_received_ms.map(super::layout::time_ms).unwrap_or_else(|| "none since the server started".into())) }
                    dt { "Last reply sent" } dd { (a.last_sent_ms.map(super::layout::time_ms).unwrap_or_else(|| "none since the server started".into())) }
                    dt { "Replies" } dd { (a.sent) " sent, " (a.retried) " retried, " (a.dropped) " lost (given up or refused)" }
                    @if let Some((at, why)) = &a.last_failure { dt { "Last failure" } dd.bad { (super::layout::time_ms(*at)) ": " (why) } }
                }
                @if c.source == ChannelSource::Stored {
                    form method="post" action={"/channels/" (c.name) "/remove"} {
                        input type="hidden" name="csrf" value=(csrf);
                        button.danger type="submit" id={"remove-" (c.name)} { "Remove" }
                    }
                }
            }
        }
        h2 #form-title { "Add channel" }
        form.card #add method="post" action="/channels" novalidate {
            input type="hidden" name="csrf" value=(csrf);
            @if !general.is_empty() || !problems.is_empty() {
                div.banner.bad role="alert" #problems {
                    p { "The channel was not saved" @if general.is_empty() { "; see the problems next to the fields below." } @else { ":" } }
                    @if !general.is_empty() { ul { @for p in &general { li { (super::layout::prose(p)) } } } }
                }
            }
            p.muted { "A generic channel posts Tern's JSON to " code { "/v1/channels/NAME/conversations/{id}/messages" } ". The token and the webhook secret below are new: copy them into the channel's settings before you save; they are not shown again." }
            @for (field, label, kind, help) in [
                ("name", "Name", "text", "Lower-case letters, digits, `_` and `-`."),
                ("token", "Bearer token", "text", "The channel sends it as `Authorization: Bearer …`. Leave it blank to use a signing secret only."),
                ("signing_secret", "Signing secret (optional)", "text", "A Standard Webhooks secret (`whsec_…`) the channel signs its requests with."),
                ("webhook_url", "Webhook URL (optional)", "url", "Where replies are posted, signed with the webhook secret."),
                ("webhook_secret", "Webhook secret", "text", "Used only with a webhook URL: the receiver verifies each reply with it."),
            ] {
                label for={"c-" (field)} { (label) }
                input id={"c-" (field)} type=(kind) name=(field) value=(value_of(form, field)) autocomplete="off" spellcheck="false"
                    aria-invalid=[(!problem_of(field).is_empty()).then_some("true")] aria-describedby={"ch-" (field)};
                p.muted id={"ch-" (field)} { (super::layout::prose(help)) }
                @for p in problem_of(field) { p.field-error { (super::layout::prose(&p)) } }
            }
            p { button #save-channel type="submit" { "Save" } }
        }
    };
    (status, html(page("Channels", Nav::Channels, Some(csrf), body))).into_response()
}

fn value_of<'a>(f: &'a ChannelForm, field: &str) -> &'a str {
    match field {
        "name" => &f.name,
        "token" => &f.token,
        "signing_secret" => &f.signing_secret,
        "webhook_url" => &f.webhook_url,
        "webhook_secret" => &f.webhook_secret,
        _ => "",
    }
}

/// `POST /channels`: adds a stored channel (never replaces one: remove it first).
pub async fn save(
    State(state): State<Arc<AppState>>,
    ConsoleForm { session, form: f }: ConsoleForm<ChannelForm>,
) -> Response {
    let text = |s: &str| (!s.trim().is_empty()).then(|| SecretString::from(s.trim().to_string()));
    let has_url = !f.webhook_url.trim().is_empty();
    let draft = ChannelDraft {
        kind: Some(ChannelKind::Generic),
        tokens: text(&f.token).into_iter().collect(),
        signing_secrets: text(&f.signing_secret).into_iter().collect(),
        webhook_url: has_url.then(|| f.webhook_url.trim().to_string()),
        // The form always carries a webhook secret; it is only for a webhook URL.
        webhook_secret: if has_url { text(&f.webhook_secret) } else { None },
        ..ChannelDraft::default()
    };
    let name = f.name.trim();
    let problems: Problems = match state.channel_service.save(name, draft, false).await {
        Ok(saved) => return Redirect::to(&format!("/channels?saved={}", url_query(&saved.name))).into_response(),
        Err(ChannelError::Invalid { problems, .. }) => {
            problems.into_iter().map(|p| (form_field(p.field), p.message)).collect()
        }
        Err(e @ (ChannelError::Exists { .. } | ChannelError::Configured { .. })) => vec![("name", e.to_string())],
        Err(ChannelError::NotFound { .. }) => Vec::new(),
        Err(ChannelError::Store(e)) => return store_failed("save a channel", &e, Some(&session.csrf)),
    };
    render(&state, &session, html! {}, &f, &problems, StatusCode::UNPROCESSABLE_ENTITY).await
}

/// `POST /channels/{name}/remove`: asks first, then removes the stored channel.
pub async fn remove(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    ConsoleForm { session, form: f }: ConsoleForm<RemoveForm>,
) -> Response {
    let Ok(name) = ChannelName::new(name) else { return Redirect::to("/channels").into_response() };
    if f.confirm != "yes" {
        let body = html! {
            h1 { "Remove channel " (name) "?" }
            p { "Its messages are refused from now on, its replies not yet delivered are dropped, and its conversations and waiting runs stay with it, out of reach: a channel added later under the same name starts afresh." }
            form method="post" action={"/channels/" (name) "/remove"} {
                input type="hidden" name="csrf" value=(session.csrf);
                input type="hidden" name="confirm" value="yes";
                button.danger #confirm-remove type="submit" { "Remove " (name) } " "
                a href="/channels" { "Keep it" }
            }
        };
        return html(page("Remove channel", Nav::Channels, Some(&session.csrf), body)).into_response();
    }
    match state.channel_service.remove(&name).await {
        Ok(()) => Redirect::to(&format!("/channels?removed={}", url_query(name.as_str()))).into_response(),
        Err(ChannelError::Store(e)) => store_failed("remove a channel", &e, Some(&session.csrf)),
        Err(e) => super::message_page(StatusCode::CONFLICT, "Not removed", &e.to_string(), Some(&session.csrf)),
    }
}

/// `label` with its first letter in upper case, as the page shows labels.
fn capitalized(label: &str) -> String {
    let mut chars = label.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}
