//! The web chat's routes (`/v1/channels/{name}/web/…`): adapters over
//! [`tern_engine::web_chat`] (sessions, origins, limits, the transcript) and the conversation
//! service.
//!
//! - `GET widget.js`, `GET widget.css`: the widget, served by Tern (no CDN, no build step), to
//!   any page: a script is public. Only a web channel's name serves them.
//! - `POST sessions`: a new visitor session (a signed token naming a new conversation).
//! - `POST messages`: a visitor's message, made durable and answered `202` at once; its
//!   replies reach the page through the transcript.
//! - `GET history`: the transcript, for a page that was reloaded.
//! - `GET stream`: the transcript as it grows, as Server-Sent Events ([`stream`]).
//!
//! Every route but the two files answers only a request whose `Origin` is one of the
//! channel's (a browser sends it with every cross-origin request), with the CORS headers that
//! let that page read the answer; another origin gets `403` without them, so its page reads
//! nothing. Every route but `sessions` needs `Authorization: Bearer <session>`, and the
//! conversation is the one named inside the signed session, never one the request names.

mod stream;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tern_engine::channel::{Channel, ChannelName, ChannelRef};
use tern_engine::conversation::{ConversationId, Inbound, MessageId};
use tern_engine::web_chat::{self, Entry, Session, WebChat, WebLimits};

use super::AppState;
use super::error::ApiError;
use super::openapi::ErrorBody;

pub use stream::{__path_get_stream, get_stream};

/// The widget's script.
const WIDGET_JS: &str = include_str!("widget.js");
/// The widget's styles.
const WIDGET_CSS: &str = include_str!("widget.css");

/// What the web chat's routes share in one process: the rate limits, the open streams, and the
/// proxies whose `X-Forwarded-For` names the visitor.
#[derive(Debug)]
pub struct WebEdge {
    /// Per address and per session ([`WebLimits`]).
    pub limits: WebLimits,
    /// One permit per open event stream, [`web_chat::MAX_STREAMS`] in all.
    pub streams: Arc<tokio::sync::Semaphore>,
    /// The open streams by session and by address.
    pub slots: Arc<web_chat::StreamSlots>,
    /// Reverse proxies in front of Tern (`--trusted-proxy`): for a request from one of them,
    /// the visitor's address is the last one of `X-Forwarded-For` that is not theirs.
    pub trusted_proxies: Vec<std::net::IpAddr>,
}

impl Default for WebEdge {
    fn default() -> Self {
        Self {
            limits: WebLimits::default(),
            streams: Arc::new(tokio::sync::Semaphore::new(web_chat::MAX_STREAMS)),
            slots: Arc::default(),
            trusted_proxies: Vec::new(),
        }
    }
}

impl WebEdge {
    /// The visitor's address for the limits ([`web_chat::address_key`]): the peer's, or behind
    /// a trusted proxy the last entry of `X-Forwarded-For` that is not a trusted proxy's (an
    /// address, with a port or not); what stands before it is the client's own words and is
    /// never read. An entry there that is no address (`unknown`) counts as the proxy itself.
    pub fn visitor_address(&self, peer: Option<std::net::IpAddr>, headers: &HeaderMap) -> String {
        let Some(peer) = peer else { return "unknown".into() };
        if !self.trusted_proxies.contains(&peer) {
            return web_chat::address_key(peer);
        }
        let entries: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .map(|v| v.to_str().unwrap_or(""))
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        for entry in entries.into_iter().rev() {
            let ip =
                entry.parse::<std::net::IpAddr>().ok().or_else(|| entry.parse::<SocketAddr>().ok().map(|a| a.ip()));
            match ip {
                Some(ip) if self.trusted_proxies.contains(&ip) => {}
                Some(ip) => return web_chat::address_key(ip),
                None => return web_chat::address_key(peer),
            }
        }
        web_chat::address_key(peer)
    }
}

/// The answer to a request of a page whose origin the channel does not allow, or to a channel
/// that is no web chat: `403` without CORS headers, so that a page reads nothing of it.
fn not_for_this_page() -> Response {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "this web chat answers only the pages of its allowed origins (`tern channels add NAME --kind web --origin https://…`)",
    )
    .code("origin-not-allowed")
    .into_response()
}

/// The one answer to a request without a valid session.
fn no_session() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "this needs the visitor's session: `Authorization: Bearer <session>` from POST …/web/sessions; a session ends after 7 days",
    )
    .code("unauthorized")
}

