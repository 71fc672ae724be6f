//! What may be saved for an integration: the one place the rules live. The command line, the
//! console and the admin API each turn what a person wrote into a [`Draft`] and save it through
//! [`Integrations::save`](crate::Integrations::save); what is wrong comes back as
//! [`Problem`]s at their fields, every one of them at once.
//!
//! The rules: the profile's defaults are filled in first and an explicit client-authentication
//! choice wins over the profile's; the endpoints are whole http(s) URLs, the token URL https
//! unless on a loopback address (RFC 6749 §3.2), the authorization URL without a fragment or a
//! parameter Tern sets (RFC 6749 §3.1); the token only goes to API origins; events need both
//! ends of the account match; a service account needs its client secret; and a stored client
//! secret only goes to the token URL's origin it was saved for.

use std::collections::BTreeSet;

use secrecy::SecretString;
use url::Url;

use crate::config::{ClientAuth, IntegrationConfig, KeyIn, Kind, RESERVED_AUTHORIZE_PARAMS, parse_origin};
use crate::problems::{Field, Problem};
use crate::store::IntegrationRecord;

/// Settings an operator wrote, before the profile's defaults and the checks.
#[derive(Clone, Debug, Default)]
pub struct Draft {
    /// The settings as written (origins may end in `/`; the profile is not applied yet).
    pub config: IntegrationConfig,
    /// The client authentication the operator chose explicitly, which wins over the profile's.
    pub client_auth: Option<ClientAuth>,
    /// A new client secret; `None` keeps the stored one.
    pub client_secret: Option<SecretString>,
    /// A new private key of the client certificate; `None` keeps the stored one.
    pub client_key: Option<SecretString>,
}

/// A draft that passed every rule: what to store.
#[derive(Clone, Debug)]
pub struct Checked {
    /// The finished settings.
    pub config: IntegrationConfig,
    /// A new client secret; `None` keeps the stored one.
    pub client_secret: Option<SecretString>,
    /// A new private key of the client certificate; `None` keeps the stored one.
    pub client_key: Option<SecretString>,
}

impl Draft {
    /// Finishes the settings and checks them against the integration as stored under the name
    /// they are saved as (`stored`, for the client-secret rules).
    ///
    /// # Errors
    /// Every [`Problem`] found.
    pub fn check(self, stored: Option<&IntegrationRecord>) -> Result<Checked, Vec<Problem>> {
        let kind = self.config.kind;
        let (config, mut problems) = match self.config.finish(self.client_auth) {
            Ok(c) => (Some(c), Vec::new()),
            Err(p) => (None, p),
        };
        let stored_secret = stored.is_some_and(|r| r.client_secret_set);
        let secret_field = Field::secret_of(kind);
        let secret_again = |why: &str| {
            Problem::at(secret_field)
                .text(format!("{why}: type the {} again (", kind.secret_name()))
                .field(secret_field)
                .text(format!("); a stored {} is only used where it was saved for", kind.secret_name()))
        };
        match &self.client_secret {
            None => {
                let needs_secret = !matches!(kind, Kind::AuthorizationCode | Kind::Static);
                if needs_secret && !stored_secret {
                    problems.push(
                        Problem::at(secret_field)
                            .text(format!(
                                "{} {} integration needs its {} (",
                                article(kind.as_str()),
                                kind.as_str(),
                                kind.secret_name()
                            ))
                            .field(secret_field)
                            .text(")"),
                    );
                }
                if let (Some(r), Some(c)) = (stored, &config)
                    && stored_secret
                {
                    if r.config.kind != c.kind && kind != Kind::Static {
                        problems.push(secret_again(&format!(
                            "the kind changed from {} to {}",
                            r.config.kind.as_str(),
                            c.kind.as_str()
                        )));
                    } else if kind.secret_goes_to_api() {
                        let before = r.config.origins();
                        if let Some(new) = c.origins().iter().find(|o| !before.contains(o)) {
                            problems.push(secret_again(&format!(
                                "the API origins now include {}",
                                new.ascii_serialization()
                            )));
                        }
                    } else if r.config.token_url.as_ref().map(Url::origin) != c.token_url.as_ref().map(Url::origin) {
                        problems.push(secret_again("the token URL moved to another host"));
                    }
                }
            }
            Some(secret) if kind == Kind::JwtBearer => {
                if let Err(e) = crate::jwt::check_private_key(secret) {
                    problems.push(Problem::at(Field::PrivateKey).text(e.to_string()));
                }
            }
            Some(secret) if kind.secret_goes_to_api() => problems.extend(sent_secret_problem(kind, secret)),
            Some(_) => {}
        }
        if let Some(c) = &config {
            problems.extend(tls_problems(c, self.client_key.as_ref(), stored));
        }
        match config {
            Some(config) if problems.is_empty() => {
                Ok(Checked { config, client_secret: self.client_secret, client_key: self.client_key })
            }
            _ => Err(problems),
        }
    }
}

