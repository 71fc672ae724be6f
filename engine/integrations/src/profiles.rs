//! Provider profiles as data: one [`ProfileSpec`] per [`Profile`] in [`PROFILES`], holding
//! everything Tern knows about the provider — its endpoints per region (data center), how it
//! wants the client to authenticate, how scopes are joined, the authorization parameters it
//! needs for a refresh token, and its quirks (a callback that names the region's accounts
//! server, `expires_in` sometimes in milliseconds).
//!
//! The code that uses a profile (filling defaults in [`IntegrationConfig::apply_profile`],
//! following the callback's accounts server in the authorization, reading a token response)
//! asks the table; a new provider is a new row, not a new `match` arm in three files.

use url::Url;

use crate::config::{ClientAuth, IntegrationConfig, Kind, Profile};
use crate::problems::{Field, Problem};

/// One region (data center) of a provider: where to authorize, where to get tokens and where
/// its API is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    /// The code an operator sets as `data_center` (`eu`); empty for single-region providers.
    pub code: &'static str,
    /// The authorization endpoint.
    pub authorization_url: &'static str,
    /// The token endpoint.
    pub token_url: &'static str,
    /// The API origin the token is sent to.
    pub api_origin: &'static str,
    /// The accounts server a callback may name (`accounts-server=`, Zoho) to say the person's
    /// account lives in this region: the code is then exchanged here.
    pub accounts_server: Option<&'static str>,
}

/// What a profile does with the scopes an operator set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScopeRule {
    /// Used as given.
    AsGiven,
    /// Used as given, with this scope added when missing (Microsoft's `offline_access`, without
    /// which no refresh token is issued).
    Include(&'static str),
    /// The provider takes no scopes in the authorization request (Intercom: they are set in
    /// the app); any given are dropped.
    Unused,
}

