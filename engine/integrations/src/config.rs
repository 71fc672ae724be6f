//! What an operator configures for an integration (everything but the client secret, which is
//! stored encrypted on its own). The provider profiles that fill in the defaults are in
//! [`profiles`](crate::profiles), the rules for what may be saved in [`rules`](crate::rules).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use url::Url;

pub use tern_engine::http::{OriginError, parse_origin};

/// How the integration authenticates its API calls.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A person authorizes once in a browser (authorization code + PKCE).
    #[default]
    AuthorizationCode,
    /// A service account: Tern fetches tokens with its client id and secret.
    ClientCredentials,
    /// A fixed API key or token taken from a named secret.
    Static,
    /// HTTP Basic authentication (RFC 7617): `username` and a password stored encrypted with
    /// the integration.
    Basic,
    /// An API key stored encrypted with the integration, sent in a header or a query
    /// parameter (`key_in`, `key_name`).
    ApiKey,
    /// A service account that signs its own token requests (RFC 7523 §2.1 JWT bearer grant,
    /// RS256): `client_id` is the issuer (Google's `client_email`), the private key is stored
    /// encrypted with the integration, tokens are fetched and refreshed like a service
    /// account's.
    JwtBearer,
}

impl Kind {
    /// The name used on the command line and in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::AuthorizationCode => "authorization_code",
            Kind::ClientCredentials => "client_credentials",
            Kind::Static => "static",
            Kind::Basic => "basic",
            Kind::ApiKey => "api_key",
            Kind::JwtBearer => "jwt_bearer",
        }
    }

    /// Whether a person must authorize it in a browser before it can be used.
    pub fn needs_authorization(self) -> bool {
        self == Kind::AuthorizationCode
    }

    /// Whether Tern fetches its tokens itself at the token endpoint (and fetches a new one
    /// when the old expires or is rejected), with no person and no refresh token.
    pub fn fetches_its_own_tokens(self) -> bool {
        matches!(self, Kind::ClientCredentials | Kind::JwtBearer)
    }

    /// Whether it uses OAuth tokens at all (the others send a fixed credential).
    pub fn uses_tokens(self) -> bool {
        matches!(self, Kind::AuthorizationCode | Kind::ClientCredentials | Kind::JwtBearer)
    }

    /// What the secret stored with the integration is, in a person's words: `client secret`,
    /// `password`, `API key` or `private key`.
    pub fn secret_name(self) -> &'static str {
        match self {
            Kind::Basic => "password",
            Kind::ApiKey => "API key",
            Kind::JwtBearer => "private key",
            _ => "client secret",
        }
    }

    /// Whether the stored secret is sent to the API origins (a password, an API key) rather
    /// than to the token URL (a client secret, a signed assertion).
    pub fn secret_goes_to_api(self) -> bool {
        matches!(self, Kind::Basic | Kind::ApiKey)
    }
}

/// An integration's request rate: `requests` per second or minute, at most `burst` at once
/// (a token bucket: [`tern_engine::rates::Rate`]). Requests beyond it wait their turn, up to
/// their step's deadline ([`tern_engine::http::limit`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Requests per [`per`](Self::per) (1–100000).
    pub requests: u32,
    /// The period.
    pub per: RatePeriod,
    /// Most requests at once (1–100000); by default a second's worth, at least 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
}

/// The period of a [`RateLimit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RatePeriod {
    /// Per second.
    Second,
    /// Per minute.
    Minute,
}

/// The most requests or burst a [`RateLimit`] may have.
pub const MAX_RATE: u32 = 100_000;

/// A rate that does not parse ([`RateLimit::parse`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{given}` is not a rate; write REQUESTS/s or REQUESTS/min, for example 5/s or 100/min (optionally `burst N`)")]
pub struct RateLimitError {
    /// What was given (at most 100 characters).
    pub given: String,
}

impl RateLimit {
    /// Parses `5/s`, `5/second`, `100/min` or `100/minute`, optionally followed by
    /// `burst N` (what [`Display`](std::fmt::Display) writes).
    ///
    /// # Errors
    /// [`RateLimitError`], with an example.
    pub fn parse(text: &str) -> Result<Self, RateLimitError> {
        let bad = || RateLimitError { given: text.chars().take(100).collect() };
        let (rate, burst) = match text.split_once("burst") {
            Some((rate, burst)) => (rate, Some(burst.trim().parse::<u32>().map_err(|_| bad())?)),
            None => (text, None),
        };
        let (n, per) = rate.trim().split_once('/').ok_or_else(bad)?;
        let requests: u32 = n.trim().parse().map_err(|_| bad())?;
        let per = match per.trim() {
            "s" | "sec" | "second" => RatePeriod::Second,
            "m" | "min" | "minute" => RatePeriod::Minute,
            _ => return Err(bad()),
        };
        Ok(Self { requests, per, burst })
    }

