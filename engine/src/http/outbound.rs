//! Requests on behalf of an integration: check the token may go to the URL's origin before
//! connecting, inject it, after a "token rejected" status refresh once and retry once, and
//! after a 429 with a `Retry-After` that fits in the request's time wait it out and send once
//! more.

use std::sync::Arc;

use super::retry::{MAX_WAIT, retry_after};
use super::{HttpClient, HttpError, HttpResponse, PreparedRequest, display_url};
use crate::ids::IntegrationName;
use crate::tokens::{Grant, TokenError, TokenOwner, TokenSource};

/// The HTTP client plus the token source: what steps use to reach the outside world.
#[derive(Clone)]
pub struct Outbound {
    /// The guarded client.
    pub client: HttpClient,
    /// Where integration tokens come from; `None` when no store is configured.
    pub tokens: Option<Arc<dyn TokenSource>>,
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbound").field("tokens", &self.tokens.is_some()).finish_non_exhaustive()
    }
}

impl Outbound {
    /// Sends `req`, with the integration's token when `auth` names one.
    pub async fn execute(
        &self,
        req: &PreparedRequest,
        auth: Option<(&IntegrationName, &TokenOwner)>,
    ) -> Result<HttpResponse, HttpError> {
        let Some((integration, owner)) = auth else {
            return self.client.send(req, None).await;
        };
        let tokens =
            self.tokens.as_ref().ok_or_else(|| TokenError::NoTokenSource { integration: integration.clone() })?;
        let grant = tokens.grant(integration, owner).await?;
        check_origin(integration, &grant, req)?;
        let started = tokio::time::Instant::now();
        let resp = self.client_for(&grant).send(req, Some(&grant.credential)).await?;
        let (grant, resp) = if grant.refreshable && grant.refresh_on_status.contains(&resp.status.as_u16()) {
            tracing::info!(%integration, status = resp.status.as_u16(), "token rejected; refreshing once");
            let fresh = tokens.refresh(integration, owner, &grant).await?;
            check_origin(integration, &fresh, req)?;
            let mut resp = self.client_for(&fresh).send(req, Some(&fresh.credential)).await?;
            resp.token_refreshed = true;
            (fresh, resp)
        } else {
            (grant, resp)
        };
        // The API's rate limit: its `Retry-After` is waited out once when the request's
        // deadline leaves room for it and the answer (a 429 is a request the server did not
        // act on: RFC 6585 §4, so sending it again repeats nothing).
        if resp.status == reqwest::StatusCode::TOO_MANY_REQUESTS
            && let Some(wait) = retry_after(&resp.headers, std::time::SystemTime::now())
        {
            let left = req.timeout.saturating_sub(started.elapsed());
            if wait <= MAX_WAIT && wait.saturating_mul(2) < left {
                tracing::info!(%integration, wait_ms = wait.as_millis() as u64, "rate limited (429); waiting out Retry-After once");
                tokio::time::sleep(wait).await;
                let remaining = PreparedRequest { timeout: left.saturating_sub(wait), ..req.clone() };
                let token_refreshed = resp.token_refreshed;
                let mut again = self.client_for(&grant).send(&remaining, Some(&grant.credential)).await?;
                again.token_refreshed = token_refreshed;
                again.rate_limit_wait = Some(wait);
                return Ok(again);
            }
        }
        Ok(resp)
    }
}

impl Outbound {
    /// The client to send a grant's requests with: the integration's own when it presents a
    /// client certificate or trusts a private CA, else the shared one.
    fn client_for<'a>(&'a self, grant: &'a Grant) -> &'a HttpClient {
        grant.client.as_ref().unwrap_or(&self.client)
    }
}

fn check_origin(integration: &IntegrationName, grant: &Grant, req: &PreparedRequest) -> Result<(), HttpError> {
    if grant.allows(&req.url) {
        return Ok(());
    }
    let origin = req.url.origin();
    Err(HttpError::OriginNotAllowed {
        integration: integration.to_string(),
        origin: origin.ascii_serialization(),
        allowed: if grant.api_origins.is_empty() {
            "empty".into()
        } else {
            grant.api_origins.iter().map(|o| o.ascii_serialization()).collect::<Vec<_>>().join(", ")
        },
    })
    .inspect_err(|_| tracing::warn!(%integration, url = %display_url(&req.url), "token not sent: origin not allowed"))
}