/// A provider preset.
#[derive(Clone, Copy, Debug)]
pub struct ProfileSpec {
    /// The profile.
    pub profile: Profile,
    /// Its name on the command line, in the API and in the form (`zoho`).
    pub name: &'static str,
    /// The provider's name in messages (`Zoho`).
    pub label: &'static str,
    /// Its regions; the first is the default. A single region ignores `data_center`.
    pub regions: &'static [Region],
    /// The client authentication it requires, when it requires one.
    pub client_auth: Option<ClientAuth>,
    /// How it joins scopes, when not with a space.
    pub scope_delimiter: Option<&'static str>,
    /// What it does with scopes.
    pub scopes: ScopeRule,
    /// Authorization parameters it needs (for a refresh token, mostly); an operator's own value
    /// for the same parameter wins.
    pub authorize_params: &'static [(&'static str, &'static str)],
    /// Whether `expires_in` may come in milliseconds: a value over two days, without
    /// `expires_in_sec` beside it, is divided by 1000 (Zoho once sent it so).
    pub expires_in_may_be_ms: bool,
    /// The kind of integration it is, when it is not an authorization-code one
    /// (`google-service-account`: `jwt_bearer`).
    pub kind: Option<Kind>,
    /// A field of the token response that names this account's own API origin, and the host
    /// suffixes it may have (Salesforce's `instance_url`, on `.salesforce.com` or
    /// `.force.com`): the token also goes there. An answer whose field is not an https URL on
    /// those hosts adds nothing.
    pub api_origin_from_token: Option<(&'static str, &'static [&'static str])>,
    /// How long a token answered without `expires_in` is used before it is refreshed
    /// (seconds; Salesforce's tokens live as long as the org's session timeout, two hours
    /// by default, and say nothing): refreshed by age as well as after a 401. `None`: such a
    /// token does not expire.
    pub assumed_lifetime_secs: Option<u64>,
}

/// A Zoho region: the accounts server (authorization and token endpoints, and what the callback
/// names) and the API domain. From Zoho's multi-DC documentation.
macro_rules! zoho {
    ($code:literal, $accounts:literal, $api:literal) => {
        Region {
            code: $code,
            authorization_url: concat!($accounts, "/oauth/v2/auth"),
            token_url: concat!($accounts, "/oauth/v2/token"),
            api_origin: $api,
            accounts_server: Some($accounts),
        }
    };
}

/// An Intercom region: the app (authorization) and the API (token endpoint and origin).
macro_rules! intercom {
    ($code:literal, $app:literal, $api:literal) => {
        Region {
            code: $code,
            authorization_url: concat!($app, "/oauth"),
            token_url: concat!($api, "/auth/eagle/token"),
            api_origin: $api,
            accounts_server: None,
        }
    };
}

/// A provider with one region.
macro_rules! single {
    ($authorize:literal, $token:literal, $api:literal) => {
        &[Region {
            code: "",
            authorization_url: $authorize,
            token_url: $token,
            api_origin: $api,
            accounts_server: None,
        }]
    };
}

/// Every profile, in the order they are offered.
pub const PROFILES: &[ProfileSpec] = &[
    ProfileSpec {
        profile: Profile::Teamleader,
        name: "teamleader",
        label: "Teamleader",
        regions: single!(
            "https://focus.teamleader.eu/oauth2/authorize",
            "https://focus.teamleader.eu/oauth2/access_token",
            "https://api.focus.teamleader.eu"
        ),
        client_auth: Some(ClientAuth::Body),
        scope_delimiter: None,
        scopes: ScopeRule::AsGiven,
        authorize_params: &[],
        expires_in_may_be_ms: false,
        kind: None,
        api_origin_from_token: None,
        assumed_lifetime_secs: None,
    },
    ProfileSpec {
        profile: Profile::Zoho,
        name: "zoho",
        label: "Zoho",
        regions: &[
            zoho!("us", "https://accounts.zoho.com", "https://www.zohoapis.com"),
            zoho!("eu", "https://accounts.zoho.eu", "https://www.zohoapis.eu"),
            zoho!("in", "https://accounts.zoho.in", "https://www.zohoapis.in"),
            zoho!("au", "https://accounts.zoho.com.au", "https://www.zohoapis.com.au"),
            zoho!("cn", "https://accounts.zoho.com.cn", "https://www.zohoapis.com.cn"),
            zoho!("jp", "https://accounts.zoho.jp", "https://www.zohoapis.jp"),
            zoho!("ca", "https://accounts.zohocloud.ca", "https://www.zohoapis.ca"),
            zoho!("sa", "https://accounts.zoho.sa", "https://www.zohoapis.sa"),
        ],
        client_auth: Some(ClientAuth::Body),
        scope_delimiter: Some(","),
        scopes: ScopeRule::AsGiven,
        authorize_params: &[("access_type", "offline"), ("prompt", "consent")],
        expires_in_may_be_ms: true,
        kind: None,
        api_origin_from_token: None,
        assumed_lifetime_secs: None,
    },
    ProfileSpec {
        profile: Profile::Google,
        name: "google",
        label: "Google",
        regions: single!(
            "https://accounts.google.com/o/oauth2/v2/auth",
            "https://oauth2.googleapis.com/token",
            "https://www.googleapis.com"
        ),
        client_auth: None,
        scope_delimiter: None,
        scopes: ScopeRule::AsGiven,
        authorize_params: &[("access_type", "offline"), ("prompt", "consent")],
        expires_in_may_be_ms: false,
        kind: None,
        api_origin_from_token: None,
        assumed_lifetime_secs: None,
    },
    ProfileSpec {
        profile: Profile::Microsoft,
        name: "microsoft",
        label: "Microsoft",
        regions: single!(
            "https://login.microsoftonline.com/common/oauth2/v2.0/authorize",
            "https://login.microsoftonline.com/common/oauth2/v2.0/token",
            "https://graph.microsoft.com"
        ),
        client_auth: None,
        scope_delimiter: None,
        scopes: ScopeRule::Include("offline_access"),
        authorize_params: &[("response_mode", "query")],
        expires_in_may_be_ms: false,
        kind: None,
        api_origin_from_token: None,
        assumed_lifetime_secs: None,
    },
    ProfileSpec {
        profile: Profile::Github,
        name: "github",
        label: "GitHub",
        regions: single!(
            "https://github.com/login/oauth/authorize",
            "https://github.com/login/oauth/access_token",
            "https://api.github.com"
        ),
        client_auth: None,
        scope_delimiter: None,
        scopes: ScopeRule::AsGiven,
        authorize_params: &[],
        expires_in_may_be_ms: false,
        kind: None,
        api_origin_from_token: None,
        assumed_lifetime_secs: None,
    },
    ProfileSpec {
        profile: Profile::Intercom,
        name: "intercom",
        label: "Intercom",
        regions: &[
            intercom!("us", "https://app.intercom.com", "https://api.intercom.io"),
            intercom!("eu", "https://app.eu.intercom.com", "https://api.eu.intercom.io"),
            intercom!("au", "https://app.au.intercom.com", "https://api.au.intercom.io"),
        ],
        client_auth: None,
        scope_delimiter: None,
        scopes: ScopeRule::Unused,
        authorize_params: &[],
        expires_in_may_be_ms: false,
        kind: None,
        api_origin_from_token: None,
        assumed_lifetime_secs: None,
    },
    // api.slack.com/authentication/oauth-v2: the bot's scopes in `scope`, comma-separated; the
    // bot token is the answer's `access_token` (`xoxb-…`), refreshable when token rotation is
    // on (api.slack.com/authentication/rotation).
    ProfileSpec {
        profile: Profile::Slack,
        name: "slack",
        label: "Slack",
        regions: single!(
            "https://slack.com/oauth/v2/authorize",
            "https://slack.com/api/oauth.v2.access",
            "https://slack.com"
        ),
        client_auth: Some(ClientAuth::Body),
        scope_delimiter: Some(","),
        scopes: ScopeRule::AsGiven,
        authorize_params: &[],
        expires_in_may_be_ms: false,
        kind: None,
        api_origin_from_token: None,
        assumed_lifetime_secs: None,
    },
    ProfileSpec {
        profile: Profile::GoogleServiceAccount,
        name: "google-service-account",
        label: "Google service account",
        regions: &[Region {
            code: "",
            authorization_url: "",
            token_url: "https://oauth2.googleapis.com/token",
            api_origin: "https://www.googleapis.com",
            accounts_server: None,
        }],
        client_auth: None,
        scope_delimiter: None,
        scopes: ScopeRule::AsGiven,
        authorize_params: &[],
        expires_in_may_be_ms: false,
        kind: Some(Kind::JwtBearer),
        api_origin_from_token: None,
        assumed_lifetime_secs: None,
    },
    // HubSpot: access tokens last 30 minutes and are refreshed before they expire (the
    // 5-minute skew), never on a 401; the client id and secret go in the body.
    ProfileSpec {
        profile: Profile::Hubspot,
        name: "hubspot",
        label: "HubSpot",
        regions: single!(
            "https://app.hubspot.com/oauth/authorize",
            "https://api.hubapi.com/oauth/v1/token",
            "https://api.hubapi.com"
        ),
        client_auth: Some(ClientAuth::Body),
        scope_delimiter: None,
        scopes: ScopeRule::AsGiven,
        authorize_params: &[],
        expires_in_may_be_ms: false,
        kind: None,
        api_origin_from_token: None,
        assumed_lifetime_secs: None,
    },
    // Salesforce: each org has its own API host, named by the token response's
    // `instance_url`; tokens come without `expires_in` and are refreshed after a 401. The
    // `sandbox` region signs in at test.salesforce.com.
    ProfileSpec {
        profile: Profile::Salesforce,
        name: "salesforce",
        label: "Salesforce",
        regions: &[
            Region {
                code: "production",
                authorization_url: "https://login.salesforce.com/services/oauth2/authorize",
                token_url: "https://login.salesforce.com/services/oauth2/token",
                api_origin: "https://login.salesforce.com",
                accounts_server: None,
            },
            Region {
                code: "sandbox",
                authorization_url: "https://test.salesforce.com/services/oauth2/authorize",
                token_url: "https://test.salesforce.com/services/oauth2/token",
                api_origin: "https://test.salesforce.com",
                accounts_server: None,
            },
        ],
        client_auth: Some(ClientAuth::Body),
        scope_delimiter: None,
        scopes: ScopeRule::Include("refresh_token"),
        authorize_params: &[],
        expires_in_may_be_ms: false,
        kind: None,
        api_origin_from_token: Some(("instance_url", &[".salesforce.com", ".force.com"])),
        assumed_lifetime_secs: Some(3600),
    },
];
/// A profile name that is not in [`PROFILES`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown profile `{given}`; known: {}", Profile::names().collect::<Vec<_>>().join(", "))]
pub struct UnknownProfile {
    /// What was given (at most 100 characters).
    pub given: String,
}

impl Profile {
    /// Its row in [`PROFILES`].
    pub fn spec(self) -> &'static ProfileSpec {
        // Every variant has a row: the `every_profile_has_one_row` test checks it.
        PROFILES.iter().find(|s| s.profile == self).unwrap_or(&PROFILES[0])
    }

    /// Its name (`zoho`), as on the command line and in the API.
    pub fn as_str(self) -> &'static str {
        self.spec().name
    }

