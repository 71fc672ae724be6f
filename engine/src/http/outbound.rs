//! Requests on behalf of an integration: check the token may go to the URL's origin before
//! connecting, inject it, after a "token rejected" status refresh once and retry once, and
//! after a 429 with a `Retry-After` that fits in the request's time wait it out and send once
//! more.

use std::sync::Arc;

use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::retry::{MAX_WAIT, retry_after};
use super::{HttpClient, HttpError, HttpResponse, PreparedRequest, Tape, display_url};
use crate::ids::IntegrationName;
use crate::tokens::{Grant, TokenError, TokenOwner, TokenSource};

/// The HTTP client plus the token source: what steps use to reach the outside world.
#[derive(Clone)]
pub struct Outbound {
    /// The guarded client.
    pub client: HttpClient,
    /// Where integration tokens come from; `None` when no store is configured.
    pub tokens: Option<Arc<dyn TokenSource>>,
    /// A test's recording: answers come from it instead of the network, or calls are recorded
    /// into it (`tern test`, `tern test --record`). `None` in a server.
    pub tape: Option<Tape>,
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbound")
            .field("tokens", &self.tokens.is_some())
            .field("tape", &self.tape.is_some())
            .finish_non_exhaustive()
    }
}

impl Outbound {
    /// Requests through `client`, with tokens from `tokens`, on the network.
    pub fn new(client: HttpClient, tokens: Option<Arc<dyn TokenSource>>) -> Self {
        Self { client, tokens, tape: None }
    }

    /// This, answering from a recording or recording what it sends (see [`Tape`]).
    #[must_use]
    pub fn with_tape(mut self, tape: Tape) -> Self {
        self.tape = Some(tape);
        self
    }

    /// Whether answers come from a recording (nothing waits on it: retries need not sleep).
    pub fn replaying(&self) -> bool {
        matches!(self.tape, Some(Tape::Replay(_)))
    }

    /// Sends `req`, with the integration's token when `auth` names one. With a [`Tape`] that
    /// replays, the answer comes from the recording and no token is fetched.
    pub async fn execute(
        &self,
        req: &PreparedRequest,
        auth: Option<(&IntegrationName, &TokenOwner)>,
    ) -> Result<HttpResponse, HttpError> {
        let integration = auth.map(|(i, _)| i.as_str());
        match &self.tape {
            Some(Tape::Replay(replay)) => {
                // The address rules hold as in a real run: a test must not pass for a call that
                // production refuses.
                if let Some(reason) = super::guard::static_refusal(&req.url, self.client.policy().allow_private_network)
                {
                    return Err(HttpError::Denied { url: display_url(&req.url), reason });
                }
                replay
                    .respond(req, integration)
                    .map_err(|e| HttpError::NotRecorded { url: display_url(&req.url), message: e.0 })
            }
            Some(Tape::Record(recorder)) => {
                let resp = self.execute_live(req, auth).await?;
                recorder.record(req, integration, &resp);
                Ok(resp)
            }
            None => self.execute_live(req, auth).await,
        }
    }

    async fn execute_live(
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
        if let Some(Tape::Record(recorder)) = &self.tape {
            recorder.learn_origins(integration.as_str(), &grant.api_origins);
        }
        check_origin(integration, &grant, req)?;
        let started = Instant::now();
        let deadline = started + req.timeout;
        let (resp, mut waited) = self.send_limited(integration, &grant, req, deadline).await?;
        let (grant, mut resp) = if grant.refreshable && grant.refresh_on_status.contains(&resp.status.as_u16()) {
            tracing::info!(%integration, status = resp.status.as_u16(), "token rejected; refreshing once");
            let fresh = tokens.refresh(integration, owner, &grant).await?;
            check_origin(integration, &fresh, req)?;
            let (mut resp, w) = self.send_limited(integration, &fresh, req, deadline).await?;
            waited += w;
            resp.token_refreshed = true;
            (fresh, resp)
        } else {
            (grant, resp)
        };
        // The API's rate limit: its `Retry-After` holds every request of the integration, and
        // this one is sent once more when its deadline leaves room for the wait and the answer,
        // and sending it again cannot do a thing twice: an idempotent method (RFC 9110 §9.2.2),
        // or a request with an `Idempotency-Key` (the rule of a step's `retry`).
        if resp.status == reqwest::StatusCode::TOO_MANY_REQUESTS
            && let Some(wait) = retry_after(&resp.headers, SystemTime::now())
        {
            if let Some(limiter) = &grant.limiter {
                limiter.hold(wait);
            }
            let repeatable = req.method.is_idempotent() || req.headers.contains_key("idempotency-key");
            if repeatable && wait <= MAX_WAIT && started.elapsed() + wait.saturating_mul(2) < req.timeout {
                tracing::info!(%integration, wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX), "rate limited (429); waiting out Retry-After once");
                if grant.limiter.is_none() {
                    tokio::time::sleep(wait).await;
                    waited += wait;
                }
                let token_refreshed = resp.token_refreshed;
                let (again, w) = self.send_limited(integration, &grant, req, deadline).await?;
                waited += w;
                resp = again;
                resp.token_refreshed = token_refreshed;
                resp.retried_after_429 = true;
            }
        }
        resp.rate_limit_wait = (!waited.is_zero()).then_some(waited);
        Ok(resp)
    }

    /// Sends `req` with `grant` once the integration's rate limit lets it (not past
    /// `deadline`), and learns from the answer's rate-limit headers. Returns the answer and how
    /// long it waited.
    async fn send_limited(
        &self,
        integration: &IntegrationName,
        grant: &Grant,
        req: &PreparedRequest,
        deadline: Instant,
    ) -> Result<(HttpResponse, Duration), HttpError> {
        let waited = match &grant.limiter {
            Some(limiter) => limiter.acquire(integration.as_str(), deadline).await?,
            None => Duration::ZERO,
        };
        let later;
        let req = if waited.is_zero() {
            req
        } else {
            later = PreparedRequest { timeout: deadline.saturating_duration_since(Instant::now()), ..req.clone() };
            &later
        };
        let resp = self.client_for(grant).send(req, Some(&grant.credential)).await?;
        if let Some(limiter) = &grant.limiter {
            let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
            if let Some(hold) = limiter.learn(&resp.headers, now) {
                tracing::info!(%integration, hold_ms = u64::try_from(hold.as_millis()).unwrap_or(u64::MAX), "the API says its rate limit is used up; holding the integration's requests until it resets");
            }
        }
        Ok((resp, waited))
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
