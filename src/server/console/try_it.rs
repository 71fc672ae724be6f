//! `GET /try`: the console's Try it, a chat with the flows through the same web chat widget
//! visitors get (`/v1/channels/console/web/widget.js`), inside the page.
//!
//! The chat is in the built-in `console` channel
//! ([`CONSOLE_CHANNEL`](tern_engine::channel::CONSOLE_CHANNEL)), a web chat of Tern's own pages:
//! apart from every real channel's conversations, and its replies stay here, never delivered to
//! a channel's webhook. Its sessions come only with this page, which only a signed-in operator
//! gets (the channel gives none to anyone who asks, as a visitors' chat does); the page's
//! requests are its own origin's (`Sec-Fetch-Site: same-origin`). The first message can start a
//! chosen flow whatever its trigger; each reply links to its run.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use maud::html;
use serde::Deserialize;
use tern_engine::channel::{ChannelName, ChannelRef};

use super::layout::{Nav, page};
use super::{SignedIn, html};
use crate::server::AppState;

/// The page's content security policy: the console's, with the widget's script, styles and
/// requests, all of Tern's own origin.
const CSP: &str = "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self'; script-src 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Which flow the conversation starts with, and whether to start a new one.
#[derive(Debug, Default, Deserialize)]
pub struct TryQuery {
    #[serde(default)]
    flow: String,
    #[serde(default)]
    new: String,
}

/// `GET /try`.
pub async fn show(
    State(state): State<Arc<AppState>>,
    SignedIn(session): SignedIn,
    q: Result<Query<TryQuery>, QueryRejection>,
) -> Response {
    let q = q.map(|Query(q)| q).unwrap_or_default();
    let flows = state.conversations.flows();
    let flow = flows.iter().find(|l| l.flow.id.as_str() == q.flow).map(|l| l.flow.id.to_string());
    let console = ChannelName::console_channel();
    let chat = match state.channels.channel(&console).await {
        Ok(Some(c)) => c.web.clone().map(|w| (ChannelRef::of(&c).to_string(), w)),
        _ => None,
    };
    let Some((channel, web)) = chat else {
        return super::store_failed("find the console's chat", &"no console channel", Some(&session.csrf));
    };
    let now_s = tern_engine::clock::system().now_ms() / 1000;
    let (visitor, token) = web.session_key.issue(&channel, now_s);
    let body = html! {
        h1 { "Try it" }
        p.muted { "Chat with your flows through the web chat your visitors get, in the console's own channel: test replies stay here and never reach a channel's webhook. Each reply links to its run." }
        form.card #try-flow method="get" action="/try" {
            label for="try-flow-id" { "Start with" }
            select #try-flow-id name="flow" {
                option value="" { "Whichever flow's trigger matches" }
                // Error flows start for another flow's failure, never from a message.
                @for l in flows.iter().filter(|l| !matches!(l.flow.trigger, Some(tern_engine::Trigger::Error))) {
                    option value=(l.flow.id.as_str()) selected[flow.as_deref() == Some(l.flow.id.as_str())] { (l.flow.id.as_str()) }
                }
            }
            input type="hidden" name="new" value="1";
            " " button #new-conversation type="submit" { "Start a new conversation" }
        }
        div #try-chat {}
        noscript { p.banner.bad { "Try it is the web chat widget, which needs JavaScript." } }
        p.muted { "A message that no paused question waits for and no flow's trigger matches gets no reply: start with a flow above, or check the triggers on the Flows page." }
        script src="/v1/channels/console/web/widget.js" data-title="Try it" data-mount="#try-chat"
            data-session=(token) data-session-expires=(visitor.expires_at)
            data-new=[(!q.new.is_empty()).then_some("true")] data-start-flow=[flow.as_deref()]
            data-run-links="/runs/" {}
    };
    let mut r = html(page("Try it", Nav::Try, Some(&session.csrf), body)).into_response();
    r.headers_mut().insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    r
}