    /// Every profile name, in the order they are offered.
    pub fn names() -> impl Iterator<Item = &'static str> {
        PROFILES.iter().map(|s| s.name)
    }

    /// Parses a profile name.
    ///
    /// # Errors
    /// [`UnknownProfile`] for a name not in [`PROFILES`].
    pub fn parse(s: &str) -> Result<Self, UnknownProfile> {
        PROFILES
            .iter()
            .find(|p| p.name == s)
            .map(|p| p.profile)
            .ok_or_else(|| UnknownProfile { given: s.chars().take(100).collect() })
    }
}

impl ProfileSpec {
    /// The region for an operator's `data_center` (the first region when none is set; any
    /// value for a single-region provider).
    ///
    /// # Errors
    /// A [`Problem`] at [`Field::DataCenter`] naming the known codes.
    pub fn region(&self, data_center: Option<&str>) -> Result<&'static Region, Problem> {
        let [first, ..] = self.regions else {
            return Err(Problem::at(Field::DataCenter).text(format!("{} has no regions", self.label)));
        };
        if self.regions.len() == 1 {
            return Ok(first);
        }
        let code = data_center.unwrap_or(first.code);
        self.regions.iter().find(|r| r.code == code).ok_or_else(|| {
            let known: Vec<&str> = self.regions.iter().map(|r| r.code).collect();
            Problem::at(Field::DataCenter).text(format!(
                "unknown {} data center `{code}`; known: {}",
                self.label,
                known.join(", ")
            ))
        })
    }

    /// The region whose accounts server a callback named (a trailing slash ignored); `None`
    /// when it is not one of this provider's.
    pub fn region_of_accounts_server(&self, server: &str) -> Option<&'static Region> {
        let server = server.trim_end_matches('/');
        self.regions.iter().find(|r| r.accounts_server == Some(server))
    }

    /// The API origin a token response names for its account ([`Self::api_origin_from_token`]):
    /// an https URL whose host ends in one of the allowed suffixes (as a whole label:
    /// `evilsalesforce.com` is not `.salesforce.com`); `None` otherwise.
    pub fn api_origin_of(&self, metadata: &serde_json::Map<String, serde_json::Value>) -> Option<url::Origin> {
        let (field, suffixes) = self.api_origin_from_token?;
        let url = Url::parse(metadata.get(field)?.as_str()?).ok()?;
        let host = url.host_str()?.to_ascii_lowercase();
        (url.scheme() == "https" && suffixes.iter().any(|s| host.ends_with(s))).then(|| url.origin())
    }

    /// Whether callbacks of this provider may name an accounts server.
    pub fn follows_accounts_server(&self) -> bool {
        self.regions.iter().any(|r| r.accounts_server.is_some())
    }
}

