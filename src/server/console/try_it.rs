//! `GET /try` and `POST /try`: a chat box that sends messages into a test conversation through
//! the same conversation service as the channel's webhook, and shows the replies with a link
//! to each run. Plain forms (post, redirect, get): no script needed.
//!
//! A test conversation's id starts with `try-`, in the built-in `console` channel
//! ([`CONSOLE_CHANNEL`](tern_engine::channel::CONSOLE_CHANNEL)): apart from every real
//! channel's conversations (no channel's token reaches it), and its replies are shown here,
//! never delivered to a channel's webhook. Its first message can start a chosen flow whatever
//! its trigger; later messages are ordinary messages (they answer the paused run, or start the
//! flow whose trigger matches).

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;
use tern_engine::conversation::{AnswerStatus, ConversationId, Inbound, MessageId, RunQuery, Trigger};

use super::layout::{Nav, page, run_status};
use super::runs::{url_path, url_query};
use super::session::Session;
use super::{ConsoleForm, CsrfForm, SignedIn, html, store_failed};
use crate::server::AppState;

/// Most characters in one test message.
const MAX_TEXT: usize = 4096;
/// Runs of the test conversation shown (newest last).
const SHOWN_RUNS: usize = 20;

/// The stored id of the test conversation `id` (`try-…`), in the `console` channel.
fn test_conversation(id: &str) -> Option<ConversationId> {
    if !id.starts_with("try-") {
        return None;
    }
    ConversationId::of_channel(&tern_engine::channel::ChannelName::console_channel(), id).ok()
}

fn new_conversation() -> String {
    let bytes: [u8; 6] = rand::random();
    format!("try-{}", hex::encode(bytes))
}

/// Which test conversation, and the flow its first message starts.
#[derive(Debug, Default, Deserialize)]
pub struct TryQuery {
    #[serde(default)]
    conversation: String,
    #[serde(default)]
    flow: String,
}

/// The chat page, with the problem of the message just sent when there was one (rendered by
/// the `POST` itself: a problem is never read from the URL, where a link could put any text).
async fn page_handler(state: &AppState, session: &Session, q: TryQuery, problem: Option<&str>) -> Response {
    let conversation =
        if test_conversation(&q.conversation).is_some() { q.conversation.clone() } else { new_conversation() };
    let stored = test_conversation(&conversation).map(|c| c.to_string());
    let query = RunQuery { conversation_id: stored, limit: SHOWN_RUNS, ..RunQuery::default() };
    let mut runs = Vec::new();
    match state.conversations.runs(&query).await {
        Ok(page) => {
            for summary in page.runs.iter().rev() {
                match state.conversations.run(&summary.run_id).await {
                    Ok(Some(r)) => runs.push(r),
                    Ok(None) => {}
                    Err(e) => return store_failed("read a run", &e, Some(&session.csrf)),
                }
            }
        }
        Err(e) => return store_failed("list runs", &e, Some(&session.csrf)),
    }
    let flows = state.conversations.flows();
    let body = html! {
        h1 { "Try it" }
        p.muted { "Messages go to test conversation " code #conversation { (conversation) }
            " through the same service as the channel's webhook. "
            a href="/try" { "Start a new conversation" } }
        @if let Some(problem) = problem { p.banner.bad role="alert" { (super::layout::prose(problem)) } }
        div.chat #chat aria-live="polite" {
            @if runs.is_empty() { p.muted { "No messages yet." } }
            @for r in &runs {
                @for g in &r.segments {
                    @if g.event.is_none() { div.bubble.contact { (g.message) } }
                    @for reply in &g.replies { div.bubble.tern { (reply.text) (choice_list(&reply.choices)) } }
                }
                p.muted {
                    (run_status(r.summary.status.as_str())) " "
                    a href={"/runs/" (url_path(r.summary.run_id.as_str()))} { "run of " (r.summary.flow_id) }
                    @if let Some(e) = r.segments.last().and_then(|g| g.error.as_ref()) { " — " (super::layout::prose(&e.message)) }
                }
            }
        }
        @if let Some(choices) = last_choices(&runs) {
            form.card #choices method="post" action="/try" aria-label="Answer with a choice" {
                input type="hidden" name="csrf" value=(session.csrf);
                input type="hidden" name="conversation" value=(conversation);
                @for c in choices { button type="submit" name="text" value=(c.payload) { (c.title) } " " }
            }
        }
        form.card method="post" action="/try" {
            input type="hidden" name="csrf" value=(session.csrf);
            input type="hidden" name="conversation" value=(conversation);
            @if runs.is_empty() {
                label for="try-flow" { "Flow" }
                select #try-flow name="flow" {
                    option value="" { "Whichever flow's trigger matches" }
                    // Error flows start for another flow's failure, never from a message.
                    @for l in flows.iter().filter(|l| !matches!(l.flow.trigger, Some(tern_engine::Trigger::Error))) {
                        option value=(l.flow.id.as_str()) selected[q.flow == l.flow.id.as_str()] { (l.flow.id.as_str()) }
                    }
                }
            }
            label for="try-text" { "Message" }
            input #try-text type="text" name="text" required maxlength=(MAX_TEXT) autocomplete="off" autofocus;
            p { button #send type="submit" { "Send" } }
        }
    };
    html(page("Try it", Nav::Try, Some(&session.csrf), body)).into_response()
}

