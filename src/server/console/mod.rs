//! The operator console, served by `tern serve` at `/`: integrations, runs, flows and a chat
//! box to try them, behind a sign-in with the admin token.
//!
//! Server-rendered HTML (`maud` templates, which escape every value), a few lines of plain
//! JavaScript at most, nothing from a CDN, usable on a phone-sized window. The pages are thin
//! adapters over the same services as the admin API ([`Conversations`], the store, the
//! integrations service); they are not part of the API document (`/openapi.json`), which
//! describes the machine interface.
//!
//! Sign-in replaces HTTP Basic: `POST /login` with the admin token starts a session
//! ([`session`]); every page needs one (otherwise: a redirect to `/login`), and every form
//! carries the session's CSRF token. Handlers say so by their arguments, not by checks of
//! their own: a page takes [`SignedIn`], a form [`ConsoleForm`].
//!
//! [`Conversations`]: tern_engine::conversation::Conversations

mod channels;
mod flows;
mod integrations;
mod layout;
pub mod open_channels;
mod plugins;
mod runs;
pub mod session;
mod sign_in;
mod try_it;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Form, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::Markup;
use serde::de::DeserializeOwned;

use super::AppState;
pub use layout::Nav;

/// The console's routes.
pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/login", get(sign_in::form).post(sign_in::sign_in))
        .route("/logout", post(sign_in::sign_out))
        .route("/", get(integrations::show))
        .route("/integrations", post(integrations::save))
        .route("/integrations/{name}/authorize", post(integrations::authorize))
        .route("/integrations/{name}/test", post(integrations::test))
        .route("/integrations/{name}/remove", post(integrations::remove))
        .route("/runs", get(runs::list))
        .route("/runs/{id}", get(runs::show))
        .route("/flows", get(flows::list))
        .route("/flows/{id}", get(flows::show))
        .route("/channels", get(channels::list).post(channels::save))
        .route("/channels/{name}/remove", post(channels::remove))
        .route("/flows/{id}/graph.svg", get(flows::graph))
        .route("/try", get(try_it::show))
        .route("/plugins", get(plugins::list))
        .layer(axum::middleware::map_response(security_headers))
}

/// Headers every console answer carries: no framing (clickjacking), nothing loaded from
/// elsewhere, no referrer to other sites, no caching of pages that show run data. A route
/// that sets its own `Content-Security-Policy` (the flow pictures) keeps it.
async fn security_headers(mut r: Response) -> Response {
    use axum::http::{HeaderValue, header};
    let h = r.headers_mut();
    h.entry(header::CONTENT_SECURITY_POLICY).or_insert(HeaderValue::from_static(
        "default-src 'self'; style-src 'unsafe-inline'; img-src 'self'; script-src 'none'; frame-ancestors 'none'; base-uri 'none'",
    ));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    r
}

/// A signed-in browser on a console page. Without a current session the page is not shown:
/// the browser is sent to sign in, and back to this page (its path and query) after.
pub(crate) struct SignedIn(pub session::Session);

impl FromRequestParts<Arc<AppState>> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, Response> {
        let here = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        session_or_sign_in(state, &parts.headers, here).map(SignedIn).map_err(|r| *r)
    }
}

/// A console form posted by a signed-in browser with its session's CSRF token (OWASP's
/// synchronizer token pattern). Refused otherwise: without a session, to the sign-in page; a
/// form that cannot be read, 400; a wrong token, 403 ("this form is stale").
pub(crate) struct ConsoleForm<F> {
    /// The session.
    pub session: session::Session,
    /// The form's fields.
    pub form: F,
}

/// A console form's fields.
pub(crate) trait CsrfForm: DeserializeOwned + Send {
    /// What to do when the form cannot be read (after "The form was incomplete").
    const INCOMPLETE: &'static str = "Go back and try again.";
    /// The CSRF token the form carries.
    fn csrf(&self) -> &str;
}

impl<F: CsrfForm> FromRequest<Arc<AppState>> for ConsoleForm<F> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, Response> {
        let session = session_or_sign_in(state, req.headers(), "/").map_err(|r| *r)?;
        let Ok(Form(form)) = Form::<F>::from_request(req, state).await else {
            return Err(message_page(StatusCode::BAD_REQUEST, "The form was incomplete", F::INCOMPLETE, None));
        };
        if !session::csrf_matches(&session, form.csrf()) {
            return Err(message_page(
                StatusCode::FORBIDDEN,
                "This form is stale",
                "The form was opened in an earlier session or came from another site. Go back, reload the page and try again.",
                Some(&session.csrf),
            ));
        }
        Ok(Self { session, form })
    }
}

/// The current session, or the redirect to sign in and come back to `here`.
fn session_or_sign_in(state: &AppState, headers: &HeaderMap, here: &str) -> Result<session::Session, Box<Response>> {
    match state.sessions.of(headers) {
        Some((_, s)) => Ok(s),
        None => {
            let next: String = url::form_urlencoded::byte_serialize(here.as_bytes()).collect();
            Err(Box::new(Redirect::to(&format!("/login?next={next}")).into_response()))
        }
    }
}

/// A page with a heading and one paragraph (errors, confirmations).
pub(crate) fn message_page(status: StatusCode, title: &str, text: &str, csrf: Option<&str>) -> Response {
    let body = maud::html! { h1 { (title) } p { (layout::prose(text)) } p { a href="/" { "Back to the console" } } };
    (status, html(layout::page(title, Nav::None, csrf, body))).into_response()
}

/// Markup as an HTML response.
pub(crate) fn html(m: Markup) -> Html<String> {
    Html(m.into_string())
}

/// A store failure: the detail to the log, a plain page to the browser.
pub(crate) fn store_failed(what: &str, e: &dyn std::fmt::Display, csrf: Option<&str>) -> Response {
    tracing::error!(error = %e, "the console could not {what}");
    message_page(
        StatusCode::INTERNAL_SERVER_ERROR,
        "The store could not be read",
        "Tern could not read its store; the server log has the detail.",
        csrf,
    )
}
