//! `GET /flows` (a table of the loaded flows: name, description, trigger, integrations, last
//! run and failures, each a link to its page; then the invalid files with their diagnostics),
//! `GET /flows/{id}` (a flow's facts and picture) and `GET /flows/{id}/graph.svg` (the
//! picture, laid out on the server by [`FlowGraph`](tern_engine::graph::FlowGraph)).

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use tern_engine::Trigger;
use tern_engine::conversation::{RunQuery, RunStatus};
use tern_engine::graph::FlowGraph;

use super::layout::{Nav, page, prose, run_status, time_ms};
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

/// What the runs of a flow say about it: its newest run and the failures among its latest.
struct RunFacts {
    last: Option<tern_engine::conversation::RunSummary>,
    failed: usize,
    of: usize,
}

/// Most runs looked at for [`RunFacts`].
const RECENT_RUNS: usize = 50;

async fn run_facts(state: &AppState, flow: &str) -> Result<RunFacts, tern_engine::storage::StoreError> {
    let query = RunQuery { flow_id: Some(flow.to_string()), limit: RECENT_RUNS, ..RunQuery::default() };
    let runs = state.conversations.runs(&query).await?.runs;
    let failed = runs.iter().filter(|r| r.status == RunStatus::Failed).count();
    Ok(RunFacts { of: runs.len(), failed, last: runs.into_iter().next() })
}

/// The integrations a flow uses, each marked when it is not added (its steps fail then).
fn integrations(f: &tern_engine::CompiledFlow, added: &BTreeSet<String>) -> Markup {
    html! {
        @if f.integrations.is_empty() { span.muted { "none" } }
        @else {
            @for (i, n) in f.integrations.iter().enumerate() {
                @if i > 0 { ", " }
                (n.as_str())
                @if !added.contains(n.as_str()) { " " span.badge.bad { "not added: its steps fail" } }
            }
        }
    }
}

/// The newest run and the failures, with links to them.
fn run_cells(id: &str, facts: &RunFacts) -> (Markup, Markup) {
    let last = html! {
        @match &facts.last {
            Some(r) => {
                a href={"/runs/" (url_path(r.run_id.as_str()))} { (time_ms(r.updated_at_ms)) } " " (run_status(r.status.as_str()))
            }
            None => { span.muted { "never run" } }
        }
    };
    let failures = html! {
        @if facts.failed == 0 {
            @if facts.of == 0 { span.muted { "–" } } @else { "none" }
        } @else {
            a.badge.bad href={"/runs?flow=" (url_query(id)) "&status=failed"} {
                @if facts.of == 1 { "the only run" } @else { (facts.failed) " of the last " (facts.of) " runs" }
            }
        }
    };
    (last, failures)
}

async fn added_integrations(state: &AppState) -> Result<BTreeSet<String>, tern_store::StoreError> {
    Ok(state.store.list_integrations().await?.into_iter().map(|r| r.name.to_string()).collect())
}

/// `GET /flows`: a table of the loaded flows (each a link to its page), then the invalid files
/// with their diagnostics.
pub async fn list(State(state): State<Arc<AppState>>, SignedIn(session): SignedIn) -> Response {
    let flows = state.conversations.flows();
    let invalid = state.invalid_flows.read().unwrap_or_else(|p| p.into_inner()).clone();
    let added = match added_integrations(&state).await {
        Ok(a) => a,
        Err(e) => return super::store_failed("read the integrations", &e, Some(&session.csrf)),
    };
    let mut facts = Vec::with_capacity(flows.len());
    for l in flows.iter() {
        match run_facts(&state, l.flow.id.as_str()).await {
            Ok(f) => facts.push(f),
            Err(e) => return super::store_failed("list runs", &e, Some(&session.csrf)),
        }
    }
    let body = html! {
        h1 { "Flows" }
        @if flows.is_empty() { p.card { "No flows are loaded. Put flow files in the --flows directory; they are loaded on change." } }
        @else {
            div.scroll {
                table #flows {
                    thead { tr { th { "Flow" } th { "Description" } th { "Trigger" } th { "Integrations" } th { "Last run" } th { "Failures" } } }
                    tbody {
                        @for (l, facts) in flows.iter().zip(&facts) {
                            @let f = &l.flow;
                            @let id = f.id.as_str();
                            @let (last, failures) = run_cells(id, facts);
                            tr id={"flow-" (id)} {
                                td {
                                    a href={"/flows/" (url_path(id))} { strong { (f.name.as_deref().unwrap_or(id)) } }
                                    @if f.name.is_some() { br; code.muted { (id) } }
                                }
                                td { (f.description.as_deref().unwrap_or("–")) }
                                td { (describe(f.trigger.as_ref())) }
                                td { (integrations(f, &added)) }
                                td { (last) }
                                td { (failures) }
                            }
                        }
                    }
                }
            }
        }
        @if !invalid.is_empty() {
            h2 { "Invalid flow files (not loaded)" }
            @for bad in &invalid {
                div.card.invalid {
                    p { code { (bad.file) } }
                    ul { @for d in &bad.problems { li { (prose(d)) } } }
                }
            }
        }
    };
    html(page("Flows", Nav::Flows, Some(&session.csrf), body)).into_response()
}

/// `GET /flows/{id}`: a flow's facts and its picture.
pub async fn show(State(state): State<Arc<AppState>>, SignedIn(session): SignedIn, Path(id): Path<String>) -> Response {
    let flows = state.conversations.flows();
    let Some(l) = flows.iter().find(|l| l.flow.id.as_str() == id) else {
        return message_page(StatusCode::NOT_FOUND, "No such flow", "No loaded flow has this id.", Some(&session.csrf));
    };
    let added = match added_integrations(&state).await {
        Ok(a) => a,
        Err(e) => return super::store_failed("read the integrations", &e, Some(&session.csrf)),
    };
    let facts = match run_facts(&state, &id).await {
        Ok(f) => f,
        Err(e) => return super::store_failed("list runs", &e, Some(&session.csrf)),
    };
    let f = &l.flow;
    let (last, failures) = run_cells(&id, &facts);
    let body = html! {
        p { a href="/flows" { "← All flows" } }
        h1 { (f.name.as_deref().unwrap_or(&id)) @if f.name.is_some() { " " code.muted { (id) } } }
        @if let Some(d) = &f.description { p #description { (d) } }
        div.card {
            dl.facts {
                dt { "Trigger" } dd { (describe(f.trigger.as_ref())) }
                dt { "Version" } dd { code { (l.hash.get(..12).unwrap_or(&l.hash)) } }
                dt { "Steps" } dd { (f.steps.len()) }
                dt { "Integrations" } dd { (integrations(f, &added)) }
                dt { "Last run" } dd { (last) }
                dt { "Failures" } dd { (failures) }
                dt { "Runs" } dd { a href={"/runs?flow=" (url_query(&id))} { "Runs of this flow" } }
            }
        }
        h2 { "Picture" }
        p.muted { "Each box is a step: its id, its type and what it does. Arrows go to the next step; a condition or "
            code { "on_error" } " is written in a small box on its arrow; dashed red arrows are failures." }
        div.graph {
            img #picture src={"/flows/" (url_path(&id)) "/graph.svg"}
                alt={"Diagram of flow " (id) ": its steps as boxes joined by next, on_error and branch arrows"};
        }
    };
    html(page(f.name.as_deref().unwrap_or(&id), Nav::Flows, Some(&session.csrf), body)).into_response()
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