impl IntegrationConfig {
    /// Finishes settings an operator wrote: trailing slashes off the origins, the profile's
    /// defaults filled in, an explicit client-authentication choice applied over the
    /// profile's, then every problem checked.
    ///
    /// # Errors
    /// Every problem; only the profile's when the profile cannot be applied.
    pub(crate) fn finish(mut self, client_auth: Option<ClientAuth>) -> Result<Self, Vec<Problem>> {
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

    /// Every problem with the settings, each at its field and saying what to do.
    pub fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        self.endpoint_problems(&mut out);
        if self.api_origins.is_empty() {
            out.push(
                Problem::at(Field::ApiOrigins)
                    .text("at least one API origin is required (")
                    .field(Field::ApiOrigins)
                    .text(" https://api.example.com): the token is only ever sent there"),
            );
        }
        for o in &self.api_origins {
            if let Err(e) = parse_origin(o) {
                out.push(Problem::at(Field::ApiOrigins).text(e.to_string()));
            }
        }
        self.event_problems(&mut out);
        if let Some(r) = &self.rate_limit {
            let fits = |n: u32| (1..=crate::config::MAX_RATE).contains(&n);
            if !fits(r.requests) || !r.burst.is_none_or(fits) {
                out.push(Problem::at(Field::RateLimit).text(format!(
                    "the rate's requests and burst must be between 1 and {} (for example 5/s)",
                    crate::config::MAX_RATE
                )));
            }
        }
        for k in self.extra_authorize_params.keys() {
            if RESERVED_AUTHORIZE_PARAMS.contains(&k.as_str()) {
                out.push(
                    Problem::at(Field::ExtraAuthorizeParams)
                        .text(format!("`{k}` is set by Tern and cannot be an extra authorization parameter")),
                );
            }
        }
        out
    }