/// `GET /try`.
pub async fn show(
    State(state): State<Arc<AppState>>,
    SignedIn(session): SignedIn,
    q: Result<Query<TryQuery>, QueryRejection>,
) -> Response {
    page_handler(&state, &session, q.map(|Query(q)| q).unwrap_or_default(), None).await
}

/// The chat box's form.
#[derive(Debug, Deserialize)]
pub struct SendForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    conversation: String,
    #[serde(default)]
    text: String,
    #[serde(default)]
    flow: String,
}

impl CsrfForm for SendForm {
    const INCOMPLETE: &'static str = "Go back and type a message.";

    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// After a message: back to the conversation (a redirect, so that reloading does not send it
/// again), or its page with the problem when there was one.
async fn back(state: &AppState, session: &Session, conversation: &str, problem: Option<&str>) -> Response {
    match problem {
        None => Redirect::to(&format!("/try?conversation={}", url_query(conversation))).into_response(),
        Some(p) => {
            let q = TryQuery { conversation: conversation.to_string(), flow: String::new() };
            page_handler(state, session, q, Some(p)).await
        }
    }
}

/// `POST /try`.
pub async fn send(
    State(state): State<Arc<AppState>>,
    ConsoleForm { form: f, session }: ConsoleForm<SendForm>,
) -> Response {
    let Some(conversation) = test_conversation(&f.conversation) else {
        return Redirect::to("/try").into_response();
    };
    let text = f.text.trim();
    if text.is_empty() || text.chars().count() > MAX_TEXT {
        return back(
            &state,
            &session,
            &f.conversation,
            Some(&format!("Type a message of 1 to {MAX_TEXT} characters.")),
        )
        .await;
    }
    let bytes: [u8; 8] = rand::random();
    let id = format!("try-{}", hex::encode(bytes));
    let Ok(message_id) = MessageId::new(id) else { return back(&state, &session, &f.conversation, None).await };
    let mut inbound = Inbound::message(conversation, Some(message_id), text);
    inbound.contact.insert("id".into(), serde_json::Value::String("console".into()));
    if !f.flow.is_empty() {
        inbound.trigger = Trigger::Start { flow_id: f.flow.clone(), event: None };
    }
    let mut ticket = match state.conversations.submit(inbound, None) {
        Ok(t) => t,
        Err(e) => return back(&state, &session, &f.conversation, Some(&e.to_string())).await,
    };
    match ticket.wait_for(state.answer_wait()).await {
        Some(Err(e)) => back(&state, &session, &f.conversation, Some(&e.to_string())).await,
        Some(Ok(a)) if a.status == AnswerStatus::NoFlow => {
            let problem = format!(
                "No flow answered “{}”: the conversation has no paused run and no flow's trigger matches it. Choose a flow, or check the triggers on the Flows page.",
                text.chars().take(80).collect::<String>()
            );
            back(&state, &session, &f.conversation, Some(&problem)).await
        }
        Some(Ok(_)) => back(&state, &session, &f.conversation, None).await,
        None => {
            back(
                &state,
                &session,
                &f.conversation,
                Some("The run is still going; reload this page in a moment to see its replies."),
            )
            .await
        }
    }
}

/// A reply's choices, as the numbered list a channel without buttons shows.
pub(super) fn choice_list(choices: &[tern_engine::Choice]) -> maud::Markup {
    maud::html! {
        @if !choices.is_empty() { ol.choices { @for c in choices { li { (c.title) } } } }
    }
}

/// The choices of the conversation's last reply, when it has some: the buttons to answer with.
fn last_choices(runs: &[tern_engine::conversation::RunHistory]) -> Option<&[tern_engine::Choice]> {
    let last = runs.last()?.segments.last()?.replies.last()?;
    (!last.choices.is_empty()).then_some(last.choices.as_slice())
}
