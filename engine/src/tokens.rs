//! The seam between steps and OAuth integrations.
//!
//! The engine does not know how tokens are stored or refreshed; it asks a [`TokenSource`] for a
//! [`Grant`] (the header to inject and the origins it may go to) and, after a response whose
//! status says the token was rejected, for a refreshed one. The integrations layer implements
//! it on top of the encrypted store; the engine enforces where the header may be sent.

use std::fmt;

use async_trait::async_trait;
use reqwest::header::{HeaderName, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
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

/// Where a credential goes in a request: a header (`Authorization: Bearer …`, `Basic …`, an
/// API key's own header) or a query parameter (`?api_key=…`, as several marketing and CRM APIs
/// want it). Its value never prints.
#[derive(Clone)]
pub enum Credential {
    /// A request header.
    Header {
        /// Usually `Authorization`.
        name: HeaderName,
        /// The header value, marked sensitive.
        value: HeaderValue,
    },
    /// A query parameter, added to the URL only as the request is sent: the URL that is shown
    /// (logs, errors, history, traces) never has it, and any parameter of the same name the
    /// flow wrote is replaced.
    Query {
        /// The parameter's name.
        name: String,
        /// Its value.
        value: SecretString,
    },
}

impl Credential {
    /// A `Authorization: Bearer …` credential (RFC 6750 §2.1). Returns `None` if the token
    /// cannot be a header.
    pub fn bearer(token: &str) -> Option<Self> {
        Self::header(reqwest::header::AUTHORIZATION, &format!("Bearer {token}"))
    }

    /// An `Authorization: Basic …` credential (RFC 7617 §2): `user:password` in UTF-8, base64
    /// encoded. The encoded form is registered with the masker ([`crate::secrets::known`]).
    /// Returns `None` if the user id holds a `:` (RFC 7617 forbids it: the password would
    /// start there) or a control character.
    pub fn basic(user: &str, password: &str) -> Option<Self> {
        use base64::Engine as _;
        if user.contains(':') || user.chars().chain(password.chars()).any(char::is_control) {
            return None;
        }
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        crate::secrets::known::remember_str(&encoded);
        Self::header(reqwest::header::AUTHORIZATION, &format!("Basic {encoded}"))
    }

    /// A header credential, marked sensitive. Returns `None` if `value` cannot be a header.
    pub fn header(name: HeaderName, value: &str) -> Option<Self> {
        let mut value = HeaderValue::from_str(value).ok()?;
        value.set_sensitive(true);
        Some(Self::Header { name, value })
    }

    /// The URL to send a request for `url` to with a query credential: `url` with the
    /// parameter set. `None` for a header credential (`url` as it is).
    pub(crate) fn url_to_send(&self, url: &url::Url) -> Option<url::Url> {
        let Self::Query { name, value } = self else { return None };
        let mut sent = url.clone();
        let kept: Vec<(String, String)> =
            url.query_pairs().filter(|(k, _)| k != name).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
        sent.set_query(None);
        let mut pairs = sent.query_pairs_mut();
        pairs.extend_pairs(kept);
        pairs.append_pair(name, value.expose_secret());
        drop(pairs);
        Some(sent)
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Header { name, .. } => write!(f, "Credential({name}: [redacted])"),
            Self::Query { name, .. } => write!(f, "Credential(?{name}=[redacted])"),
        }
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
    /// The integration's own HTTP client, when it presents a client certificate or trusts a
    /// private CA ([`HttpClient::with_client_tls`](crate::http::HttpClient::with_client_tls));
    /// `None`: the shared client.
    pub client: Option<crate::http::HttpClient>,
    /// The integration's rate limit, shared by all its grants; `None`: none is kept (a token
    /// source without integrations' settings).
    pub limiter: Option<std::sync::Arc<crate::http::limit::RateLimiter>>,
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
        assert!(matches!(&c, Credential::Header { value, .. } if value.is_sensitive()));
        let q = Credential::Query { name: "api_key".into(), value: SecretString::from("s3cr3t-key".to_string()) };
        assert_eq!(format!("{q:?}"), "Credential(?api_key=[redacted])");
    }

    #[test]
    fn basic_credentials_follow_rfc_7617() {
        // RFC 7617 §2's example: Aladdin / open sesame.
        let Some(Credential::Header { name, value }) = Credential::basic("Aladdin", "open sesame") else { panic!() };
        assert_eq!(name, reqwest::header::AUTHORIZATION);
        assert_eq!(value.to_str().unwrap(), "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
        assert!(value.is_sensitive());
        // A colon in the user id would move the password's start; a control character cannot
        // be typed by a person and breaks the header.
        assert!(Credential::basic("a:b", "pw").is_none());
        assert!(Credential::basic("user", "pw\n").is_none());
        // The password may hold a colon, and UTF-8 (RFC 7617 §2.1's charset).
        assert!(Credential::basic("user", "p:w").is_some());
        let Some(Credential::Header { value, .. }) = Credential::basic("test", "123£") else { panic!() };
        assert_eq!(value.to_str().unwrap(), "Basic dGVzdDoxMjPCow==");
    }

    #[test]
    fn a_query_credential_replaces_a_parameter_of_its_name_and_keeps_the_rest() {
        let q = Credential::Query { name: "api_key".into(), value: SecretString::from("k&y=1".to_string()) };
        let url = url::Url::parse("https://api.example.com/v1/x?q=a%20b&api_key=mine&n=2").unwrap();
        let sent = q.url_to_send(&url).unwrap();
        assert_eq!(sent.as_str(), "https://api.example.com/v1/x?q=a+b&n=2&api_key=k%26y%3D1");
        let bare = url::Url::parse("https://api.example.com/v1/x").unwrap();
        assert_eq!(q.url_to_send(&bare).unwrap().as_str(), "https://api.example.com/v1/x?api_key=k%26y%3D1");
        assert!(Credential::bearer("t").unwrap().url_to_send(&bare).is_none());
    }
}