/// `Retry-After` from milliseconds to wait.
fn slow_down(wait_ms: i64, what: &str) -> ApiError {
    let secs = u32::try_from((wait_ms + 999) / 1000).unwrap_or(u32::MAX).max(1);
    ApiError::new(StatusCode::TOO_MANY_REQUESTS, format!("too many {what}; try again in {secs} s"))
        .code("rate-limited")
        .retry_after_secs(secs)
}

/// A request from a page of one of a web channel's origins, with its channel. The channel is
/// looked up once; the origin is checked before anything else.
pub struct WebRequest {
    /// The channel.
    pub channel: Arc<Channel>,
    /// Its web chat settings.
    pub web: WebChat,
    /// The page's origin, as the browser sent it (`None` for a request of Tern's own page
    /// that a browser sends without it: a same-origin `GET`).
    pub origin: Option<HeaderValue>,
    /// The caller's address (the limits' key).
    pub address: String,
    /// The request's headers.
    pub headers: HeaderMap,
    /// The raw body (at most 64 KiB).
    pub body: axum::body::Bytes,
}

impl WebRequest {
    /// The channel as its conversations and sessions name it (with its incarnation).
    fn channel_ref(&self) -> String {
        ChannelRef::of(&self.channel).to_string()
    }

    /// The visitor's session from `Authorization: Bearer …`.
    fn session(&self) -> Result<Session, ApiError> {
        // The scheme's name is case-insensitive (RFC 9110 §11.1).
        let token = self
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token)
            .ok_or_else(no_session)?;
        let now_s = tern_engine::clock::system().now_ms() / 1000;
        self.web.session_key.verify(&self.channel_ref(), token.trim(), now_s).map_err(|e| {
            tracing::info!(channel = %self.channel.name, reason = %e, "refused a web chat session");
            no_session()
        })
    }

    /// The conversation of `session`.
    fn conversation(&self, session: &Session) -> Result<ConversationId, ApiError> {
        Ok(ConversationId::for_channel(&ChannelRef::of(&self.channel), &session.id)?)
    }

    /// `response` with the CORS headers that let the page read it (Fetch standard, CORS
    /// protocol: `Access-Control-Allow-Origin` naming the origin, `Vary: Origin`).
    fn answer(&self, response: Response) -> Response {
        match &self.origin {
            Some(origin) => with_cors(response, origin),
            None => response,
        }
    }
}

fn with_cors(mut response: Response, origin: &HeaderValue) -> Response {
    let h = response.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    h.insert(header::VARY, HeaderValue::from_static("Origin"));
    // The widget waits as long as a 429 says.
    h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("retry-after"));
    response
}

/// Logs a request refused because its page's origin is not the channel's, with what to do: a
/// browser asks first (the preflight), so that this is the one trace of a page that shows a
/// chat that cannot reach its server.
fn log_other_origin(channel: &ChannelName, web: &WebChat, headers: &HeaderMap) {
    let origin: String = headers
        .get(header::ORIGIN)
        .map(|o| String::from_utf8_lossy(o.as_bytes()).chars().take(100).collect())
        .unwrap_or_else(|| "(none)".into());
    let allowed: Vec<&str> = web.origins.iter().map(|o| o.as_str()).collect();
    tracing::info!(
        channel = %channel,
        origin = %origin.escape_debug(),
        allowed = %allowed.join(" "),
        "refused a web chat request from a page of another origin; if that page should have the chat, add its origin: `tern channels add {channel} --kind web --update --origin …` with each origin"
    );
}

/// The web channel called `name`, if there is one.
async fn web_channel(state: &AppState, name: &str) -> Option<(Arc<Channel>, WebChat)> {
    let name = ChannelName::new(name).ok()?;
    match state.channels.channel(&name).await {
        Ok(Some(c)) => {
            let web = c.web.clone()?;
            Some((c, web))
        }
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(channel = %name, error = %e, "could not read a web channel");
            None
        }
    }
}