    /// What the kind needs, and what is wrong with the authorization and token URLs.
    fn endpoint_problems(&self, out: &mut Vec<Problem>) {
        match self.kind {
            Kind::AuthorizationCode | Kind::ClientCredentials => {
                if self.client_id.as_deref().is_none_or(str::is_empty) {
                    out.push(
                        Problem::at(Field::ClientId).text("a client id is required (").field(Field::ClientId).text(")"),
                    );
                }
                if self.token_url.is_none() {
                    out.push(required(Field::TokenUrl, "a token URL"));
                }
                if self.kind == Kind::AuthorizationCode && self.authorization_url.is_none() {
                    out.push(required(Field::AuthorizationUrl, "an authorization URL"));
                }
            }
            Kind::JwtBearer => {
                if self.client_id.as_deref().is_none_or(str::is_empty) {
                    out.push(
                        Problem::at(Field::ClientId)
                            .text("a jwt_bearer integration needs its issuer, the service account's e-mail (")
                            .field(Field::ClientId)
                            .text(", or the key file's `client_email`)"),
                    );
                }
                if self.token_url.is_none() {
                    out.push(required(Field::TokenUrl, "a token URL"));
                }
                if self.subject.as_deref().is_some_and(|s| s.trim().is_empty()) {
                    out.push(Problem::at(Field::Subject).field(Field::Subject).text(" must not be empty"));
                }
            }
            Kind::Basic => {
                match self.username.as_deref() {
                    None | Some("") => out.push(
                        Problem::at(Field::Username)
                            .text("a basic integration needs its user name (")
                            .field(Field::Username)
                            .text(")"),
                    ),
                    // RFC 7617 §2: the user-id cannot contain a colon (the password starts there).
                    Some(u) if u.contains(':') || u.chars().any(char::is_control) => out.push(
                        Problem::at(Field::Username)
                            .text("the user name cannot contain `:` or control characters (RFC 7617 §2)"),
                    ),
                    Some(u) if u.len() > 256 => {
                        out.push(Problem::at(Field::Username).text("the user name is longer than 256 bytes"));
                    }
                    Some(_) => {}
                }
            }
            Kind::ApiKey => out.extend(key_name_problems(self.key_in.unwrap_or_default(), self.key_name.as_deref())),
            Kind::Static => {
                if self.static_secret.is_none() {
                    out.push(
                        Problem::at(Field::StaticSecret)
                            .text("a static integration needs ")
                            .field(Field::StaticSecret)
                            .text(" NAME (set it with `tern secrets set NAME`)"),
                    );
                }
            }
        }
        for (field, u) in [(Field::AuthorizationUrl, &self.authorization_url), (Field::TokenUrl, &self.token_url)] {
            if let Some(u) = u
                && !matches!(u.scheme(), "https" | "http")
            {
                out.push(
                    Problem::at(field).text(format!("{} must be an https URL", tern_engine::http::display_url(u))),
                );
            }
        }
        // Names that go into requests and onto terminals: no control characters (a line break
        // would end a header or a form field, an escape would drive a terminal).
        for (field, value) in [(Field::ClientId, &self.client_id), (Field::Subject, &self.subject)] {
            if value.as_deref().is_some_and(|v| v.chars().any(char::is_control)) {
                out.push(
                    Problem::at(field)
                        .field(field)
                        .text(" cannot contain control characters (a line break, a tab, an escape)"),
                );
            }
        }
        // Settings are shown (`show`, the admin API, the console): credentials have their own,
        // encrypted, fields.
        for (field, u) in [
            (Field::AuthorizationUrl, &self.authorization_url),
            (Field::TokenUrl, &self.token_url),
            (Field::IdentityUrl, &self.identity_url),
        ] {
            if let Some(u) = u
                && (!u.username().is_empty() || u.password().is_some())
            {
                out.push(Problem::at(field).text(
                    "a URL with a user name or password in it is not accepted (it would be shown with the settings); give the client's credentials as its client id and secret",
                ));
            }
        }
        // The client secret, authorization codes and refresh tokens travel to the token URL:
        // plain http only where nothing leaves the machine (RFC 6749 §3.2 requires TLS).
        if let Some(u) = &self.token_url
            && u.scheme() == "http"
            && !is_loopback(u)
        {
            out.push(Problem::at(Field::TokenUrl).text(format!(
                "{u}: the token URL must be https (the client secret and codes travel there); plain http is accepted only on a loopback address"
            )));
        }
        if let Some(u) = &self.authorization_url {
            out.extend(authorization_url_problems(u));
        }
    }

