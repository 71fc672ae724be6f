//! Calling an integration's API by hand, the way a flow would: `tern api` (like `gh api`, the
//! quickest way to find the field path to map) and `tern integrations test` (like
//! `gh auth status`: who the token belongs to, when it expires, and one live call).
//!
//! Both go through [`Outbound`], the same path as a flow's steps: the token is sent only to the
//! integration's own API origins, an expired token is refreshed first, and a "token rejected"
//! status is refreshed and retried once.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;
use url::Url;

use super::Integrations;
use super::authorize::ACCOUNT_ID;
use crate::store::{IntegrationRecord, TokenRecord};
use tern_engine::IntegrationName;
use tern_engine::http::{HttpError, HttpResponse, Method, Outbound, PreparedRequest, RequestBody};
use tern_engine::mapping::ResponsePath;
use tern_engine::tokens::TokenOwner;

/// Why a call by hand could not be made. Every variant names the integration.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// No integration of that name.
    #[error("no integration named `{integration}`; `tern integrations list` shows them")]
    Unknown {
        /// The name.
        integration: String,
    },
    /// A path was given but the integration has no API origin to put it under.
    #[error(
        "integration `{integration}` has no API origin to send `{target}` to; pass a full URL, or add one with --api-origin"
    )]
    NoOrigin {
        /// The integration.
        integration: String,
        /// The path.
        target: String,
    },
    /// The path or URL is not usable.
    #[error("integration `{integration}`: `{target}` is not a path (`/v1/me`) or an http(s) URL: {reason}")]
    BadTarget {
        /// The integration.
        integration: String,
        /// What was given.
        target: String,
        /// Why.
        reason: String,
    },
    /// A header is not `Name: value` or not valid in HTTP.
    #[error("header `{header}` is not `Name: value` with a valid name and value")]
    BadHeader {
        /// What was given (its value left out: it may be a secret).
        header: String,
    },
    /// A header Tern sets itself.
    #[error("header `{header}` is set by Tern and cannot be given with -H")]
    ReservedHeader {
        /// The header's name.
        header: String,
    },
    /// The request failed (origin refused, token unavailable, network, timeout).
    #[error("integration `{integration}`: {source}")]
    Http {
        /// The integration.
        integration: String,
        /// What failed.
        source: HttpError,
    },
    /// The store could not be read (the detail is in the log).
    #[error("integration `{integration}`: the store could not be read; see the log")]
    Store {
        /// The integration.
        integration: String,
    },
}

/// A request made by hand.
#[derive(Clone, Debug, Default)]
pub struct ApiCall {
    /// The method.
    pub method: Method,
    /// A path (resolved against the integration's first API origin) or an absolute URL.
    pub target: String,
    /// A JSON body.
    pub body: Option<Value>,
    /// Extra headers, as `Name: value`.
    pub headers: Vec<String>,
    /// Time allowed for the whole exchange.
    pub timeout: Option<Duration>,
}

/// What `tern integrations test` found.
#[derive(Clone, Debug)]
pub struct TestReport {
    /// The integration as stored (never its secret).
    pub record: IntegrationRecord,
    /// The stored workspace token's facts, when there is one (read after the live call, so a
    /// refresh it caused shows).
    pub token: Option<TokenFacts>,
    /// The live call: the identity request, when the integration has an `identity_url`.
    pub live: Option<LiveCall>,
    /// Why no usable token could be had, when none could (e.g. the grant was revoked).
    pub token_error: Option<String>,
}

/// The non-secret facts of a stored token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenFacts {
    /// Unix seconds; `None` when it does not expire.
    pub expires_at: Option<i64>,
    /// Unix seconds when it was issued (the last authorization or refresh).
    pub obtained_at: i64,
    /// Granted scopes, when the provider said.
    pub scopes: Option<Vec<String>>,
    /// Whether a refresh token is stored.
    pub refreshable: bool,
    /// The account captured at authorization (`account_field`), if any.
    pub account: Option<String>,
}

impl TokenFacts {
    fn of(t: &TokenRecord) -> Self {
        Self {
            expires_at: t.expires_at,
            obtained_at: t.obtained_at,
            scopes: t.scopes.clone(),
            refreshable: t.refresh_token.is_some(),
            account: t.metadata.get(ACCOUNT_ID).and_then(Value::as_str).map(str::to_owned),
        }
    }
}

/// The identity request's outcome.
#[derive(Clone, Debug)]
pub struct LiveCall {
    /// The URL called.
    pub url: String,
    /// The HTTP status, when an answer came.
    pub status: Option<u16>,
    /// The account identifier (`account_field` in the answer), when configured and found.
    pub account: Option<String>,
    /// What went wrong, if anything.
    pub error: Option<String>,
}

