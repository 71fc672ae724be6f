//! `GET /login`, `POST /login` (the admin token starts a session), `POST /logout`.

use std::sync::Arc;

use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use secrecy::ExposeSecret;
use serde::Deserialize;

use super::layout::{Nav, page};
use super::{html, session};
use crate::server::AppState;

/// Where to go after signing in.
#[derive(Debug, Default, Deserialize)]
pub struct Next {
    #[serde(default)]
    next: Option<String>,
}

/// Only a path on this server (never `//host` or a URL): no open redirect.
fn local(next: Option<&str>) -> &str {
    match next {
        // No whitespace or control characters at all: browsers drop tabs and newlines from
        // URLs, which would turn `/\t/evil.example` into `//evil.example`.
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.starts_with("/\\")
                && !n.chars().any(|c| c.is_control() || c.is_whitespace())
                && n.len() <= 2048 =>
        {
            n
        }
        _ => "/",
    }
}

fn form_page(status: StatusCode, next: &str, problem: Option<&str>) -> Response {
    let body = html! {
        h1 { "Sign in" }
        div.card {
            form method="post" action="/login" {
                input type="hidden" name="next" value=(next);
                label for="token" { "Admin token" }
                input #token type="password" name="token" autocomplete="current-password" required
                    aria-describedby="token-help" aria-invalid=[problem.map(|_| "true")];
                @if let Some(p) = problem { p.field-error role="alert" { (p) } }
                p #token-help .muted {
                    "The value of TERN_ADMIN_TOKEN, or the contents of admin.token in the data directory."
                }
                p { button #sign-in type="submit" { "Sign in" } }
            }
        }
    };
    (status, html(page("Sign in", Nav::None, None, body))).into_response()
}

/// `GET /login`.
pub async fn form(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    q: Result<Query<Next>, QueryRejection>,
) -> Response {
    let next = q.as_ref().ok().and_then(|q| q.next.as_deref());
    if state.sessions.of(&headers).is_some() {
        return Redirect::to(local(next)).into_response();
    }
    form_page(StatusCode::OK, local(next), None)
}

/// The sign-in form.
#[derive(Deserialize)]
pub struct SignIn {
    #[serde(default)]
    token: String,
    #[serde(default)]
    next: Option<String>,
}

/// `POST /login`.
pub async fn sign_in(
    State(state): State<Arc<AppState>>,
    extensions: axum::http::Extensions,
    form: Result<Form<SignIn>, FormRejection>,
) -> Response {
    let client = extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip());
    let Ok(Form(f)) = form else {
        return form_page(StatusCode::BAD_REQUEST, "/", Some("The form was incomplete; type the admin token."));
    };
    let next = local(f.next.as_deref()).to_string();
    if let Some(wait) = state.sessions.throttled(client) {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let mut r = form_page(
            StatusCode::TOO_MANY_REQUESTS,
            &next,
            Some(&format!("Too many wrong tokens from this address in the last minute; try again in {secs} s.")),
        );
        r.headers_mut().insert(header::RETRY_AFTER, axum::http::HeaderValue::from(secs));
        return r;
    }
    let ok: bool =
        subtle::ConstantTimeEq::ct_eq(f.token.trim().as_bytes(), state.admin_token.expose_secret().as_bytes()).into();
    if !ok {
        state.sessions.failed(client);
        tracing::warn!("console sign-in with a wrong admin token");
        return form_page(StatusCode::UNAUTHORIZED, &next, Some("That is not the admin token."));
    }
    let id = state.sessions.create();
    ([(header::SET_COOKIE, session::set_cookie(&id, state.secure_cookies))], Redirect::to(&next)).into_response()
}

/// The sign-out form.
#[derive(Deserialize)]
pub struct SignOut {
    #[serde(default)]
    csrf: String,
}

/// `POST /logout`.
pub async fn sign_out(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    form: Result<Form<SignOut>, FormRejection>,
) -> Response {
    let csrf = form.map(|Form(f)| f.csrf).unwrap_or_default();
    if let Some((id, s)) = state.sessions.of(&headers)
        && session::csrf_matches(&s, &csrf)
    {
        state.sessions.remove(&id);
    }
    ([(header::SET_COOKIE, session::clear_cookie(state.secure_cookies))], Redirect::to("/login")).into_response()
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_local_paths_are_followed_after_sign_in() {
        for (given, want) in [
            (Some("/runs?status=failed"), "/runs?status=failed"),
            (Some("//evil.example"), "/"),
            (Some("/\\evil.example"), "/"),
            (Some("https://evil.example"), "/"),
            (Some("/x\r\nSet-Cookie: a=b"), "/"),
            (Some("/\t/evil.example"), "/"),
            (Some("/\u{c}/evil.example"), "/"),
            (Some("/ /evil.example"), "/"),
            (None, "/"),
        ] {
            assert_eq!(super::local(given), want, "{given:?}");
        }
    }
}