    /// Events and the identity request: both ends of the account match, paths that parse, an
    /// identity URL on an API origin.
    fn event_problems(&self, out: &mut Vec<Problem>) {
        if self.event_identifier.is_some() != self.account_field.is_some() {
            let missing = if self.event_identifier.is_none() { Field::EventIdentifier } else { Field::AccountField };
            out.push(
                Problem::at(missing)
                    .text("events need both ")
                    .field(Field::EventIdentifier)
                    .text(" (where the account is in an event) and ")
                    .field(Field::AccountField)
                    .text(" (the token-response field it must equal)"),
            );
        }
        for (field, path) in
            [(Field::EventIdentifier, &self.event_identifier), (Field::AccountField, &self.account_field)]
        {
            if let Some(p) = path
                && let Err(e) = tern_engine::mapping::ResponsePath::parse(p)
            {
                out.push(Problem::at(field).field(field).text(format!(": {e}")));
            }
        }
        if let Some(u) = &self.identity_url {
            if self.account_field.is_none() {
                out.push(
                    Problem::at(Field::IdentityUrl)
                        .field(Field::IdentityUrl)
                        .text(" needs ")
                        .field(Field::AccountField)
                        .text(" (where the identifier is in its answer)"),
                );
            }
            if !self.api_origins.is_empty() && !self.origins().contains(&u.origin()) {
                out.push(Problem::at(Field::IdentityUrl).field(Field::IdentityUrl).text(format!(
                    " {} is not on one of the API origins; the token is only ever sent there",
                    u.origin().ascii_serialization()
                )));
            }
        }
    }
}

/// "a" or "an" before a word (`an api_key integration`).
fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" }
}

/// The shortest password or API key accepted: Tern masks every secret it knows in logs, errors
/// and history, and a shorter one cannot be told apart from ordinary words.
pub const MIN_SENT_SECRET_CHARS: usize = 8;
/// The longest password or API key accepted (a header's worth).
pub const MAX_SENT_SECRET_BYTES: usize = 4096;

/// What is wrong with a password or API key that goes into every request: too short to be
/// masked, too long for a header, or holding a control character (a line break would end the
/// header it goes in).
fn sent_secret_problem(kind: Kind, secret: &SecretString) -> Option<Problem> {
    use secrecy::ExposeSecret as _;
    let value = secret.expose_secret();
    let field = Field::secret_of(kind);
    let what = kind.secret_name();
    let problem = if value.chars().count() < MIN_SENT_SECRET_CHARS {
        format!(
            "the {what} is shorter than {MIN_SENT_SECRET_CHARS} characters; Tern masks every secret in logs, errors and history, and one this short cannot be told apart from ordinary text: use a longer one"
        )
    } else if value.len() > MAX_SENT_SECRET_BYTES {
        format!("the {what} is longer than {MAX_SENT_SECRET_BYTES} bytes; no API takes one that long in a request")
    } else if value.chars().any(char::is_control) {
        format!(
            "the {what} holds a control character (a line break, a tab); it could not go into a request: check what was read"
        )
    } else {
        return None;
    };
    Some(Problem::at(field).text(problem))
}

/// What is wrong with the client certificate, its key and the private CA: a certificate
/// without its key (given now, or stored with the same certificate), a key without a
/// certificate, and PEM texts that do not load together.
fn tls_problems(c: &IntegrationConfig, key: Option<&SecretString>, stored: Option<&IntegrationRecord>) -> Vec<Problem> {
    use tern_engine::http::tls::{ClientTls, TlsError};
    let mut out = Vec::new();
    let same_cert_stored = stored.is_some_and(|r| r.client_key_set && r.config.client_cert == c.client_cert);
    match (&c.client_cert, key) {
        (Some(_), None) if !same_cert_stored => out.push(
            Problem::at(Field::ClientKey)
                .text("a client certificate needs its private key (")
                .field(Field::ClientKey)
                .text(if stored.is_some_and(|r| r.client_key_set) {
                    "); the certificate changed, so give its key again"
                } else {
                    ")"
                }),
        ),
        (None, Some(_)) => out.push(
            Problem::at(Field::ClientCert)
                .text("a private key was given without its certificate (")
                .field(Field::ClientCert)
                .text(")"),
        ),
        _ => {}
    }
    let cert = c.client_cert.as_deref().filter(|_| key.is_some());
    if let Err(e) = ClientTls::parse(cert, key, c.ca_cert.as_deref()) {
        let field = match e {
            TlsError::BadCertificate { .. } => Field::ClientCert,
            TlsError::BadCa { .. } => Field::CaCert,
            TlsError::BadIdentity { .. } => Field::ClientKey,
        };
        out.push(Problem::at(field).text(e.to_string()));
    } else if let Some(cert) = c.client_cert.as_deref().filter(|_| key.is_none())
        && let Err(e) = tern_engine::http::tls::certificate_facts(cert)
    {
        out.push(Problem::at(Field::ClientCert).text(e.to_string()));
    }
    out
}

