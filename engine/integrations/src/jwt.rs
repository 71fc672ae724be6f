//! The JWT bearer grant (RFC 7523 §2.1) of `jwt_bearer` integrations: a service account signs
//! an assertion with its private key (RS256) and trades it at the token endpoint for an access
//! token, with no person and no refresh token. Google's service-account key files are the
//! first format read ([`ServiceAccountKey`]).
//!
//! The assertion's claims (RFC 7523 §3) are the ones Google's own client libraries send:
//! `iss` is the service account (`client_id`), `aud` the token URL, `iat` now and `exp` an
//! hour later (Google's maximum), `scope` the scopes joined by spaces (Google reads them from
//! the assertion, not from the request), and `sub` only when a subject is set (domain-wide
//! delegation: the user the service account acts for). The key's id goes in the `kid` header.
//! Signing is `jsonwebtoken`'s, over `ring`.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::config::IntegrationConfig;

/// The grant type of RFC 7523 §2.1.
pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// How long an assertion is valid (seconds): Google refuses more than an hour.
pub const ASSERTION_LIFETIME_SECS: i64 = 3600;

/// Why an assertion cannot be made. Messages are the operator's words; never a key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AssertionError {
    /// The key is not an RSA private key in PEM.
    #[error(
        "the private key is not an RSA private key in PEM (`-----BEGIN PRIVATE KEY-----` … `-----END PRIVATE KEY-----`)"
    )]
    NotRsaPem,
    /// The key cannot sign RS256 (too short, or not a signing key).
    #[error("the private key cannot sign RS256 assertions (an RSA key of at least 2048 bits is needed)")]
    CannotSign,
    /// The settings lack what the assertion names.
    #[error("no {0} is configured")]
    Missing(&'static str),
}

/// What Tern takes from a Google service-account key file (the JSON a console's "Create key"
/// downloads).
#[derive(Debug)]
pub struct ServiceAccountKey {
    /// `client_email`: the assertion's issuer, stored as the integration's `client_id`.
    pub client_email: String,
    /// `private_key`: the RSA private key in PEM, stored encrypted as the integration's secret.
    pub private_key: SecretString,
    /// `private_key_id`: sent as the assertion's `kid`.
    pub private_key_id: Option<String>,
    /// `token_uri`: the token URL, unless one is given.
    pub token_uri: Option<Url>,
}

/// Why a key file cannot be used. Messages say which field and what to do; never a key.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// Not JSON, or not an object.
    #[error(
        "the key file is not a service-account key in JSON ({reason}); download a JSON key for the service account (Google Cloud console: IAM → Service accounts → Keys → Add key → JSON)"
    )]
    NotJson {
        /// The parser's reason (line and column, never the text).
        reason: String,
    },
    /// `type` is present and not `service_account`.
    #[error("the key file's `type` is `{found}`, not `service_account`; it is not a service-account key")]
    WrongType {
        /// The type found.
        found: String,
    },
    /// A field that must be there is missing or not a string.
    #[error("the key file has no `{field}`; download a new JSON key for the service account")]
    Missing {
        /// The field.
        field: &'static str,
    },
    /// `token_uri` is not a URL.
    #[error("the key file's `token_uri` is not a URL ({reason})")]
    BadTokenUri {
        /// The parser's reason.
        reason: String,
    },
    /// The private key cannot sign.
    #[error("the key file's `private_key`: {0}")]
    BadKey(AssertionError),
}

#[derive(Deserialize)]
struct KeyFile {
    #[serde(rename = "type")]
    kind: Option<String>,
    client_email: Option<String>,
    private_key: Option<String>,
    private_key_id: Option<String>,
    token_uri: Option<String>,
}

impl ServiceAccountKey {
    /// Reads a Google service-account key file.
    ///
    /// # Errors
    /// [`KeyFileError`], the first problem found.
    pub fn parse(text: &str) -> Result<Self, KeyFileError> {
        let file: KeyFile =
            serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_str(text)).map_err(|e| {
                // The field, where and what kind of fault; never the text (it holds the key).
                let inner = e.inner();
                let at = match e.path().to_string() {
                    p if p != "." && inner.classify() == serde_json::error::Category::Data => {
                        format!("`{p}` must be a string; ")
                    }
                    _ => String::new(),
                };
                KeyFileError::NotJson {
                    reason: format!("{at}line {}, column {}: {:?}", inner.line(), inner.column(), inner.classify()),
                }
            })?;
        if let Some(found) = file.kind.filter(|k| k != "service_account") {
            return Err(KeyFileError::WrongType { found: found.chars().take(40).collect() });
        }
        let client_email =
            file.client_email.filter(|e| !e.is_empty()).ok_or(KeyFileError::Missing { field: "client_email" })?;
        let private_key = SecretString::from(
            file.private_key.filter(|k| !k.is_empty()).ok_or(KeyFileError::Missing { field: "private_key" })?,
        );
        check_private_key(&private_key).map_err(KeyFileError::BadKey)?;
        let token_uri = file
            .token_uri
            .map(|u| Url::parse(&u).map_err(|e| KeyFileError::BadTokenUri { reason: e.to_string() }))
            .transpose()?;
        Ok(Self { client_email, private_key, private_key_id: file.private_key_id.filter(|k| !k.is_empty()), token_uri })
    }
}

