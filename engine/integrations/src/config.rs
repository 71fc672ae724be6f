//! What an operator configures for an integration (everything but the client secret, which is
//! stored encrypted on its own), and the provider profiles that fill in the defaults.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use url::Url;

pub use tern_engine::http::{OriginError, parse_origin};

/// How the integration gets its token.
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
}

impl Kind {
    /// The name used on the command line and in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::AuthorizationCode => "authorization_code",
            Kind::ClientCredentials => "client_credentials",
            Kind::Static => "static",
        }
    }
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
}

impl Profile {
    /// Every profile name.
    pub const NAMES: &'static [&'static str] = &["teamleader", "zoho", "google", "microsoft", "github", "intercom"];

    /// Parses a profile name.
    pub fn parse(s: &str) -> Result<Self, String> {
        Ok(match s {
            "teamleader" => Self::Teamleader,
            "zoho" => Self::Zoho,
            "google" => Self::Google,
            "microsoft" => Self::Microsoft,
            "github" => Self::Github,
            "intercom" => Self::Intercom,
            other => return Err(format!("unknown profile `{other}`; known: {}", Self::NAMES.join(", "))),
        })
    }
}

/// Zoho data centers: (code, accounts server, API domain). From Zoho's multi-DC documentation;
/// the `accounts-server` the callback names is preferred when it is one of these.
pub const ZOHO_DATA_CENTERS: &[(&str, &str, &str)] = &[
    ("us", "https://accounts.zoho.com", "https://www.zohoapis.com"),
    ("eu", "https://accounts.zoho.eu", "https://www.zohoapis.eu"),
    ("in", "https://accounts.zoho.in", "https://www.zohoapis.in"),
    ("au", "https://accounts.zoho.com.au", "https://www.zohoapis.com.au"),
    ("cn", "https://accounts.zoho.com.cn", "https://www.zohoapis.com.cn"),
    ("jp", "https://accounts.zoho.jp", "https://www.zohoapis.jp"),
    ("ca", "https://accounts.zohocloud.ca", "https://www.zohoapis.ca"),
    ("sa", "https://accounts.zoho.sa", "https://www.zohoapis.sa"),
];

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
            event_identifier: None,
            account_field: None,
            identity_url: None,
        }
    }
}

fn url(s: &str) -> Option<Url> {
    Url::parse(s).ok()
}