/// What is wrong with an API key's header or parameter name: missing, not a header name, or a
/// header the HTTP client or the request's framing owns.
fn key_name_problems(key_in: KeyIn, name: Option<&str>) -> Option<Problem> {
    let Some(name) = name.filter(|n| !n.trim().is_empty()) else {
        return Some(
            Problem::at(Field::KeyName)
                .text("an api_key integration needs the name of its ")
                .text(if key_in == KeyIn::Query { "query parameter (" } else { "header (" })
                .field(Field::KeyName)
                .text(if key_in == KeyIn::Query { " api_key, for example)" } else { " X-API-Key, for example)" }),
        );
    };
    if name.len() > 100 {
        return Some(
            Problem::at(Field::KeyName).text("the key's header or parameter name is longer than 100 characters"),
        );
    }
    match key_in {
        KeyIn::Query => (name.chars().any(|c| c.is_control() || c == '&' || c == '=' || c == '#')).then(|| {
            Problem::at(Field::KeyName)
                .text(format!("`{name}` cannot be a query parameter name (no `&`, `=`, `#` or control characters)"))
        }),
        KeyIn::Header => match reqwest::header::HeaderName::from_bytes(name.as_bytes()) {
            Err(_) => Some(
                Problem::at(Field::KeyName)
                    .text(format!("`{name}` is not a header name (letters, digits and `-`, for example X-API-Key)")),
            ),
            Ok(h) if FRAMING_HEADERS.contains(&h.as_str()) => Some(Problem::at(Field::KeyName).text(format!(
                "`{name}` is set by the HTTP client itself; choose the header the API documents for its key"
            ))),
            Ok(_) => None,
        },
    }
}

/// Headers the HTTP client sets from the request itself (lower case); a key cannot go there.
const FRAMING_HEADERS: &[&str] =
    &["host", "content-length", "content-type", "transfer-encoding", "connection", "te", "upgrade", "expect", "cookie"];

/// "`what` is required (`field`, or a `profile`)".
fn required(field: Field, what: &str) -> Problem {
    Problem::at(field)
        .text(format!("{what} is required ("))
        .field(field)
        .text(", or a ")
        .field(Field::Profile)
        .text(")")
}

/// What is wrong with an authorization endpoint URL: a query parameter Tern sets itself (the
/// request would carry it twice, and a server that takes the first value would obey the URL's
/// `redirect_uri` or `response_type`), or a fragment (RFC 6749 §3.1 forbids one).
fn authorization_url_problems(u: &Url) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for (k, _) in u.query_pairs() {
        let lower = k.to_ascii_lowercase();
        if RESERVED_AUTHORIZE_PARAMS.contains(&lower.as_str()) && seen.insert(lower) {
            out.push(
                Problem::at(Field::AuthorizationUrl)
                    .text(format!("the authorization URL's query sets `{k}`, which Tern sets itself; remove it from "))
                    .field(Field::AuthorizationUrl)
                    .text(" (extra parameters go in ")
                    .field(Field::ExtraAuthorizeParams)
                    .text(" NAME=VALUE)"),
            );
        }
    }
    if u.fragment().is_some() {
        out.push(
            Problem::at(Field::AuthorizationUrl)
                .text("the authorization URL must not have a #fragment (RFC 6749 §3.1); remove it"),
        );
    }
    out
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
mod tests {
    use super::*;
    use crate::config::Profile;
    use crate::store::IntegrationStatus;
    use tern_engine::IntegrationName;