impl FromRequest<Arc<AppState>> for WebRequest {
    type Rejection = Response;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let name = <Path<std::collections::HashMap<String, String>> as FromRequestParts<_>>::from_request_parts(
            &mut parts, state,
        )
        .await
        .map(|Path(p)| p.get("name").cloned().unwrap_or_default())
        .unwrap_or_default();
        let Some((channel, web)) = web_channel(state, &name).await else { return Err(not_for_this_page()) };
        let header_text = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
        if !web.allows_page(header_text("origin"), header_text("sec-fetch-site")) {
            log_other_origin(&channel.name, &web, &parts.headers);
            return Err(not_for_this_page());
        }
        let origin = parts.headers.get(header::ORIGIN).cloned();
        // The console's Try it: only while the operator is signed in (the page's requests carry
        // the console's cookie), so that signing out ends its sessions too.
        if web.same_origin && state.sessions.of(&parts.headers).is_none() {
            return Err(no_session().into_response());
        }
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(a)| a.ip());
        let address = state.web.visitor_address(peer, &parts.headers);
        let body = super::channel_request::read_body(body)
            .await
            .map_err(|r| if let Some(o) = &origin { with_cors(r, o) } else { r })?;
        Ok(Self { channel, web, origin, address, headers: parts.headers, body })
    }
}

/// `OPTIONS` of every web chat route but the files: the CORS preflight. An allowed origin
/// gets `204` with the methods and headers the widget uses; another gets `403`.
pub async fn preflight(
    State(state): State<Arc<AppState>>,
    Path(params): Path<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Response {
    let name = params.iter().find(|(k, _)| k == "name").map_or("", |(_, v)| v.as_str());
    let Some((channel, web)) = web_channel(&state, name).await else { return not_for_this_page() };
    let Some(origin) = headers.get(header::ORIGIN).filter(|o| o.to_str().is_ok_and(|o| web.allows(o))) else {
        log_other_origin(&channel.name, &web, &headers);
        return not_for_this_page();
    };
    let mut r = StatusCode::NO_CONTENT.into_response();
    let h = r.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST"));
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("authorization, content-type, last-event-id"),
    );
    h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    with_cors(r, origin)
}

/// A static file of the widget, for a web channel's name only.
async fn asset(state: &AppState, channel: &str, content_type: &'static str, body: &'static str) -> Response {
    if web_channel(state, channel).await.is_none() {
        return not_for_this_page();
    }
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300")),
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*")),
        ],
        body,
    )
        .into_response()
}

/// The widget's script.
#[utoipa::path(
    get,
    path = "/v1/channels/{name}/web/widget.js",
    tag = "web chat",
    description = "The web chat widget: put `<script src=\"…/v1/channels/NAME/web/widget.js\" async></script>` on a page of the channel's allowed origins (`tern channels add NAME --kind web --origin …` prints the tag).",
    params(("name" = String, Path, description = "The web channel's name")),
    responses(
        (status = 200, description = "The script", content_type = "text/javascript", body = String),
        (status = 403, description = "No web channel of that name", body = ErrorBody),
    )
)]
pub async fn get_widget_js(State(state): State<Arc<AppState>>, Path(name): Path<String>) -> Response {
    asset(&state, &name, "text/javascript; charset=utf-8", WIDGET_JS).await
}

/// The widget's styles.
#[utoipa::path(
    get,
    path = "/v1/channels/{name}/web/widget.css",
    tag = "web chat",
    params(("name" = String, Path, description = "The web channel's name")),
    responses(
        (status = 200, description = "The styles (the widget loads them itself)", content_type = "text/css", body = String),
        (status = 403, description = "No web channel of that name", body = ErrorBody),
    )
)]
pub async fn get_widget_css(State(state): State<Arc<AppState>>, Path(name): Path<String>) -> Response {
    asset(&state, &name, "text/css; charset=utf-8", WIDGET_CSS).await
}

/// A new session: the token the widget keeps and sends with every request.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NewSession {
    /// The token (`Authorization: Bearer …`).
    pub session: String,
    /// When it ends, Unix seconds.
    pub expires_at: i64,
    /// The visitor's conversation id in the channel.
    pub conversation_id: String,
}