/// A `jwt_bearer` integration's key as an operator gives it (the command line's `--key-file`,
/// the console's field, the admin API's `private_key`): a Google service-account JSON key file,
/// or an RSA private key in PEM as it is. A key file names the account and key it is: its
/// `client_email` and `private_key_id` replace `config`'s (the assertion's `iss` and `kid` must
/// be the key's own, so a new key file of another account takes its place whatever the form or
/// flags still said), and its `token_uri` fills in an empty token URL. Returns the private key to
/// store.
///
/// # Errors
/// [`KeyFileError`]: a JSON text that is not a service-account key.
pub fn key_material(
    text: SecretString,
    config: &mut crate::config::IntegrationConfig,
) -> Result<SecretString, KeyFileError> {
    if !text.expose_secret().trim_start().starts_with('{') {
        return Ok(text);
    }
    let key = ServiceAccountKey::parse(text.expose_secret())?;
    config.client_id = Some(key.client_email);
    config.key_id = key.private_key_id;
    if config.token_url.is_none() {
        config.token_url = key.token_uri;
    }
    Ok(key.private_key)
}

/// Whether `pem` is an RSA private key Tern can sign RS256 assertions with (PKCS#8
/// `BEGIN PRIVATE KEY`, as Google's key files hold, or PKCS#1 `BEGIN RSA PRIVATE KEY`), by
/// signing a test assertion with it.
///
/// # Errors
/// [`AssertionError::NotRsaPem`] or [`AssertionError::CannotSign`].
pub fn check_private_key(pem: &SecretString) -> Result<(), AssertionError> {
    let key = encoding_key(pem)?;
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), &serde_json::json!({"check": true}), &key)
        .map(drop)
        .map_err(|_| AssertionError::CannotSign)
}

fn encoding_key(pem: &SecretString) -> Result<EncodingKey, AssertionError> {
    EncodingKey::from_rsa_pem(pem.expose_secret().as_bytes()).map_err(|_| AssertionError::NotRsaPem)
}

/// The claims of the assertion (RFC 7523 §3).
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// The service account.
    pub iss: String,
    /// The user it acts for, when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// The token URL.
    pub aud: String,
    /// Issued at (Unix seconds).
    pub iat: i64,
    /// Expires at (Unix seconds).
    pub exp: i64,
    /// The scopes, space-separated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