impl IntegrationConfig {
    /// Fills in what the profile knows and the operator did not set.
    pub fn apply_profile(&mut self) -> Result<(), String> {
        let Some(profile) = self.profile else { return Ok(()) };
        let mut set_default_param = |k: &str, v: &str| {
            self.extra_authorize_params.entry(k.to_string()).or_insert_with(|| v.to_string());
        };
        let (auth, token, api): (String, String, Vec<String>) = match profile {
            Profile::Teamleader => {
                self.client_auth = ClientAuth::Body;
                (
                    "https://focus.teamleader.eu/oauth2/authorize".into(),
                    "https://focus.teamleader.eu/oauth2/access_token".into(),
                    vec!["https://api.focus.teamleader.eu".into()],
                )
            }
            Profile::Zoho => {
                set_default_param("access_type", "offline");
                set_default_param("prompt", "consent");
                self.scope_delimiter = ",".into();
                self.client_auth = ClientAuth::Body;
                let dc = self.data_center.clone().unwrap_or_else(|| "us".into());
                let (_, accounts, api) =
                    ZOHO_DATA_CENTERS.iter().find(|(code, _, _)| *code == dc).ok_or_else(|| {
                        let codes: Vec<&str> = ZOHO_DATA_CENTERS.iter().map(|d| d.0).collect();
                        format!("unknown Zoho data center `{dc}`; known: {}", codes.join(", "))
                    })?;
                self.data_center = Some(dc);
                (format!("{accounts}/oauth/v2/auth"), format!("{accounts}/oauth/v2/token"), vec![(*api).to_string()])
            }
            Profile::Google => {
                set_default_param("access_type", "offline");
                set_default_param("prompt", "consent");
                (
                    "https://accounts.google.com/o/oauth2/v2/auth".into(),
                    "https://oauth2.googleapis.com/token".into(),
                    vec!["https://www.googleapis.com".into()],
                )
            }
            Profile::Microsoft => {
                set_default_param("response_mode", "query");
                if !self.scopes.iter().any(|s| s == "offline_access") {
                    self.scopes.push("offline_access".into());
                }
                (
                    "https://login.microsoftonline.com/common/oauth2/v2.0/authorize".into(),
                    "https://login.microsoftonline.com/common/oauth2/v2.0/token".into(),
                    vec!["https://graph.microsoft.com".into()],
                )
            }
            Profile::Github => (
                "https://github.com/login/oauth/authorize".into(),
                "https://github.com/login/oauth/access_token".into(),
                vec!["https://api.github.com".into()],
            ),
            Profile::Intercom => {
                self.scopes.clear();
                let (app, api) = match self.data_center.as_deref() {
                    None | Some("us") => ("https://app.intercom.com", "https://api.intercom.io"),
                    Some("eu") => ("https://app.eu.intercom.com", "https://api.eu.intercom.io"),
                    Some("au") => ("https://app.au.intercom.com", "https://api.au.intercom.io"),
                    Some(other) => return Err(format!("unknown Intercom data center `{other}`; known: us, eu, au")),
                };
                (format!("{app}/oauth"), format!("{api}/auth/eagle/token"), vec![api.to_string()])
            }
        };
        if self.authorization_url.is_none() {
            self.authorization_url = url(&auth);
        }
        if self.token_url.is_none() {
            self.token_url = url(&token);
        }
        if self.api_origins.is_empty() {
            self.api_origins = api;
        }
        Ok(())
    }

    /// Scopes written as one text, separated by spaces or commas.
    pub fn split_scopes(text: &str) -> Vec<String> {
        text.split([' ', ',']).filter(|s| !s.is_empty()).map(str::to_string).collect()
    }

    /// Finishes settings an operator wrote (command line or web form): trailing slashes off the
    /// origins, the profile's defaults filled in, an explicit client-authentication choice
    /// applied over the profile's, then every problem checked. `Err` lists every problem.
    pub fn finish(mut self, client_auth: Option<ClientAuth>) -> Result<Self, Vec<String>> {
        for o in &mut self.api_origins {
            *o = o.trim_end_matches('/').to_string();
        }
        self.apply_profile().map_err(|e| vec![e])?;
        if let Some(ca) = client_auth {
            self.client_auth = ca;
        }
        let problems = self.problems();
        if problems.is_empty() { Ok(self) } else { Err(problems) }
    }

