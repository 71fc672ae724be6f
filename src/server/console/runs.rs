//! `GET /runs` (n8n's Executions: newest first, filters, pages) and `GET /runs/{id}` (the
//! conversation transcript across pauses and the step timeline).

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;
use tern_engine::conversation::{Recovery, RunCursor, RunHistory, RunId, RunQuery, RunStatus, Segment, Unanswered};

use super::layout::{Nav, duration_ms, page, prose, run_status, time_ms};
use super::{SignedIn, html, message_page, store_failed};
use crate::server::AppState;

/// Filters of the runs list (empty fields are ignored).
#[derive(Debug, Default, Deserialize)]
pub struct Filters {
    #[serde(default)]
    flow: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    conversation: String,
    #[serde(default)]
    after: String,
}

const PAGE: usize = 50;

fn query_string(f: &Filters, after: Option<&RunCursor>) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in [("flow", &f.flow), ("status", &f.status), ("conversation", &f.conversation)] {
        if !v.is_empty() {
            q.append_pair(k, v);
        }
    }
    if let Some(a) = after {
        q.append_pair("after", &a.to_string());
    }
    q.finish()
}

/// `GET /runs`.
pub async fn list(
    State(state): State<Arc<AppState>>,
    SignedIn(session): SignedIn,
    q: Result<Query<Filters>, QueryRejection>,
) -> Response {
    let f = q.map(|Query(f)| f).unwrap_or_default();
    let mut problems = Vec::new();
    let status = (!f.status.is_empty())
        .then(|| f.status.parse::<RunStatus>().map_err(|e| problems.push(e.to_string())).ok())
        .flatten();
    let after = (!f.after.is_empty())
        .then(|| f.after.parse::<RunCursor>().map_err(|e| problems.push(e.to_string())).ok())
        .flatten();
    let query = RunQuery {
        flow_id: (!f.flow.is_empty()).then(|| f.flow.clone()),
        status,
        conversation_id: (!f.conversation.is_empty()).then(|| f.conversation.trim().to_string()),
        after,
        limit: PAGE,
    };
    let runs = match state.conversations.runs(&query).await {
        Ok(p) => p,
        Err(e) => return store_failed("list runs", &e, Some(&session.csrf)),
    };
    let flows = state.conversations.flows();
    // What the summaries say, without reading each run's history (a long history is costly to
    // read, and a page lists 50): a run of an error flow is marked by its flow's trigger; the
    // summary keeps whether a step went to on_error, the working time and whether the last
    // activation replied (unknown for runs recorded before Tern kept them).
    let error_flows: std::collections::BTreeSet<String> = flows
        .iter()
        .filter(|l| matches!(l.flow.trigger, Some(tern_engine::Trigger::Error)))
        .map(|l| l.flow.id.to_string())
        .collect();
    let body = html! {
        h1 { "Runs" }
        form.filters method="get" action="/runs" role="search" {
            div {
                label for="f-flow" { "Flow" }
                select #f-flow name="flow" {
                    option value="" { "Any flow" }
                    @for l in flows.iter() {
                        option value=(l.flow.id.as_str()) selected[f.flow == l.flow.id.as_str()] { (l.flow.id.as_str()) }
                    }
                }
            }
            div {
                label for="f-status" { "Status" }
                select #f-status name="status" {
                    option value="" { "Any status" }
                    @for s in RunStatus::ALL {
                        option value=(s.as_str()) selected[f.status == s.as_str()] { (run_status_words(s)) }
                    }
                }
            }
            div {
                label for="f-conversation" { "Conversation" }
                input #f-conversation type="text" name="conversation" value=(f.conversation) placeholder="conversation id";
            }
            div { button type="submit" { "Filter" } }
        }
        @for p in &problems { p.banner.bad role="alert" { (prose(p)) } }
        @if runs.runs.is_empty() {
            p.card { "No runs match. Runs are kept as long as --history-retention says; send a message on the "
                a href="/try" { "Try it" } " page to make one." }
        } @else {
            div.scroll {
                table #runs {
                    thead { tr { th { "Last activity" } th { "Flow" } th { "Conversation" } th { "Contact" } th { "Status" } th { "Working" } } }
                    tbody {
                        @for r in &runs.runs {
                            tr data-run=(r.run_id.as_str()) {
                                td { a href={"/runs/" (url_path(r.run_id.as_str()))} { (time_ms(r.updated_at_ms)) } }
                                td { (r.flow_id) }
                                td { a href={"/runs?conversation=" (url_query(&r.conversation_id))} { (r.conversation_id) } }
                                td { (r.contact_id.as_deref().unwrap_or("–")) }
                                td {
                                    (run_status(r.status.as_str()))
                                    @if r.recovered == Some(true) { " " span.badge.warn data-recovery="on_error" { "recovered via on_error" } }
                                    @if error_flows.contains(&r.flow_id) { " " span.badge.warn data-recovery="error_flow" { "error flow" } }
                                    @if r.status == RunStatus::Completed && r.answered_last == Some(false) {
                                        " " span.badge.warn data-unanswered { "no answer" }
                                    }
                                }
                                td { (duration_ms(r.work_ms.unwrap_or(r.duration_ms))) }
                            }
                        }
                    }
                }
            }
            @if let Some(next) = &runs.next {
                p { a #older href={"/runs?" (query_string(&f, Some(next)))} { "Older runs →" } }
            }
        }
    };
    html(page("Runs", Nav::Runs, Some(&session.csrf), body)).into_response()
}

