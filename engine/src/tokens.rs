//! The seam between steps and OAuth integrations.
//!
//! The engine does not know how tokens are stored or refreshed; it asks a [`TokenSource`] for a
//! [`Grant`] (the header to inject and the origins it may go to) and, after a response whose
//! status says the token was rejected, for a refreshed one. The integrations layer implements
//! it on top of the encrypted store; the engine enforces where the header may be sent.

use std::fmt;

use async_trait::async_trait;
use reqwest::header::{HeaderName, HeaderValue};
use serde_json::{Map, Value};

use crate::ids::IntegrationName;

/// Whose token a request uses.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TokenOwner {
    /// The token the operator authorized for the whole workspace.
    Workspace,
    /// The token a contact authorized inside a conversation (`oauth_request`).
    Contact(String),
}

/// A header carrying a credential. Its value never prints.
#[derive(Clone)]
pub struct Credential {
    /// Usually `Authorization`.
    pub header: HeaderName,
    /// The header value, marked sensitive.
    pub value: HeaderValue,
}

impl Credential {
    /// A `Authorization: Bearer …` credential. Returns `None` if the token cannot be a header.
    pub fn bearer(token: &str) -> Option<Self> {
        let mut value = HeaderValue::from_str(&format!("Bearer {token}")).ok()?;
        value.set_sensitive(true);
        Some(Self { header: reqwest::header::AUTHORIZATION, value })
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credential({}: [redacted])", self.header)
    }
}

/// What a request needs to use an integration.
#[derive(Clone, Debug)]
pub struct Grant {
    /// The header to inject.
    pub credential: Credential,
    /// The only origins the credential may be sent to (shared: grants are cloned per request).
    pub api_origins: std::sync::Arc<[url::Origin]>,
    /// Response statuses that mean "token rejected": refresh once and retry.
    pub refresh_on_status: std::sync::Arc<[u16]>,
    /// Whether [`TokenSource::refresh`] can produce a new token.
    pub refreshable: bool,
    /// The stored token's version; a refresh after a rejection compares it to know whether
    /// another caller already refreshed.
    pub generation: i64,
}

impl Grant {
    /// Whether the credential may be sent to `url` (its scheme, host and port are one of the
    /// API origins), without allocating.
    pub fn allows(&self, url: &url::Url) -> bool {
        self.api_origins.iter().any(|o| match o {
            url::Origin::Tuple(scheme, host, port) => {
                url.scheme() == scheme
                    && url.port_or_known_default() == Some(*port)
                    && match (host, url.host()) {
                        (url::Host::Domain(d), Some(url::Host::Domain(u))) => d.eq_ignore_ascii_case(u),
                        (url::Host::Ipv4(a), Some(url::Host::Ipv4(b))) => *a == b,
                        (url::Host::Ipv6(a), Some(url::Host::Ipv6(b))) => *a == b,
                        _ => false,
                    }
            }
            url::Origin::Opaque(_) => false,
        })
    }
}

/// Why no token could be had. Every message says what the operator should do.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No integration of that name exists.
    #[error("integration `{integration}` does not exist; add it with `tern integrations add {integration} …`")]
    Unknown {
        /// The integration.
        integration: IntegrationName,
    },
    /// The integration exists but was never authorized (or the contact never logged in).
    #[error(
        "integration `{integration}` is not authorized{for_whom}; run `tern integrations authorize {integration}` or use the Authorize button on the integrations page"
    )]
    NotAuthorized {
        /// The integration.
        integration: IntegrationName,
        /// ` for contact …` or empty.
        for_whom: String,
    },
    /// The refresh token was rejected; a person must authorize again.
    #[error("integration `{integration}` needs to be authorized again: {reason}")]
    NeedsReauthorization {
        /// The integration.
        integration: IntegrationName,
        /// What the provider said.
        reason: String,
    },
    /// The provider's token endpoint failed in a way that may pass.
    #[error("integration `{integration}`: the token endpoint failed: {reason}")]
    Provider {
        /// The integration.
        integration: IntegrationName,
        /// What went wrong (secrets masked).
        reason: String,
    },
    /// The store failed.
    #[error("integration `{integration}`: {reason}")]
    Store {
        /// The integration.
        integration: IntegrationName,
        /// The store's error.
        reason: String,
    },
    /// No token source is configured (for example `tern run` without a data directory).
    #[error("integration `{integration}` cannot be used here: no integration store is configured")]
    NoTokenSource {
        /// The integration.
        integration: IntegrationName,
    },
}

/// Supplies and refreshes credentials for integrations.
#[async_trait]
pub trait TokenSource: Send + Sync {
    /// A credential that is valid now (refreshed first if it expires soon).
    async fn grant(&self, integration: &IntegrationName, owner: &TokenOwner) -> Result<Grant, TokenError>;

    /// A new credential after `rejected` was refused by the API (single-flight; if another
    /// caller already refreshed, returns that token without a new token request).
    async fn refresh(
        &self,
        integration: &IntegrationName,
        owner: &TokenOwner,
        rejected: &Grant,
    ) -> Result<Grant, TokenError>;

    /// Token-response metadata for `{{integration.NAME.FIELD}}` (for example Zoho's
    /// `api_domain`). Never contains a token.
    async fn metadata(&self, integration: &IntegrationName) -> Result<Map<String, Value>, TokenError>;

    /// A login link for `owner` (a contact) that, once the authorization completes, resumes
    /// `conversation`. Token sources without a browser flow answer
    /// [`TokenError::NoTokenSource`].
    async fn login_url(
        &self,
        integration: &IntegrationName,
        owner: &TokenOwner,
        conversation: &str,
    ) -> Result<url::Url, TokenError> {
        let _ = (owner, conversation);
        Err(TokenError::NoTokenSource { integration: integration.clone() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_do_not_print() {
        let c = Credential::bearer("s3cr3t-token").unwrap();
        let printed = format!("{c:?}");
        assert!(!printed.contains("s3cr3t"), "{printed}");
        assert!(c.value.is_sensitive());
    }
}