    /// Every problem with the settings, each a sentence that says what to do.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        match self.kind {
            Kind::AuthorizationCode | Kind::ClientCredentials => {
                if self.client_id.as_deref().is_none_or(str::is_empty) {
                    out.push("a client id is required (--client-id)".to_string());
                }
                if self.token_url.is_none() {
                    out.push("a token URL is required (--token-url, or a --profile)".to_string());
                }
                if self.kind == Kind::AuthorizationCode && self.authorization_url.is_none() {
                    out.push("an authorization URL is required (--authorization-url, or a --profile)".to_string());
                }
            }
            Kind::Static => {
                if self.static_secret.is_none() {
                    out.push(
                        "a static integration needs --static-secret NAME (set it with `tern secrets set NAME`)"
                            .to_string(),
                    );
                }
            }
        }
        for u in [&self.authorization_url, &self.token_url].into_iter().flatten() {
            if !matches!(u.scheme(), "https" | "http") {
                out.push(format!("{u} must be an https URL"));
            }
        }
        // The client secret, authorization codes and refresh tokens travel to the token URL:
        // plain http only where nothing leaves the machine (RFC 6749 §3.2 requires TLS).
        if let Some(u) = &self.token_url
            && u.scheme() == "http"
            && !is_loopback(u)
        {
            out.push(format!(
                "{u}: the token URL must be https (the client secret and codes travel there); plain http is accepted only on a loopback address"
            ));
        }
        if self.api_origins.is_empty() {
            out.push("at least one API origin is required (--api-origin https://api.example.com): the token is only ever sent there".to_string());
        }
        for o in &self.api_origins {
            if let Err(e) = parse_origin(o) {
                out.push(e.to_string());
            }
        }
        if self.event_identifier.is_some() != self.account_field.is_some() {
            out.push("events need both --event-identifier (where the account is in an event) and --account-field (the token-response field it must equal)".to_string());
        }
        if let Some(p) = &self.event_identifier
            && let Err(e) = tern_engine::mapping::ResponsePath::parse(p)
        {
            out.push(format!("--event-identifier: {e}"));
        }
        if let Some(p) = &self.account_field
            && let Err(e) = tern_engine::mapping::ResponsePath::parse(p)
        {
            out.push(format!("--account-field: {e}"));
        }
        if let Some(u) = &self.identity_url {
            if self.account_field.is_none() {
                out.push("--identity-url needs --account-field (where the identifier is in its answer)".to_string());
            }
            if !self.api_origins.is_empty() && !self.origins().contains(&u.origin()) {
                out.push(format!(
                    "--identity-url {} is not on one of the API origins; the token is only ever sent there",
                    u.origin().ascii_serialization()
                ));
            }
        }
        if let Some(u) = &self.authorization_url {
            out.extend(authorization_url_problems(u));
        }
        for k in self.extra_authorize_params.keys() {
            if RESERVED_AUTHORIZE_PARAMS.contains(&k.as_str()) {
                out.push(format!("`{k}` is set by Tern and cannot be an extra authorization parameter"));
            }
        }
        out
    }

    /// The API origins as parsed origins.
    pub fn origins(&self) -> Vec<url::Origin> {
        self.api_origins.iter().filter_map(|o| parse_origin(o).ok()).collect()
    }
}