fn run_status_words(s: RunStatus) -> &'static str {
    match s {
        RunStatus::Completed => "Completed",
        RunStatus::Paused => "Waiting for the contact",
        RunStatus::Failed => "Failed",
    }
}

/// `GET /runs/{id}`.
pub async fn show(State(state): State<Arc<AppState>>, SignedIn(session): SignedIn, Path(id): Path<String>) -> Response {
    // An id that cannot be a run id names no run.
    let found = match RunId::new(id.as_str()) {
        Ok(run_id) => state.conversations.run(&run_id).await,
        Err(_) => Ok(None),
    };
    let run = match found {
        Ok(Some(r)) => r,
        Ok(None) => {
            return message_page(
                StatusCode::NOT_FOUND,
                "No such run",
                "This run is not in the history: runs are kept as long as --history-retention says.",
                Some(&session.csrf),
            );
        }
        Err(e) => return store_failed("read a run", &e, Some(&session.csrf)),
    };
    let handled_by = match state.conversations.error_flow_run_of(&run).await {
        Ok(h) => h,
        Err(e) => return store_failed("read a run", &e, Some(&session.csrf)),
    };
    let body = run_page(&run, handled_by.as_ref());
    html(page(&format!("Run {}", run.summary.run_id), Nav::Runs, Some(&session.csrf), body)).into_response()
}

/// The badges that set a run apart from a clean one, from its [`Recovery`] (none for a clean
/// run).
pub fn badges(r: &Recovery) -> Markup {
    html! {
        @if !r.on_error.is_empty() { " " span.badge.warn data-recovery="on_error" { "recovered via on_error" } }
        @if r.after_failure_of.is_some() { " " span.badge.warn data-recovery="error_flow" { "error flow" } }
    }
}

/// Milliseconds of work (the activations) and of waiting for the contact (between them; a
/// paused run's wait so far is not counted, it is still going on).
pub fn work_and_wait_ms(run: &RunHistory) -> (i64, i64) {
    let work = run.segments.iter().map(|g| (g.finished_at_ms - g.started_at_ms).max(0)).sum();
    let wait = run.segments.windows(2).map(|w| (w[1].started_at_ms - w[0].finished_at_ms).max(0)).sum();
    (work, wait)
}

/// A run: facts, transcript, then each activation's steps. `handled_by` is the error flow's
/// run that this run's failure started, when there is one.
pub fn run_page(run: &RunHistory, handled_by: Option<&RunHistory>) -> Markup {
    let s = &run.summary;
    let recovery = Recovery::of(run);
    let (work, wait) = work_and_wait_ms(run);
    let no_answer = run.unanswered(handled_by);
    html! {
        h1 { "Run " code { (s.run_id) } " " (run_status(s.status.as_str())) (badges(&recovery)) }
        @match no_answer {
            Some(Unanswered::Never) => p.banner.warn role="status" #no-answer {
                "The contact got no answer." " This run ended without sending a reply."
            },
            Some(Unanswered::LastMessage) => p.banner.warn role="status" #no-answer {
                "The contact got no answer to its last message." " The run ended without replying to it."
            },
            None => {},
        }
        @if !recovery.on_error.is_empty() {
            p.banner.warn #recovered {
                "Recovered: step" @if recovery.on_error.len() > 1 { "s" } " "
                @for (i, step) in recovery.on_error.iter().enumerate() { @if i > 0 { ", " } code { (step) } }
                " failed and the run went on through " code { "on_error" } "."
            }
        }
        @if let Some(failed) = &recovery.after_failure_of {
            p.banner.warn #error-flow {
                "This is the error flow: it ran because run "
                a href={"/runs/" (url_path(failed))} { code { (failed) } } " failed."
            }
        }
        @if let Some(h) = handled_by {
            p.banner.warn #handled-by {
                "The error flow " code { (h.summary.flow_id) } " ran for this failure: run "
                a href={"/runs/" (url_path(h.summary.run_id.as_str()))} { code { (h.summary.run_id) } }
                " " (run_status(h.summary.status.as_str()))
            }
        }
        div.card {
            dl.facts {
                dt { "Flow" } dd { (s.flow_id) " " span.muted { "version " code { (s.flow_version.get(..12).unwrap_or(&s.flow_version)) } } }
                dt { "Conversation" } dd { a href={"/runs?conversation=" (url_query(&s.conversation_id))} { (s.conversation_id) } }
                dt { "Contact" } dd { (s.contact_id.as_deref().unwrap_or("–")) }
                dt { "Started" } dd { (time_ms(s.started_at_ms)) }
                @if let Some(f) = s.finished_at_ms { dt { "Finished" } dd { (time_ms(f)) } }
                @else { dt { "Last activity" } dd { (time_ms(s.updated_at_ms)) } }
                dt { "Duration" } dd { (duration_ms(s.duration_ms)) }
                dt { "Working" } dd #work-time { (duration_ms(work)) " " span.muted { "(Tern running the steps)" } }
                dt { "Waiting for the contact" } dd #wait-time {
                    @if run.segments.len() > 1 { (duration_ms(wait)) " " span.muted { "(between a question and its answer)" } }
                    @else if s.status != RunStatus::Paused { "no wait" }
                    @if s.status == RunStatus::Paused {
                        @if run.segments.len() > 1 { "; " }
                        "waiting since " (time_ms(s.updated_at_ms))
                    }
                }
            }
        }
        h2 { "Conversation" }
        div.chat #transcript {
            @for g in &run.segments {
                @if let Some(e) = &g.event {
                    div.bubble.contact { "Event: " (e.to_string()) }
                } @else {
                    div.bubble.contact aria-label="The contact wrote" { (g.message) }
                }
                @for r in &g.replies { div.bubble.tern aria-label="Tern replied" { (r.text) (choice_list(&r.choices)) } }
            }
        }
        @if !run.deliveries.is_empty() {
            h2 { "Deliveries" }
            table #deliveries {
                thead { tr { th { "When" } th { "Message" } th { "Status" } th { "Error" } } }
                tbody {
                    @for d in &run.deliveries {
                        tr { td { (time_ms(d.at_ms)) } td { code { (d.message_id) } } td { (d.status) } td { (d.error.as_deref().unwrap_or("")) } }
                    }
                }
            }
        }
        @for (i, g) in run.segments.iter().enumerate() { (segment(i, g)) }
    }
}