    /// The token bucket's rate.
    pub fn rate(&self) -> tern_engine::rates::Rate {
        let per_second = match self.per {
            RatePeriod::Second => f64::from(self.requests),
            RatePeriod::Minute => f64::from(self.requests) / 60.0,
        };
        let burst = self.burst.map_or_else(|| per_second.ceil().max(1.0), f64::from);
        tern_engine::rates::Rate { per_second, burst }
    }
}

impl std::fmt::Display for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let per = if self.per == RatePeriod::Second { "s" } else { "min" };
        write!(f, "{}/{per}", self.requests)?;
        if let Some(b) = self.burst {
            write!(f, " burst {b}")?;
        }
        Ok(())
    }
}

/// Where an API key is sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum KeyIn {
    /// In the request header `key_name`, as it is.
    #[default]
    Header,
    /// In the query parameter `key_name`; never shown in a logged or displayed URL.
    Query,
}

/// How the client authenticates at the token endpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// HTTP Basic (`client_secret_basic`).
    #[default]
    Basic,
    /// Form fields in the body (`client_secret_post`).
    Body,
}

/// Provider presets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Profile {
    /// Teamleader Focus.
    Teamleader,
    /// Zoho (any data center; set `data_center`).
    Zoho,
    /// Google APIs.
    Google,
    /// Microsoft identity platform (Graph).
    Microsoft,
    /// GitHub OAuth apps.
    Github,
    /// Intercom (US by default; `data_center` eu or au).
    Intercom,
    /// A Slack app (OAuth v2): the bot token (`xoxb-…`) is the `access_token`; with token
    /// rotation enabled it expires and comes with a refresh token.
    Slack,
    /// A Google service account (`jwt_bearer`, Google's JSON key file).
    #[serde(rename = "google-service-account")]
    GoogleServiceAccount,
    /// HubSpot (OAuth; 30-minute access tokens).
    Hubspot,
    /// Salesforce (OAuth; the org's API host is the token response's `instance_url`;
    /// `data_center` production or sandbox).
    Salesforce,
}

/// An integration's settings (no secrets).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IntegrationConfig {
    /// How tokens are obtained.
    #[serde(default)]
    pub kind: Kind,
    /// The OAuth client id.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Scopes requested.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// How scopes are joined in the authorization request (space by default; Zoho uses `,`).
    #[serde(default = "default_delimiter")]
    pub scope_delimiter: String,
    /// The authorization endpoint.
    #[serde(default)]
    pub authorization_url: Option<Url>,
    /// The token endpoint.
    #[serde(default)]
    pub token_url: Option<Url>,
    /// Origins (`https://api.example.com`) the token may be sent to.
    #[serde(default)]
    pub api_origins: Vec<String>,
    /// Client authentication at the token endpoint.
    #[serde(default)]
    pub client_auth: ClientAuth,
    /// Extra authorization request parameters (`access_type=offline`). Never `state`,
    /// `code_challenge`, `redirect_uri` or the other parameters Tern sets.
    #[serde(default)]
    pub extra_authorize_params: BTreeMap<String, String>,
    /// The provider preset, if any.
    #[serde(default)]
    pub profile: Option<Profile>,
    /// The data center for multi-DC providers (Zoho: us, eu, in, au, cn, jp, ca, sa).
    #[serde(default)]
    pub data_center: Option<String>,
    /// Statuses that mean "token rejected": refresh once and retry. Default `[401]`.
    #[serde(default = "default_refresh_on")]
    pub refresh_on_status: Vec<u16>,
    /// Refresh when the token expires within this many seconds. Default 300.
    #[serde(default = "default_skew")]
    pub refresh_skew_secs: u64,
    /// `static` kind: the secret holding the key or token.
    #[serde(default)]
    pub static_secret: Option<String>,
    /// `static` kind: the header to send it in; `Authorization` (the default) sends `Bearer …`.
    #[serde(default)]
    pub static_header: Option<String>,
    /// `basic` kind: the user name (RFC 7617 user-id; no `:`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// `api_key` kind: where the key is sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_in: Option<KeyIn>,
    /// `api_key` kind: the header or query parameter the key is sent in (`X-API-Key`,
    /// `api_key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_name: Option<String>,
    /// `jwt_bearer` kind: the `sub` claim, the user a service account acts for (Google's
    /// domain-wide delegation); without it the service account acts as itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// `jwt_bearer` kind: the key's id, sent as the assertion's `kid` header (Google's
    /// `private_key_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// Any kind: the most requests to the API origins (per process); more wait their turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// Any kind: the client certificate presented to the API origins (mutual TLS), PEM, the
    /// certificate first and then its intermediates. Its private key is stored encrypted apart
    /// from the settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<String>,
    /// Any kind: a private certificate authority (PEM) trusted for the API origins besides the
    /// public ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<String>,
    /// Events: where the account identifier is in an event body (`account.id`, `$.team_id`).
    #[serde(default)]
    pub event_identifier: Option<String>,
    /// Events: where this account's identifier is, captured at authorization: a path into the
    /// identity response when `identity_url` is set, else into the token response. An event
    /// whose identifier differs is rejected.
    #[serde(default)]
    pub account_field: Option<String>,
    /// Events: a URL (on one of the API origins) fetched with the new token right after
    /// authorization, whose JSON holds the account identifier (`/me`, `/users.me`).
    #[serde(default)]
    pub identity_url: Option<Url>,
    /// Events: the Tern secret (`tern secrets set NAME`) holding the `whsec_…` key the third
    /// party signs its events with (Standard Webhooks). Without it every event is refused
    /// (401); during a rotation the secret may hold several keys separated by spaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events_secret: Option<String>,
}