    fn text(problems: &[Problem]) -> String {
        problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
    }

    #[test]
    fn a_rate_reads_back_what_it_writes() {
        use crate::config::{RateLimit, RatePeriod};
        for text in ["5/s", "100/min", "5/s burst 10"] {
            assert_eq!(RateLimit::parse(text).unwrap().to_string(), text);
        }
        assert_eq!(
            RateLimit::parse(" 100 / minute burst 3 ").unwrap(),
            RateLimit { requests: 100, per: RatePeriod::Minute, burst: Some(3) }
        );
        for bad in ["five", "5/hour", "5/s burst", "5/s burst x", "-1/s"] {
            assert!(RateLimit::parse(bad).unwrap_err().to_string().contains("is not a rate"), "{bad}");
        }
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
        assert!(problems.iter().any(|p| p.to_string().contains("client id")), "{problems:?}");
        assert!(!text(&problems).contains("without a path"), "trailing slash is trimmed: {problems:?}");
    }

    #[test]
    fn problems_are_listed() {
        let mut c = IntegrationConfig::default();
        c.extra_authorize_params.insert("state".into(), "x".into());
        c.api_origins.push("https://api.example.com/v1".into());
        let problems = c.problems();
        let p = text(&problems);
        assert!(p.contains("client id") && p.contains("token URL") && p.contains("authorization URL"), "{p}");
        assert!(p.contains("`state` is set by Tern") && p.contains("without a path"), "{p}");
        assert!(p.contains("a client id is required (--client-id)"), "worded with options by default: {p}");
        let fields: BTreeSet<Field> = problems.iter().map(|p| p.field).collect();
        let want =
            [Field::ClientId, Field::TokenUrl, Field::AuthorizationUrl, Field::ApiOrigins, Field::ExtraAuthorizeParams];
        assert_eq!(fields, want.into_iter().collect(), "each at its field");
    }

    #[test]
    fn events_need_both_ends_and_the_problem_is_at_the_missing_one() {
        let c = IntegrationConfig {
            kind: Kind::Static,
            static_secret: Some("K".into()),
            api_origins: vec!["https://api.example".into()],
            event_identifier: Some("account.id".into()),
            identity_url: Url::parse("https://other.example/me").ok(),
            ..Default::default()
        };
        let problems = c.problems();
        let p = text(&problems);
        assert!(
            p.contains("events need both --event-identifier (where the account is in an event) and --account-field")
        );
        assert!(
            p.contains("--identity-url needs --account-field")
                && p.contains("--identity-url https://other.example is not on one of the API origins"),
            "{p}"
        );
        assert_eq!(problems[0].field, Field::AccountField);
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
        let p = text(&c.problems());
        for name in
            ["response_type", "redirect_uri", "state", "code_challenge", "Client_ID", "SCOPE", "code_challenge_method"]
        {
            assert!(p.contains(&format!("query sets `{name}`")), "{name}: {p}");
        }
        assert!(!p.contains("`tenant`"), "other parameters are the provider's business: {p}");
        c.authorization_url = Url::parse("https://as.example/authorize?tenant=t#frag").ok();
        let problems = c.problems();
        let p = text(&problems);
        assert!(p.contains("fragment") && !p.contains("query sets"), "{p}");
        assert!(problems.iter().all(|p| p.field == Field::AuthorizationUrl));
        c.authorization_url = Url::parse("https://as.example/authorize?tenant=t").ok();
        assert!(c.problems().is_empty(), "{:?}", c.problems());
    }

    fn with_token_url(u: &str) -> Result<IntegrationConfig, Vec<Problem>> {
        IntegrationConfig {
            client_id: Some("id".into()),
            authorization_url: Some(Url::parse("https://auth.example.com/authorize").unwrap()),
            token_url: Some(Url::parse(u).unwrap()),
            api_origins: vec!["https://api.example.com".into()],
            ..IntegrationConfig::default()
        }
        .finish(None)
    }