/// A new visitor session.
#[utoipa::path(
    post,
    path = "/v1/channels/{name}/web/sessions",
    tag = "web chat",
    description = "A new visitor session of the web channel: a signed token that names a new conversation and ends after 7 days. Only pages of the channel's allowed origins (`Origin`) get one.",
    params(("name" = String, Path, description = "The web channel's name")),
    responses(
        (status = 201, description = "The session", body = NewSession),
        (status = 403, description = "Not a page of an allowed origin, or no web channel of that name (`origin-not-allowed`)", body = ErrorBody),
        (status = 429, description = "Too many sessions from this address (`rate-limited`, `Retry-After`)", body = ErrorBody),
    )
)]
pub async fn post_session(State(state): State<Arc<AppState>>, req: WebRequest) -> Response {
    if req.web.same_origin {
        // The console's Try it: its sessions come with the signed-in console's page only.
        return not_for_this_page();
    }
    let now_ms = tern_engine::clock::system().now_ms();
    if let Err(wait) = state.web.limits.session(req.channel.name.as_str(), &req.address, now_ms) {
        return req.answer(slow_down(wait, "new chats from this address").into_response());
    }
    let (session, token) = req.web.session_key.issue(&req.channel_ref(), now_ms / 1000);
    let body = NewSession { session: token, expires_at: session.expires_at, conversation_id: session.id };
    req.answer((StatusCode::CREATED, axum::Json(body)).into_response())
}

/// How long a message request waits for the run before it answers `202` (the replies come
/// through the transcript either way): long enough for the checks made when the message is
/// taken up, short enough not to hold a connection during a slow API call.
const TAKE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// A visitor's message.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct WebMessage {
    /// The widget's id of the message: a retry with the same id is the same message (its
    /// replies are not repeated).
    pub message_id: String,
    /// What the flow receives (`{{message.text}}`), at most 2000 characters.
    pub text: String,
    /// What the transcript shows instead (a pressed button's title; at most 200 characters);
    /// also `{{message.metadata.web.display}}`.
    #[serde(default)]
    pub display: Option<String>,
    /// The console's Try it only: start this flow with the message, whatever its trigger.
    #[serde(default)]
    pub start_flow: Option<String>,
}

/// The message was taken: its replies reach the page through the stream.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Taken {
    /// The message's id.
    pub message_id: String,
}

/// A visitor's message in their conversation.
#[utoipa::path(
    post,
    path = "/v1/channels/{name}/web/messages",
    tag = "web chat",
    description = "A visitor's message. Answered once its run finished (within 2 s) or once it is stored; its replies are written to the conversation's transcript (read them with `…/web/stream`). Sending the same `message_id` again is safe: the message runs once.",
    params(("name" = String, Path, description = "The web channel's name")),
    request_body(content = WebMessage, content_type = "application/json"),
    security(("web_session" = [])),
    responses(
        (status = 200, description = "Taken, and its run finished (its replies are in the transcript)", body = Taken),
        (status = 202, description = "Taken: its run goes on, and the message is stored", body = Taken),
        (status = 400, description = "A bad message id, or a body that is not JSON", body = ErrorBody),
        (status = 401, description = "No valid session (`unauthorized`): make a new one", body = ErrorBody),
        (status = 403, description = "Not a page of an allowed origin (`origin-not-allowed`)", body = ErrorBody),
        (status = 409, description = "The message id was used for another message (`message-id-reused`)", body = ErrorBody),
        (status = 422, description = "An empty or too long text (`bad-message`)", body = ErrorBody),
        (status = 429, description = "Too many messages (`rate-limited`, `conversation-busy`; `Retry-After`)", body = ErrorBody),
        (status = 503, description = "Overloaded or shutting down (`Retry-After`)", body = ErrorBody),
    )
)]
pub async fn post_message(State(state): State<Arc<AppState>>, req: WebRequest) -> Response {
    let answer = take_message(&state, &req).await.unwrap_or_else(IntoResponse::into_response);
    req.answer(answer)
}