fn default_delimiter() -> String {
    " ".into()
}
fn default_refresh_on() -> Vec<u16> {
    vec![401]
}
fn default_skew() -> u64 {
    300
}

/// Parameters Tern sets in the authorization request; `extra_authorize_params` cannot override
/// them.
pub const RESERVED_AUTHORIZE_PARAMS: &[&str] =
    &["state", "code_challenge", "code_challenge_method", "redirect_uri", "response_type", "client_id", "scope"];

impl Default for IntegrationConfig {
    fn default() -> Self {
        Self {
            kind: Kind::default(),
            client_id: None,
            scopes: Vec::new(),
            scope_delimiter: default_delimiter(),
            authorization_url: None,
            token_url: None,
            api_origins: Vec::new(),
            client_auth: ClientAuth::default(),
            extra_authorize_params: BTreeMap::new(),
            profile: None,
            data_center: None,
            refresh_on_status: default_refresh_on(),
            refresh_skew_secs: default_skew(),
            static_secret: None,
            static_header: None,
            username: None,
            key_in: None,
            key_name: None,
            subject: None,
            key_id: None,
            rate_limit: None,
            client_cert: None,
            ca_cert: None,
            event_identifier: None,
            account_field: None,
            identity_url: None,
            events_secret: None,
        }
    }
}

impl IntegrationConfig {
    /// Scopes written as one text, separated by spaces or commas.
    pub fn split_scopes(text: &str) -> Vec<String> {
        text.split([' ', ',']).filter(|s| !s.is_empty()).map(str::to_string).collect()
    }

    /// The API origins as parsed origins.
    pub fn origins(&self) -> Vec<url::Origin> {
        self.api_origins.iter().filter_map(|o| parse_origin(o).ok()).collect()
    }
}

/// Why an endpoint URL typed by a person is not usable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EndpointUrlError {
    /// A path or a host without the scheme.
    #[error("`{given}` is not a whole URL; write it with its scheme, e.g. https://auth.example.com/oauth/token")]
    Relative {
        /// What was given (at most 200 characters).
        given: String,
    },
    /// Anything else the URL parser refused.
    #[error("`{given}` is not a URL ({reason})")]
    Invalid {
        /// What was given (at most 200 characters).
        given: String,
        /// The parser's reason.
        reason: String,
    },
}

/// Parses an endpoint URL typed by a person (authorization, token and identity URLs), with an
/// error in their words.
///
/// # Errors
/// [`EndpointUrlError`].
pub fn parse_endpoint(text: &str) -> Result<Url, EndpointUrlError> {
    let given: String = text.chars().take(200).collect();
    Url::parse(text.trim()).map_err(|e| match e {
        url::ParseError::RelativeUrlWithoutBase => EndpointUrlError::Relative { given },
        other => EndpointUrlError::Invalid { given, reason: other.to_string() },
    })
}