    /// Credentials in a URL would be shown with the settings; a control character in a name
    /// would end a header or drive a terminal. Both are said at their field, without the secret.
    #[test]
    fn credentials_in_urls_and_control_characters_in_names_are_refused() {
        let problems = with_token_url("https://tu:TOKPW@auth.example.com/token").unwrap_err();
        assert!(problems.iter().any(|p| p.field == Field::TokenUrl), "{problems:?}");
        assert!(
            text(&problems).contains("user name or password") && !text(&problems).contains("TOKPW"),
            "{problems:?}"
        );
        let escape = IntegrationConfig {
            client_id: Some("bot\u{1b}[2J@example.com".into()),
            ..with_token_url("https://auth.example.com/token").unwrap()
        }
        .finish(None)
        .unwrap_err();
        assert!(escape.iter().any(|p| p.field == Field::ClientId), "{escape:?}");
    }

    #[test]
    fn a_plain_http_token_url_is_refused_unless_it_is_loopback() {
        let problems = with_token_url("http://auth.example.com/token").unwrap_err();
        assert!(text(&problems).contains("the token URL must be https"), "{problems:?}");
        assert_eq!(problems[0].field, Field::TokenUrl);
        for ok in [
            "https://auth.example.com/token",
            "http://127.0.0.1:9/token",
            "http://localhost:9/token",
            "http://[::1]:9/t",
        ] {
            assert!(with_token_url(ok).is_ok(), "{ok}");
        }
    }

    fn service_account(token_url: &str) -> IntegrationConfig {
        IntegrationConfig {
            kind: Kind::ClientCredentials,
            client_id: Some("id".into()),
            token_url: Url::parse(token_url).ok(),
            api_origins: vec!["https://api.example".into()],
            ..Default::default()
        }
    }

    fn stored(config: IntegrationConfig, client_secret_set: bool) -> IntegrationRecord {
        IntegrationRecord {
            name: IntegrationName::new("svc").unwrap(),
            config,
            client_secret_set,
            client_key_set: false,
            status: IntegrationStatus::Incomplete,
            status_message: None,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn a_service_account_needs_its_secret_which_only_goes_where_it_was_saved_for() {
        let draft = |url: &str, secret: Option<&str>| Draft {
            config: service_account(url),
            client_secret: secret.map(|s| SecretString::from(s.to_string())),
            ..Draft::default()
        };
        let problems = draft("https://as.example/token", None).check(None).unwrap_err();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].field, Field::ClientSecret);
        assert_eq!(
            problems[0].to_string(),
            "a client_credentials integration needs its client secret (--client-secret-env, --client-secret-file or --client-secret-stdin)"
        );
        assert!(draft("https://as.example/token", Some("s")).check(None).is_ok());
        let saved = stored(service_account("https://as.example/token"), true);
        assert!(draft("https://as.example/other-path", None).check(Some(&saved)).is_ok(), "same origin");
        let moved = draft("https://evil.example/token", None).check(Some(&saved)).unwrap_err();
        assert_eq!(moved[0].field, Field::ClientSecret);
        assert!(moved[0].to_string().contains("type the client secret again"), "{moved:?}");
        assert!(draft("https://evil.example/token", Some("s2")).check(Some(&saved)).is_ok(), "a new secret may go");
        let mut incomplete = draft("https://as.example/token", None);
        incomplete.config.api_origins.clear();
        let fields: Vec<Field> = incomplete.check(None).unwrap_err().iter().map(|p| p.field).collect();
        assert_eq!(fields, [Field::ApiOrigins, Field::ClientSecret], "every problem at once");
        let unset = stored(service_account("https://as.example/token"), false);
        assert_eq!(draft("https://evil.example/token", None).check(Some(&unset)).unwrap_err().len(), 1);
    }
}