fn segment(i: usize, g: &Segment) -> Markup {
    html! {
        h2 { "Activation " (i + 1) " " (activation_status(g.status.as_str())) }
        p.muted { (time_ms(g.started_at_ms)) " – " (duration_ms(g.finished_at_ms - g.started_at_ms)) }
        div.scroll {
            table.steps {
                thead { tr { th { "Step" } th { "Type" } th { "Status" } th { "Time" } th { "Details" } } }
                tbody {
                    @for t in &g.trace {
                        @let status = t.status.as_str();
                        tr {
                            td { code { (t.step.as_str()) } }
                            td { (&*t.step_type) }
                            td { span class={"badge " (step_class(status))} { (step_status_words(status)) } }
                            td { (duration_ms(i64::try_from(t.duration_us / 1000).unwrap_or(i64::MAX))) }
                            td {
                                @if let Some(e) = &t.error { p.field-error { "[" (e.code) "] " (prose(&e.message)) } }
                                @let case = (&*t.step_type == "branch").then(|| t.detail.get("case")).flatten();
                                @match case {
                                    Some(serde_json::Value::Null) => { p.case { "No case matched: the run went on to the next step." } }
                                    Some(serde_json::Value::Number(n)) => {
                                        p.case { "Case " (n.as_u64().map_or(0, |i| i + 1)) " matched." }
                                    }
                                    _ => {}
                                }
                                @if t.detail.keys().any(|k| case.is_none() || k != "case") {
                                    details {
                                        summary { "Details (secrets masked)" }
                                        pre { (serde_json::to_string_pretty(&t.detail).unwrap_or_default()) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if !g.variables.is_empty() {
            details.variables {
                summary { "Variables at the end of this activation (secrets masked)" }
                pre { (serde_json::to_string_pretty(&g.variables).unwrap_or_default()) }
            }
        }
        @if let Some(e) = &g.error {
            p.banner.bad role="alert" {
                "Failed" @if let Some(step) = &e.step { " at step " code { (step.as_str()) } } ": [" (e.code) "] " (prose(&e.message))
            }
        }
    }
}

/// How one activation ended (a paused one is over: it asked and the run waited).
fn activation_status(status: &str) -> Markup {
    match status {
        "paused" => html! { span.badge.warn data-status="paused" { "Asked the contact" } },
        other => run_status(other),
    }
}

/// How a step went, in words.
fn step_status_words(status: &str) -> &str {
    match status {
        "ok" => "ok",
        "paused" => "asked the contact",
        "error_handled" => "failed, went to on_error",
        "failed" => "failed",
        other => other,
    }
}

fn step_class(status: &str) -> &'static str {
    match status {
        "ok" => "ok",
        "failed" => "bad",
        "error_handled" => "warn",
        _ => "muted",
    }
}

/// What a path segment escapes: everything but letters, digits, `-`, `_` and `~` (RFC 3986
/// §2.3 unreserved characters, less `.`, so that no segment is a dot segment).
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'~');

/// A value for a path segment.
pub fn url_path(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, SEGMENT).to_string()
}

/// A value for a query string.
pub fn url_query(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A reply's choices, as the numbered list a channel without buttons shows.
fn choice_list(choices: &[tern_engine::Choice]) -> maud::Markup {
    maud::html! {
        @if !choices.is_empty() { ol.choices { @for c in choices { li { (c.title) } } } }
    }
}
