//! Requests on behalf of an integration: check the token may go to the URL's origin before
//! connecting, inject it, and after a "token rejected" status refresh once and retry once.

use std::sync::Arc;

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
        let resp = self.client.send(req, Some(&grant.credential)).await?;
        if grant.refreshable && grant.refresh_on_status.contains(&resp.status.as_u16()) {
            tracing::info!(%integration, status = resp.status.as_u16(), "token rejected; refreshing once");
            let fresh = tokens.refresh(integration, owner, &grant).await?;
            check_origin(integration, &fresh, req)?;
            let mut resp = self.client.send(req, Some(&fresh.credential)).await?;
            resp.token_refreshed = true;
            return Ok(resp);
        }
        Ok(resp)
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