async fn take_message(state: &AppState, req: &WebRequest) -> Result<Response, ApiError> {
    let session = req.session()?;
    let msg: WebMessage = super::channel_request::json_body(&req.headers, &req.body).await.map_err(|e| {
        ApiError::new(
            e.status(),
            format!(
                "{}; send {{\"message_id\": \"…\", \"text\": \"…\"}} as JSON",
                super::rejection_text(&e.body_text())
            ),
        )
    })?;
    let bad = |m: String| ApiError::unprocessable(m).code("bad-message");
    let chars = msg.text.chars().count();
    if msg.text.chars().all(|c| c.is_whitespace() || tern_engine::is_hidden_char(c)) {
        return Err(bad("the message is empty; write something".into()));
    }
    if chars > web_chat::MAX_TEXT_CHARS {
        return Err(bad(format!("the message has {chars} characters; at most {} fit", web_chat::MAX_TEXT_CHARS)));
    }
    let display = msg.display.as_deref().map(str::trim).filter(|d| !d.is_empty());
    if display.is_some_and(|d| d.chars().count() > web_chat::MAX_DISPLAY_CHARS) {
        return Err(bad(format!("`display` has more than {} characters", web_chat::MAX_DISPLAY_CHARS)));
    }
    if display.is_some_and(|d| d.chars().any(tern_engine::is_hidden_char)) {
        return Err(bad(
            "`display` has an invisible or text-direction character: it must show what was chosen as it is".into(),
        ));
    }
    let now_ms = tern_engine::clock::system().now_ms();
    if let Err(wait) = state.web.limits.message(req.channel.name.as_str(), &req.address, &session.id, now_ms) {
        return Err(slow_down(wait, "messages"));
    }
    if msg.start_flow.is_some() && !req.web.same_origin {
        return Err(bad(
            "`start_flow` is for the console's Try it only; a visitor's message starts the flow whose trigger matches"
                .into(),
        ));
    }
    let message_id = MessageId::from_channel(&msg.message_id)?;
    let mut inbound = Inbound::message(req.conversation(&session)?, Some(message_id.clone()), msg.text);
    inbound.contact.insert("id".into(), json!(session.id));
    let mut web = Map::new();
    if let Some(origin) = req.origin.as_ref().and_then(|o| o.to_str().ok()) {
        web.insert("origin".into(), json!(origin));
    }
    if let Some(d) = display {
        web.insert("display".into(), json!(d));
    }
    inbound.metadata.insert("web".into(), Value::Object(web));
    if let Some(flow_id) = msg.start_flow.filter(|f| !f.is_empty()) {
        inbound.trigger = tern_engine::conversation::Trigger::Start { flow_id, event: None };
    }
    state.metrics.message();
    let mut ticket = state.conversations.submit(inbound, None)?;
    let taken = axum::Json(Taken { message_id: message_id.to_string() });
    // A quick run is done within the wait; a refusal found when the message is taken up (its
    // id already answered with other words) is answered here, not lost.
    if let Some(done) = ticket.wait_for(state.answer_wait().min(TAKE_WAIT)).await {
        done?;
        return Ok((StatusCode::OK, taken).into_response());
    }
    // Durable before it is answered: a crash now cannot lose it (its replies come later).
    state.conversations.accept(&mut ticket).await?;
    Ok((StatusCode::ACCEPTED, taken).into_response())
}

/// The transcript so far.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct History {
    /// Its entries, oldest first (at most 200: read on from `last_seq` with `?after=`).
    pub entries: Vec<Entry>,
    /// The last entry's `seq` (0 when there is none).
    pub last_seq: i64,
}

/// Where to read from.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct After {
    /// Entries after this `seq` (default 0: from the start).
    #[serde(default)]
    pub after: Option<i64>,
}

/// The visitor's conversation so far.
#[utoipa::path(
    get,
    path = "/v1/channels/{name}/web/history",
    tag = "web chat",
    description = "The transcript of the visitor's conversation (what they wrote and were told), for a page that was reloaded.",
    params(("name" = String, Path, description = "The web channel's name"), After),
    security(("web_session" = [])),
    responses(
        (status = 200, description = "The transcript", body = History),
        (status = 401, description = "No valid session (`unauthorized`)", body = ErrorBody),
        (status = 403, description = "Not a page of an allowed origin (`origin-not-allowed`)", body = ErrorBody),
        (status = 503, description = "Overloaded, or the store is down (`Retry-After`)", body = ErrorBody),
    )
)]
pub async fn get_history(
    State(state): State<Arc<AppState>>,
    axum::extract::Query(after): axum::extract::Query<After>,
    req: WebRequest,
) -> Response {
    let answer = async {
        let session = req.session()?;
        let conversation = req.conversation(&session)?;
        let entries =
            state.conversations.transcript(&conversation, after.after.unwrap_or(0).max(0)).await.map_err(|e| {
                ApiError::internal("read a web chat transcript", &e, "the conversation could not be read; try again")
            })?;
        let last_seq = entries.last().map_or(after.after.unwrap_or(0), |e| e.seq);
        Ok::<_, ApiError>(super::mask::masked_json(StatusCode::OK, &History { entries, last_seq }, None))
    }
    .await
    .unwrap_or_else(IntoResponse::into_response);
    req.answer(answer)
}