impl Integrations {
    /// Resolves `target` for `record`: an absolute http(s) URL as it is, a path under the first
    /// API origin.
    ///
    /// # Errors
    /// [`ProbeError::BadTarget`], [`ProbeError::NoOrigin`].
    pub fn api_url(record: &IntegrationRecord, target: &str) -> Result<Url, ProbeError> {
        let bad = |reason: String| ProbeError::BadTarget {
            integration: record.name.to_string(),
            target: target.chars().take(200).collect(),
            reason,
        };
        if target.starts_with("http://") || target.starts_with("https://") {
            return Url::parse(target).map_err(|e| bad(e.to_string()));
        }
        if !target.starts_with('/') {
            return Err(bad("a path starts with `/`".into()));
        }
        let origin = record.config.origins().into_iter().next().ok_or_else(|| ProbeError::NoOrigin {
            integration: record.name.to_string(),
            target: target.chars().take(200).collect(),
        })?;
        Url::parse(&format!("{}{target}", origin.ascii_serialization())).map_err(|e| bad(e.to_string()))
    }

    async fn probe_record(&self, name: &IntegrationName) -> Result<IntegrationRecord, ProbeError> {
        match self.store.get_integration(name).await {
            Ok(Some(r)) => Ok(r),
            Ok(None) => Err(ProbeError::Unknown { integration: name.to_string() }),
            Err(e) => {
                tracing::error!(integration = %name, error = %e, "could not read an integration");
                Err(ProbeError::Store { integration: name.to_string() })
            }
        }
    }

    fn outbound(&self) -> Outbound {
        Outbound::new(self.http.clone(), Some(Arc::new(self.clone())))
    }

    /// Sends `call` with the integration's workspace token, as a flow's step would.
    ///
    /// # Errors
    /// [`ProbeError`]: unknown integration, a bad path, URL or header, or the request failed.
    pub async fn call(&self, name: &IntegrationName, call: &ApiCall) -> Result<HttpResponse, ProbeError> {
        let record = self.probe_record(name).await?;
        let url = Self::api_url(&record, &call.target)?;
        let mut headers = HeaderMap::new();
        for h in &call.headers {
            let bad = || ProbeError::BadHeader { header: h.split(':').next().unwrap_or("").chars().take(80).collect() };
            let (k, v) = h.split_once(':').ok_or_else(bad)?;
            let k = HeaderName::from_bytes(k.trim().as_bytes()).map_err(|_| bad())?;
            // Set by Tern itself, as in a flow's request (the token, the target host, framing).
            if ["host", "authorization", "content-length", "transfer-encoding", "connection"].contains(&k.as_str()) {
                return Err(ProbeError::ReservedHeader { header: k.to_string() });
            }
            let v = HeaderValue::from_str(v.trim()).map_err(|_| bad())?;
            headers.append(k, v);
        }
        let req = PreparedRequest {
            method: call.method,
            url,
            headers,
            body: call.body.clone().map(RequestBody::Json),
            timeout: call.timeout.unwrap_or(self.http.policy().default_timeout),
        };
        self.outbound()
            .execute(&req, Some((name, &TokenOwner::Workspace)))
            .await
            .map_err(|source| ProbeError::Http { integration: name.to_string(), source })
    }

    /// Checks an integration end to end: gets a usable token (refreshing it when due), calls the
    /// identity URL when there is one, and reports the token's facts.
    ///
    /// # Errors
    /// [`ProbeError::Unknown`] and [`ProbeError::Store`]; everything else is in the report.
    pub async fn test(&self, name: &IntegrationName) -> Result<TestReport, ProbeError> {
        let record = self.probe_record(name).await?;
        let mut token_error = None;
        let mut live = None;
        if let Err(e) = tern_engine::tokens::TokenSource::grant(self, name, &TokenOwner::Workspace).await {
            token_error = Some(e.to_string());
        } else if let Some(url) = record.config.identity_url.clone() {
            let call = ApiCall { target: url.to_string(), ..ApiCall::default() };
            live = Some(match self.call(name, &call).await {
                Ok(resp) => {
                    let account = record.config.account_field.as_deref().and_then(|field| {
                        let path = ResponsePath::parse(field).ok()?;
                        let body: Value = resp.json().ok()?;
                        match path.select(&body).ok()? {
                            Value::String(s) => Some(s),
                            Value::Number(n) => Some(n.to_string()),
                            _ => None,
                        }
                    });
                    let error = (!resp.status.is_success())
                        .then(|| format!("the identity URL answered {}", resp.status.as_u16()));
                    LiveCall { url: url.to_string(), status: Some(resp.status.as_u16()), account, error }
                }
                Err(e) => LiveCall { url: url.to_string(), status: None, account: None, error: Some(e.to_string()) },
            });
        }
        let token = match self.store.get_token(name, &TokenOwner::Workspace).await {
            Ok(t) => t.as_ref().map(TokenFacts::of),
            Err(e) => {
                tracing::error!(integration = %name, error = %e, "could not read a token");
                return Err(ProbeError::Store { integration: name.to_string() });
            }
        };
        // Read again: a failed refresh during the grant may have changed the status.
        let record = self.probe_record(name).await?;
        Ok(TestReport { record, token, live, token_error })
    }
}