/// A signed assertion for `config` at `now_s` (Unix seconds), and the form body of the token
/// request that carries it.
///
/// # Errors
/// [`AssertionError`]: the configuration lacks the issuer or the token URL, or the key cannot
/// sign.
pub fn token_request_body(
    config: &IntegrationConfig,
    key: &SecretString,
    now_s: i64,
) -> Result<String, AssertionError> {
    let iss = config.client_id.clone().ok_or(AssertionError::Missing("issuer (client_id)"))?;
    let aud = config.token_url.as_ref().ok_or(AssertionError::Missing("token URL"))?.to_string();
    let claims = Claims {
        iss,
        sub: config.subject.clone(),
        aud,
        iat: now_s,
        exp: now_s.saturating_add(ASSERTION_LIFETIME_SECS),
        scope: (!config.scopes.is_empty()).then(|| config.scopes.join(" ")),
    };
    let mut header = Header::new(Algorithm::RS256);
    header.kid = config.key_id.clone();
    let assertion =
        jsonwebtoken::encode(&header, &claims, &encoding_key(key)?).map_err(|_| AssertionError::CannotSign)?;
    // An assertion is as good as a token for an hour: masked everywhere.
    tern_engine::secrets::known::remember_str(&assertion);
    Ok(url::form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", GRANT_TYPE)
        .append_pair("assertion", &assertion)
        .finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test service account of `testkit` (see testkit/fixtures/README.md).
    const PRIVATE: &str = include_str!("../../../testkit/fixtures/service-account-test.key.pem");
    const PUBLIC: &str = include_str!("../../../testkit/fixtures/service-account-test.pub.pem");

    fn key_file(fields: serde_json::Value) -> String {
        let mut file = serde_json::json!({
            "type": "service_account",
            "client_email": "bot@p.iam.gserviceaccount.com",
            "private_key": PRIVATE,
            "private_key_id": "kid-1",
            "token_uri": "https://oauth2.googleapis.com/token",
        });
        for (k, v) in fields.as_object().into_iter().flatten() {
            file[k] = v.clone();
        }
        file.to_string()
    }

    #[test]
    fn a_google_key_file_is_read_and_every_fault_is_named() {
        let key = ServiceAccountKey::parse(&key_file(serde_json::json!({}))).unwrap();
        assert_eq!(key.client_email, "bot@p.iam.gserviceaccount.com");
        assert_eq!(key.private_key_id.as_deref(), Some("kid-1"));
        assert_eq!(key.token_uri.unwrap().as_str(), "https://oauth2.googleapis.com/token");
        let fault = |fields| ServiceAccountKey::parse(&key_file(fields)).unwrap_err().to_string();
        assert!(fault(serde_json::json!({"type": "authorized_user"})).contains("not `service_account`"));
        assert!(fault(serde_json::json!({"client_email": null})).contains("no `client_email`"));
        assert!(fault(serde_json::json!({"private_key": ""})).contains("no `private_key`"));
        let bad =
            fault(serde_json::json!({"private_key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}));
        assert!(bad.contains("not an RSA private key in PEM") && !bad.contains("AAAA"), "{bad}");
        assert!(fault(serde_json::json!({"token_uri": "::"})).contains("`token_uri` is not a URL"));
        let wrong_type = fault(serde_json::json!({"client_email": 42}));
        assert!(wrong_type.contains("`client_email` must be a string"), "{wrong_type}");
        let not_json = ServiceAccountKey::parse("-----BEGIN PRIVATE KEY-----").unwrap_err().to_string();
        assert!(not_json.contains("not a service-account key in JSON") && !not_json.contains("BEGIN"), "{not_json}");
    }

    /// A key file's account and key id replace what the settings said (the assertion must name
    /// the key's own account); its token URL only fills in an empty one; a PEM key changes nothing.
    #[test]
    fn a_key_file_names_its_own_account_and_key() {
        let mut config = crate::config::IntegrationConfig {
            client_id: Some("old@p.iam.gserviceaccount.com".into()),
            key_id: Some("kid-old".into()),
            token_url: Some(Url::parse("https://tokens.example.com/token").unwrap()),
            ..Default::default()
        };
        let text = SecretString::from(key_file(serde_json::json!({})));
        key_material(text, &mut config).unwrap();
        assert_eq!(config.client_id.as_deref(), Some("bot@p.iam.gserviceaccount.com"));
        assert_eq!(config.key_id.as_deref(), Some("kid-1"));
        assert_eq!(config.token_url.as_ref().map(Url::as_str), Some("https://tokens.example.com/token"));
        let before = config.clone();
        let pem = SecretString::from("-----BEGIN PRIVATE KEY-----".to_string());
        key_material(pem, &mut config).unwrap();
        assert_eq!(config.client_id, before.client_id);
    }

    #[test]
    fn the_assertion_verifies_with_the_public_key_and_carries_rfc_7523_claims() {
        let config = IntegrationConfig {
            client_id: Some("bot@p.iam.gserviceaccount.com".into()),
            token_url: Some("https://oauth2.googleapis.com/token".parse().unwrap()),
            scopes: vec!["a".into(), "b".into()],
            subject: Some("ops@example.com".into()),
            key_id: Some("kid-1".into()),
            ..IntegrationConfig::default()
        };
        let body = token_request_body(&config, &SecretString::from(PRIVATE.to_string()), 1_700_000_000).unwrap();
        let form: std::collections::HashMap<String, String> =
            url::form_urlencoded::parse(body.as_bytes()).into_owned().collect();
        assert_eq!(form["grant_type"], GRANT_TYPE);
        let header = jsonwebtoken::decode_header(&form["assertion"]).unwrap();
        assert_eq!((header.alg, header.kid.as_deref()), (Algorithm::RS256, Some("kid-1")));
        let mut validation = jsonwebtoken::Validation::new(Algorithm::RS256);
        validation.set_audience(&["https://oauth2.googleapis.com/token"]);
        validation.validate_exp = false; // issued at a fixed time in the past
        let key = jsonwebtoken::DecodingKey::from_rsa_pem(PUBLIC.as_bytes()).unwrap();
        let claims = jsonwebtoken::decode::<Claims>(&form["assertion"], &key, &validation).unwrap().claims;
        assert_eq!(
            claims,
            Claims {
                iss: "bot@p.iam.gserviceaccount.com".into(),
                sub: Some("ops@example.com".into()),
                aud: "https://oauth2.googleapis.com/token".into(),
                iat: 1_700_000_000,
                exp: 1_700_003_600,
                scope: Some("a b".into()),
            }
        );
        // Signed by another key: refused.
        let other = jsonwebtoken::DecodingKey::from_secret(b"not the key");
        assert!(jsonwebtoken::decode::<Claims>(&form["assertion"], &other, &validation).is_err());
    }
}
