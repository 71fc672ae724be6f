//! `GET /flows` (the loaded flows with trigger, version, integrations and a picture of each,
//! then the invalid files with their diagnostics) and `GET /flows/{id}/graph.svg` (the picture,
//! laid out on the server by [`FlowGraph`](tern_engine::graph::FlowGraph)).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::html;
use tern_engine::Trigger;
use tern_engine::graph::FlowGraph;

use super::layout::{Nav, page};
use super::runs::{url_path, url_query};
use super::{SignedIn, html, message_page};
use crate::server::AppState;

fn describe(trigger: Option<&Trigger>) -> String {
    match trigger {
        None => "none (started by name only)".into(),
        Some(Trigger::Message { regex, keywords, priority }) => {
            let what = match (regex, keywords.is_empty()) {
                (Some(r), _) => format!("message matching /{}/", r.as_str()),
                (None, false) => format!("message with a keyword: {}", keywords.join(", ")),
                (None, true) => "every message".into(),
            };
            if *priority == 0 { what } else { format!("{what} (priority {priority})") }
        }
        Some(Trigger::IntegrationEvent { integration, .. }) => format!("events of integration {integration}"),
        Some(Trigger::Error) => "another flow's failure (error flow)".into(),
    }
}

/// `GET /flows`.
pub async fn list(State(state): State<Arc<AppState>>, SignedIn(session): SignedIn) -> Response {
    let flows = state.conversations.flows();
    let invalid = state.invalid_flows.read().unwrap_or_else(|p| p.into_inner()).clone();
    let added: std::collections::BTreeSet<String> = match state.store.list_integrations().await {
        Ok(list) => list.into_iter().map(|r| r.name.to_string()).collect(),
        Err(e) => return super::store_failed("read the integrations", &e, Some(&session.csrf)),
    };
    let body = html! {
        h1 { "Flows" }
        @if flows.is_empty() { p.card { "No flows are loaded. Put flow files in the --flows directory; they are loaded on change." } }
        @for l in flows.iter() {
            @let f = &l.flow;
            section.card id={"flow-" (f.id.as_str())} {
                h2 { (f.id.as_str()) @if let Some(n) = &f.name { " " span.muted { "— " (n) } } }
                dl.facts {
                    dt { "Trigger" } dd { (describe(f.trigger.as_ref())) }
                    dt { "Version" } dd { code { (l.hash.get(..12).unwrap_or(&l.hash)) } }
                    dt { "Steps" } dd { (f.steps.len()) }
                    dt { "Integrations" } dd {
                        @if f.integrations.is_empty() { "none" }
                        @else {
                            @for (i, n) in f.integrations.iter().enumerate() {
                                @if i > 0 { ", " }
                                (n.as_str())
                                @if !added.contains(n.as_str()) { " " span.badge.bad { "not added: its steps fail" } }
                            }
                        }
                    }
                    dt { "Runs" } dd { a href={"/runs?flow=" (url_query(f.id.as_str()))} { "Runs of this flow" } }
                }
                div.graph {
                    img src={"/flows/" (url_path(f.id.as_str())) "/graph.svg"}
                        alt={"Diagram of flow " (f.id.as_str()) ": its steps as boxes joined by next, on_error and branch arrows"}
                        loading="lazy";
                }
            }
        }
        @if !invalid.is_empty() {
            h2 { "Invalid flow files (not loaded)" }
            @for bad in &invalid {
                div.card.invalid {
                    p { code { (bad.file) } }
                    ul { @for d in &bad.problems { li { code { (d) } } } }
                }
            }
        }
    };
    html(page("Flows", Nav::Flows, Some(&session.csrf), body)).into_response()
}

/// `GET /flows/{id}/graph.svg`.
pub async fn graph(
    State(state): State<Arc<AppState>>,
    SignedIn(session): SignedIn,
    Path(id): Path<String>,
) -> Response {
    let flows = state.conversations.flows();
    let Some(l) = flows.iter().find(|l| l.flow.id.as_str() == id) else {
        return message_page(StatusCode::NOT_FOUND, "No such flow", "No loaded flow has this id.", Some(&session.csrf));
    };
    let svg = match picture(&l.hash, &l.flow).await {
        Some(svg) => svg,
        None => {
            return message_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "The picture could not be drawn",
                "Drawing this flow failed; the server log has the detail.",
                Some(&session.csrf),
            );
        }
    };
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            // The picture is drawn from the flow author's text: no scripts, even if one slipped in.
            (header::CONTENT_SECURITY_POLICY, "default-src 'none'; style-src 'unsafe-inline'"),
        ],
        svg.to_string(),
    )
        .into_response()
}

/// Pictures already drawn, by flow version (a version never changes). At most
/// [`MAX_CACHED_PICTURES`]; the cache starts over when full.
static PICTURES: std::sync::LazyLock<std::sync::Mutex<std::collections::HashMap<String, Arc<str>>>> =
    std::sync::LazyLock::new(Default::default);

/// Most pictures kept.
const MAX_CACHED_PICTURES: usize = 256;

/// The picture of a flow version: drawn once, on a blocking thread (layout is CPU work that
/// must not hold up the server's other requests), then kept.
async fn picture(hash: &str, flow: &Arc<tern_engine::CompiledFlow>) -> Option<Arc<str>> {
    if let Some(svg) = PICTURES.lock().unwrap_or_else(|p| p.into_inner()).get(hash) {
        return Some(svg.clone());
    }
    let flow = flow.clone();
    let svg: Arc<str> = match tokio::task::spawn_blocking(move || FlowGraph::of(&flow).to_svg_or_note()).await {
        Ok(svg) => svg.into(),
        Err(e) => {
            tracing::error!(error = %e, "drawing a flow failed");
            return None;
        }
    };
    let mut cache = PICTURES.lock().unwrap_or_else(|p| p.into_inner());
    if cache.len() >= MAX_CACHED_PICTURES {
        cache.clear();
    }
    cache.insert(hash.to_string(), svg.clone());
    Some(svg)
}
