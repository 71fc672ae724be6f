//! `GET /plugins`: the step plugins the server loaded at start, each with its step type,
//! version, description, the fields through which it uses integrations, the origins the
//! operator allowed it without one, its file and its whole SHA-256 (what `tern plugins install
//! --sha256` pins). Read-only: installing is `tern plugins install` and a restart.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use maud::html;

use super::layout::{Nav, page};
use super::{SignedIn, html};
use crate::server::AppState;

pub async fn list(State(state): State<Arc<AppState>>, SignedIn(session): SignedIn) -> Response {
    let body = html! {
        h1 { "Plugins" }
        p.muted {
            "Step types added as WebAssembly components, loaded when the server started. Install one with "
            code { "tern plugins install FILE" } " and restart the server; write one with "
            code { "tern plugins new NAME --lang js|python|c" } "."
        }
        @if state.plugins.is_empty() {
            p #no-plugins { "No plugins are loaded." }
        }
        @for p in &state.plugins {
            section.card id={"plugin-" (p.step_type)} {
                h2 { code { (p.step_type) } " " span.muted { (p.version) } }
                p { (p.description) }
                table {
                    tr { th { "Integrations" } td {
                        @if p.integration_fields.is_empty() { span.muted { "none: it calls no API with a token" } }
                        @else {
                            "the ones a flow names in its step's "
                            @for (i, f) in p.integration_fields.iter().enumerate() { @if i > 0 { " or " } code { (f) } }
                            " field (only their API origins)"
                        }
                    } }
                    tr { th { "Allowed origins" } td {
                        @if p.allowed_origins.is_empty() { span.muted { "none without an integration" } }
                        @else { @for (i, o) in p.allowed_origins.iter().enumerate() { @if i > 0 { ", " } code { (o) } } }
                    } }
                    tr { th { "SHA-256" } td { code.sha256 { (p.sha256) } } }
                    tr { th { "File" } td { code { (p.file) } } }
                }
            }
        }
    };
    html(page("Plugins", Nav::Plugins, Some(&session.csrf), body)).into_response()
}