/// What is wrong with an authorization endpoint URL: a query parameter Tern sets itself (the
/// request would carry it twice, and a server that takes the first value would obey the URL's
/// `redirect_uri` or `response_type`), or a fragment (RFC 6749 §3.1 forbids one).
fn authorization_url_problems(u: &Url) -> Vec<String> {
    let mut out = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (k, _) in u.query_pairs() {
        let lower = k.to_ascii_lowercase();
        if RESERVED_AUTHORIZE_PARAMS.contains(&lower.as_str()) && seen.insert(lower) {
            out.push(format!(
                "the authorization URL's query sets `{k}`, which Tern sets itself; remove it from --authorization-url (extra parameters go in --param NAME=VALUE)"
            ));
        }
    }
    if u.fragment().is_some() {
        out.push("the authorization URL must not have a #fragment (RFC 6749 §3.1); remove it".to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zoho_profile_per_data_center() {
        let mut c =
            IntegrationConfig { profile: Some(Profile::Zoho), data_center: Some("eu".into()), ..Default::default() };
        c.apply_profile().unwrap();
        assert_eq!(c.token_url.unwrap().as_str(), "https://accounts.zoho.eu/oauth/v2/token");
        assert_eq!(c.api_origins, vec!["https://www.zohoapis.eu"]);
        assert_eq!(c.scope_delimiter, ",");
        assert_eq!(c.extra_authorize_params.get("access_type").map(String::as_str), Some("offline"));
        let mut ca =
            IntegrationConfig { profile: Some(Profile::Zoho), data_center: Some("ca".into()), ..Default::default() };
        ca.apply_profile().unwrap();
        assert_eq!(ca.authorization_url.unwrap().as_str(), "https://accounts.zohocloud.ca/oauth/v2/auth");
        let mut bad =
            IntegrationConfig { profile: Some(Profile::Zoho), data_center: Some("mars".into()), ..Default::default() };
        assert!(bad.apply_profile().unwrap_err().contains("mars"));
    }

    #[test]
    fn finish_applies_profile_then_explicit_choices() {
        let c = IntegrationConfig {
            profile: Some(Profile::Teamleader),
            client_id: Some("id".into()),
            scopes: IntegrationConfig::split_scopes("contacts, deals companies"),
            ..Default::default()
        };
        let c = c.finish(Some(ClientAuth::Basic)).unwrap();
        assert_eq!(c.client_auth, ClientAuth::Basic, "explicit choice wins over the profile");
        assert_eq!(c.scopes, vec!["contacts", "deals", "companies"]);
        let bad = IntegrationConfig { api_origins: vec!["https://api.example.com/".into()], ..Default::default() };
        let problems = bad.finish(None).unwrap_err();
        assert!(problems.iter().any(|p| p.contains("client id")), "{problems:?}");
        assert!(!problems.iter().any(|p| p.contains("without a path")), "trailing slash is trimmed: {problems:?}");
    }

    #[test]
    fn problems_are_listed() {
        let mut c = IntegrationConfig::default();
        c.extra_authorize_params.insert("state".into(), "x".into());
        c.api_origins.push("https://api.example.com/v1".into());
        let p = c.problems().join("\n");
        assert!(p.contains("client id") && p.contains("token URL") && p.contains("authorization URL"), "{p}");
        assert!(p.contains("`state` is set by Tern") && p.contains("without a path"), "{p}");
    }

    #[test]
    fn reserved_parameters_in_the_authorization_url_are_refused_by_name() {
        let mut c = IntegrationConfig {
            client_id: Some("id".into()),
            token_url: Url::parse("https://as.example/token").ok(),
            api_origins: vec!["https://api.example".into()],
            ..Default::default()
        };
        c.authorization_url = Url::parse(
            "https://as.example/authorize?response_type=token&redirect_uri=https%3A%2F%2Fevil.example&state=x&code_challenge=y&Client_ID=z&SCOPE=a&code_challenge_method=plain&tenant=t",
        )
        .ok();
        let p = c.problems().join("\n");
        for name in
            ["response_type", "redirect_uri", "state", "code_challenge", "Client_ID", "SCOPE", "code_challenge_method"]
        {
            assert!(p.contains(&format!("query sets `{name}`")), "{name}: {p}");
        }
        assert!(!p.contains("`tenant`"), "other parameters are the provider's business: {p}");
        c.authorization_url = Url::parse("https://as.example/authorize?tenant=t#frag").ok();
        let p = c.problems().join("\n");
        assert!(p.contains("fragment") && !p.contains("query sets"), "{p}");
        c.authorization_url = Url::parse("https://as.example/authorize?tenant=t").ok();
        assert!(c.problems().is_empty(), "{:?}", c.problems());
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

/// Whether the URL's host is a loopback address or `localhost` (RFC 6761 §6.3).
fn is_loopback(u: &Url) -> bool {
    match u.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => {
            d.eq_ignore_ascii_case("localhost") || d.to_ascii_lowercase().ends_with(".localhost")
        }
        None => false,
    }
}

#[cfg(test)]
mod token_url_tls {
    use super::*;

    fn with_token_url(u: &str) -> Result<IntegrationConfig, Vec<String>> {
        IntegrationConfig {
            client_id: Some("id".into()),
            authorization_url: Some(Url::parse("https://auth.example.com/authorize").unwrap()),
            token_url: Some(Url::parse(u).unwrap()),
            api_origins: vec!["https://api.example.com".into()],
            ..IntegrationConfig::default()
        }
        .finish(None)
    }

    #[test]
    fn a_plain_http_token_url_is_refused_unless_it_is_loopback() {
        let problems = with_token_url("http://auth.example.com/token").unwrap_err();
        assert!(problems.iter().any(|p| p.contains("the token URL must be https")), "{problems:?}");
        for ok in [
            "https://auth.example.com/token",
            "http://127.0.0.1:9/token",
            "http://localhost:9/token",
            "http://[::1]:9/t",
        ] {
            assert!(with_token_url(ok).is_ok(), "{ok}");
        }
    }
}