impl IntegrationConfig {
    /// Fills in what the profile knows and the operator did not set: its authorization
    /// parameters, client authentication, scope rule and delimiter, and its region's endpoints
    /// and API origin.
    ///
    /// # Errors
    /// A [`Problem`] at [`Field::DataCenter`] for a data center the provider does not have.
    pub fn apply_profile(&mut self) -> Result<(), Problem> {
        let Some(profile) = self.profile else { return Ok(()) };
        let spec = profile.spec();
        if let Some(kind) = spec.kind {
            // The profile is of one kind: the default kind becomes it, another is a mistake.
            if self.kind == Kind::AuthorizationCode {
                self.kind = kind;
            } else if self.kind != kind {
                return Err(Problem::at(Field::Profile).text(format!(
                    "the {} profile is a {} integration, not {}",
                    spec.name,
                    kind.as_str(),
                    self.kind.as_str()
                )));
            }
        }
        for (k, v) in spec.authorize_params {
            self.extra_authorize_params.entry((*k).to_string()).or_insert_with(|| (*v).to_string());
        }
        if let Some(d) = spec.scope_delimiter {
            self.scope_delimiter = d.to_string();
        }
        if let Some(ca) = spec.client_auth {
            self.client_auth = ca;
        }
        match spec.scopes {
            ScopeRule::AsGiven => {}
            ScopeRule::Include(scope) => {
                if !self.scopes.iter().any(|s| s == scope) {
                    self.scopes.push(scope.to_string());
                }
            }
            ScopeRule::Unused => self.scopes.clear(),
        }
        let region = spec.region(self.data_center.as_deref())?;
        if spec.regions.len() > 1 {
            self.data_center = Some(region.code.to_string());
        }
        if self.authorization_url.is_none() {
            self.authorization_url = Url::parse(region.authorization_url).ok();
        }
        if self.token_url.is_none() {
            self.token_url = Url::parse(region.token_url).ok();
        }
        if self.api_origins.is_empty() {
            self.api_origins = vec![region.api_origin.to_string()];
        }
        Ok(())
    }

