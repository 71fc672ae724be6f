//! The admin token: the bearer token every `/v1/` admin route needs (the integrations,
//! secrets, flows and runs), checked by one extractor, [`Admin`], instead of by each handler.
//! The console signs in with the same token once and then carries a session
//! ([`super::console::SignedIn`]).

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use secrecy::ExposeSecret;

use super::AppState;
use super::error::ApiError;

/// Proof that the request carries `Authorization: Bearer <admin token>`. As a handler's first
/// argument after the state, it answers 401 ([`ApiError::admin_token_needed`]) before anything
/// else of the request is looked at.
#[derive(Clone, Copy, Debug)]
pub struct Admin;

impl FromRequestParts<Arc<AppState>> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, ApiError> {
        if state.is_admin(&parts.headers) { Ok(Admin) } else { Err(ApiError::admin_token_needed()) }
    }
}

impl AppState {
    /// Whether `headers` carry the admin token as a bearer token (compared in constant time).
    pub(crate) fn is_admin(&self, headers: &HeaderMap) -> bool {
        let given = headers.get(header::AUTHORIZATION).and_then(tern_engine::channel_auth::bearer_token).unwrap_or("");
        subtle::ConstantTimeEq::ct_eq(given.as_bytes(), self.admin_token.expose_secret().as_bytes()).into()
    }
}
