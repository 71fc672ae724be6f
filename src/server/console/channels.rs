//! `GET /channels`: every channel with its kind, where it is defined, which credentials it has
//! (never their values), its webhook URL (credentials in it masked) and whether it is open.
//! Channels are added and removed with `tern channels` or the admin API.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use maud::html;

use super::layout::{Nav, page};
use super::{SignedIn, html};
use crate::server::AppState;

/// `GET /channels`.
pub async fn list(State(state): State<Arc<AppState>>, SignedIn(session): SignedIn) -> Response {
    let channels = match state.channel_service.list().await {
        Ok(list) => list,
        Err(e) => return super::store_failed("read the channels", &e, Some(&session.csrf)),
    };
    let body = html! {
        h1 { "Channels" }
        p.muted { "Where messages come from and how replies go back. Add one with " code { "tern channels add NAME" } " or " code { "PUT /v1/channels/{name}" } "." }
        @for c in &channels {
            section.card id={"channel-" (c.name)} {
                h2 { (c.name) @if c.open { " " span.badge.bad { "open: no credentials needed" } } }
                dl.facts {
                    dt { "Kind" } dd { (c.kind.as_str()) }
                    dt { "Defined by" } dd { (c.source.describe()) }
                    dt { "Bearer tokens" } dd { @if c.tokens == 0 { "none" } @else { (c.tokens) " set" } }
                    dt { "Signing secrets" } dd { @if c.signing_secrets == 0 { "none" } @else { (c.signing_secrets) " set" } }
                    dt { "Webhook URL" } dd { (c.webhook_url.as_deref().unwrap_or("none")) }
                    dt { "Webhook secret" } dd { @if c.webhook_secret_set { "set" } @else { "not set" } }
                }
            }
        }
    };
    html(page("Channels", Nav::Channels, Some(&session.csrf), body)).into_response()
}