    /// Moves the integration to `region` (the one a callback's accounts server named): its
    /// data center and endpoints, and its API origin unless that is already one of them.
    pub fn move_to(&mut self, region: &Region) {
        self.data_center = Some(region.code.to_string());
        self.token_url = Url::parse(region.token_url).ok();
        self.authorization_url = Url::parse(region.authorization_url).ok();
        if !self.api_origins.iter().any(|o| o == region.api_origin) {
            self.api_origins = vec![region.api_origin.to_string()];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_profile_has_one_row_whose_name_is_its_serde_name_and_whose_urls_parse() {
        for p in [
            Profile::Teamleader,
            Profile::Zoho,
            Profile::Google,
            Profile::Microsoft,
            Profile::Github,
            Profile::Intercom,
            Profile::Slack,
            Profile::GoogleServiceAccount,
            Profile::Hubspot,
            Profile::Salesforce,
        ] {
            assert_eq!(PROFILES.iter().filter(|s| s.profile == p).count(), 1, "{p:?}");
            assert_eq!(serde_json::to_value(p).unwrap(), p.as_str(), "{p:?}");
            assert_eq!(Profile::parse(p.as_str()), Ok(p));
        }
        assert_eq!(PROFILES.len(), 10);
        for spec in PROFILES {
            assert!(!spec.regions.is_empty(), "{}", spec.name);
            // A service account's profile has no browser sign-in.
            let browser = spec.kind.is_none_or(Kind::needs_authorization);
            for r in spec.regions {
                assert_eq!(r.authorization_url.is_empty(), !browser, "{}", spec.name);
                for u in [r.authorization_url, r.token_url, r.api_origin].into_iter().filter(|u| !u.is_empty()) {
                    assert!(Url::parse(u).is_ok_and(|u| u.scheme() == "https"), "{}: {u}", spec.name);
                }
                assert!(crate::config::parse_origin(r.api_origin).is_ok(), "{}: {}", spec.name, r.api_origin);
            }
        }
        assert!(Profile::parse("mars").unwrap_err().to_string().contains("known: teamleader, zoho"));
    }

    #[test]
    fn a_profile_of_one_kind_sets_it_or_refuses_another() {
        let mut c = IntegrationConfig { profile: Some(Profile::GoogleServiceAccount), ..Default::default() };
        c.apply_profile().unwrap();
        assert_eq!(c.kind, Kind::JwtBearer);
        assert_eq!(c.token_url.unwrap().as_str(), "https://oauth2.googleapis.com/token");
        assert!(c.authorization_url.is_none());
        let mut c = IntegrationConfig {
            profile: Some(Profile::GoogleServiceAccount),
            kind: Kind::ClientCredentials,
            ..Default::default()
        };
        let p = c.apply_profile().unwrap_err();
        assert_eq!(p.field, Field::Profile);
        assert!(p.to_string().contains("is a jwt_bearer integration, not client_credentials"), "{p}");
    }

    #[test]
    fn salesforce_tokens_may_go_to_the_orgs_own_instance_only() {
        let spec = Profile::Salesforce.spec();
        let origin = |v: serde_json::Value| {
            let meta = serde_json::Map::from_iter([("instance_url".to_string(), v)]);
            spec.api_origin_of(&meta).map(|o| o.ascii_serialization())
        };
        assert_eq!(origin("https://acme.my.salesforce.com".into()).as_deref(), Some("https://acme.my.salesforce.com"));
        assert_eq!(
            origin("https://acme--dev.sandbox.my.salesforce.com/".into()).as_deref(),
            Some("https://acme--dev.sandbox.my.salesforce.com")
        );
        assert_eq!(origin("https://na1.force.com".into()).as_deref(), Some("https://na1.force.com"));
        for bad in [
            "http://acme.my.salesforce.com",
            "https://evil.example",
            "https://salesforce.com.evil.example",
            "https://evilsalesforce.com",
            "not a url",
        ] {
            assert_eq!(origin(bad.into()), None, "{bad}");
        }
        assert_eq!(origin(serde_json::json!(42)), None);
        assert_eq!(Profile::Google.spec().api_origin_of(&serde_json::Map::new()), None);
    }

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
        let problem = bad.apply_profile().unwrap_err();
        assert_eq!(problem.field, Field::DataCenter);
        assert!(problem.to_string().contains("mars"));
        let mut us = IntegrationConfig { profile: Some(Profile::Zoho), ..Default::default() };
        us.apply_profile().unwrap();
        assert_eq!(us.data_center.as_deref(), Some("us"), "the default region is recorded");
    }

    #[test]
    fn profile_rules_for_scopes_and_regions() {
        let mut ms = IntegrationConfig {
            profile: Some(Profile::Microsoft),
            scopes: vec!["User.Read".into()],
            ..Default::default()
        };
        ms.apply_profile().unwrap();
        assert_eq!(ms.scopes, ["User.Read", "offline_access"]);
        assert_eq!(ms.extra_authorize_params.get("response_mode").map(String::as_str), Some("query"));
        let mut ic = IntegrationConfig {
            profile: Some(Profile::Intercom),
            data_center: Some("eu".into()),
            scopes: vec!["x".into()],
            ..Default::default()
        };
        ic.apply_profile().unwrap();
        assert!(ic.scopes.is_empty());
        assert_eq!(ic.token_url.unwrap().as_str(), "https://api.eu.intercom.io/auth/eagle/token");
        let mut bad = IntegrationConfig {
            profile: Some(Profile::Intercom),
            data_center: Some("jp".into()),
            ..Default::default()
        };
        assert_eq!(
            bad.apply_profile().unwrap_err().to_string(),
            "unknown Intercom data center `jp`; known: us, eu, au"
        );
        let mut google =
            IntegrationConfig { profile: Some(Profile::Google), data_center: Some("eu".into()), ..Default::default() };
        google.apply_profile().unwrap();
        assert_eq!(google.api_origins, ["https://www.googleapis.com"], "a single region ignores the data center");
        // An operator's own parameter wins over the profile's.
        let mut own = IntegrationConfig { profile: Some(Profile::Google), ..Default::default() };
        own.extra_authorize_params.insert("prompt".into(), "select_account".into());
        own.apply_profile().unwrap();
        assert_eq!(own.extra_authorize_params.get("prompt").map(String::as_str), Some("select_account"));
    }

    #[test]
    fn the_callback_s_accounts_server_picks_a_zoho_region() {
        let zoho = Profile::Zoho.spec();
        assert!(zoho.follows_accounts_server() && !Profile::Google.spec().follows_accounts_server());
        let eu = zoho.region_of_accounts_server("https://accounts.zoho.eu/").unwrap();
        assert_eq!(eu.code, "eu");
        assert!(zoho.region_of_accounts_server("https://evil.example").is_none());
        let mut c = IntegrationConfig {
            profile: Some(Profile::Zoho),
            api_origins: vec!["https://www.zohoapis.com".into()],
            ..Default::default()
        };
        c.move_to(eu);
        assert_eq!(c.data_center.as_deref(), Some("eu"));
        assert_eq!(c.api_origins, ["https://www.zohoapis.eu"]);
        assert_eq!(c.token_url.unwrap().as_str(), "https://accounts.zoho.eu/oauth/v2/token");
    }
}
