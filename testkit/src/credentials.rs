//! An API on 127.0.0.1:0 that really checks each kind of fixed credential (HTTP Basic per
//! RFC 7617, an API key in a header, an API key in the query), and a JWT-bearer token
//! endpoint (RFC 7523) that verifies each assertion's RS256 signature with the service
//! account's public key (with `jsonwebtoken`'s verifier) and its claims (`iss`, `aud`, `iat`,
//! `exp`, `scope`, `sub`) before it issues a token, like Google's `oauth2.googleapis.com/token`.
//!
//! Every request is recorded, so that tests can say where a credential went and where it did
//! not; every secret the server knows is listed for the secret scanners.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Form, OriginalUri, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use base64::Engine as _;
use serde_json::{Value, json};

use crate::Recorded;

/// The `basic` integration's user name.
pub const USERNAME: &str = "tern-bot";
/// Its password (with a colon and a non-ASCII letter: RFC 7617 allows both in a password).
pub const PASSWORD: &str = "pw:Zürich-0123456789";
/// The API key.
pub const API_KEY: &str = "key_live_5f2c0a9e77b14d3c9a01";
/// The header the key goes in.
pub const KEY_HEADER: &str = "X-API-Key";
/// The query parameter the key goes in.
pub const KEY_PARAM: &str = "api_key";
/// The service account's e-mail (the assertion's issuer).
pub const CLIENT_EMAIL: &str = "tern-test@tern-tests.iam.gserviceaccount.com";
/// The key id in the key file.
pub const KEY_ID: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f0a9b8c7d6";
/// The scopes the token endpoint wants in the assertion.
pub const SCOPES: &str =
    "https://www.googleapis.com/auth/spreadsheets.readonly https://www.googleapis.com/auth/calendar";

/// The test service account's private key (PKCS#8 PEM; see `testkit/fixtures/README.md`).
pub const PRIVATE_KEY_PEM: &str = include_str!("../fixtures/service-account-test.key.pem");
/// Its public key, which the token endpoint verifies with.
pub const PUBLIC_KEY_PEM: &str = include_str!("../fixtures/service-account-test.pub.pem");

/// A Google service-account key file for the test service account, with `token_uri` set.
pub fn key_file(token_uri: &str) -> String {
    serde_json::to_string_pretty(&json!({
        "type": "service_account",
        "project_id": "tern-tests",
        "private_key_id": KEY_ID,
        "private_key": PRIVATE_KEY_PEM,
        "client_email": CLIENT_EMAIL,
        "client_id": "103456789012345678901",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_x509_cert_url": "https://www.googleapis.com/robot/v1/metadata/x509/tern-test",
        "universe_domain": "googleapis.com"
    }))
    .expect("key file")
}

/// What the token endpoint accepted or refused.
#[derive(Clone, Debug)]
pub struct Assertion {
    /// The decoded claims, when the signature verified.
    pub claims: Option<Value>,
    /// The `kid` header.
    pub kid: Option<String>,
    /// Why it was refused (`None`: a token was issued).
    pub refused: Option<String>,
}

#[derive(Default)]
struct St {
    requests: Vec<Recorded>,
    assertions: Vec<Assertion>,
    /// Issued access token → expiry (Unix seconds).
    tokens: HashMap<String, u64>,
    expires_in: u64,
    /// Seconds the server's clock is ahead of the system's (a test moves Tern's clock and
    /// this one together instead of sleeping).
    offset: u64,
    /// The `sub` the endpoint requires (domain-wide delegation), if any.
    subject: Option<String>,
    /// Requests `/limited/me` received.
    limited: usize,
    /// When `/strict/me` accepted its requests of the last second.
    strict_accepted: std::collections::VecDeque<std::time::Instant>,
    /// Requests `/strict/me` refused with 429.
    strict_refused: usize,
}

#[derive(Clone, Default)]
struct Shared(Arc<Mutex<St>>);

/// The running server.
pub struct CredentialApi {
    /// Where it listens.
    pub addr: SocketAddr,
    state: Shared,
}

fn system_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl St {
    fn now_s(&self) -> u64 {
        system_s() + self.offset
    }
}

impl CredentialApi {
    /// Starts the server on its own thread and runtime; tokens last an hour.
    pub fn start() -> Self {
        let state = Shared::default();
        state.0.lock().unwrap().expires_in = 3600;
        let addr = crate::serve_on_thread(app(state.clone()));
        Self { addr, state }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The token endpoint.
    pub fn token_url(&self) -> String {
        format!("{}/token", self.url())
    }

    /// Moves the server's clock forward by `secs` (token expiry, and the assertions' `iat`).
    pub fn advance(&self, secs: u64) {
        self.state.0.lock().unwrap().offset += secs;
    }

    /// Requires this `sub` in assertions from now on.
    pub fn require_subject(&self, sub: &str) {
        self.state.0.lock().unwrap().subject = Some(sub.to_string());
    }

    /// Every request received.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.0.lock().unwrap().requests.clone()
    }

    /// How many requests `/strict/me` refused for its rate limit.
    pub fn strict_refused(&self) -> usize {
        self.state.0.lock().unwrap().strict_refused
    }

    /// Every assertion the token endpoint received.
    pub fn assertions(&self) -> Vec<Assertion> {
        self.state.0.lock().unwrap().assertions.clone()
    }

    /// Every secret value the server knows (the password, the key, the Basic credential,
    /// issued tokens), for the secret scanners.
    pub fn secrets(&self) -> Vec<String> {
        let st = self.state.0.lock().unwrap();
        let mut out = vec![PASSWORD.to_string(), API_KEY.to_string(), basic_encoded()];
        out.extend(st.tokens.keys().cloned());
        out
    }
}

/// `base64(USERNAME:PASSWORD)`, what the `Authorization: Basic` header carries.
pub fn basic_encoded() -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{USERNAME}:{PASSWORD}"))
}

fn app(state: Shared) -> Router {
    Router::new()
        .route("/basic/me", any(basic_me))
        .route("/key/header/me", any(key_header_me))
        .route("/key/query/me", any(key_query_me))
        .route("/google/me", get(google_me))
        .route("/limited/me", any(limited_me))
        .route("/strict/me", any(strict_me))
        .route("/token", post(token))
        .route("/redirect", any(redirect))
        .fallback(any(|OriginalUri(uri): OriginalUri| async move { axum::Json(json!({"uri": uri.to_string()})) }))
        .layer(axum::middleware::from_fn_with_state(state.clone(), record))
        .with_state(state)
}

async fn record(State(s): State<Shared>, req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
    s.0.lock().unwrap().requests.push(Recorded {
        method: parts.method.to_string(),
        uri: parts.uri.path_and_query().map(|p| p.to_string()).unwrap_or_default(),
        headers: parts.headers.clone(),
        body: bytes.to_vec(),
    });
    next.run(axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes))).await
}

fn unauthorized(challenge: &'static str) -> Response {
    (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, challenge)], axum::Json(json!({"error": "unauthorized"})))
        .into_response()
}

fn me(via: &str) -> Response {
    axum::Json(json!({"data": {"id": "u-7", "name": "Ada Lovelace", "via": via}})).into_response()
}

/// RFC 7617: `Basic base64(user-id ":" password)`, UTF-8.
async fn basic_me(headers: HeaderMap) -> Response {
    let given = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Basic "));
    let decoded = given.and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok());
    let text = decoded.and_then(|d| String::from_utf8(d).ok());
    match text.as_deref().and_then(|t| t.split_once(':')) {
        Some((USERNAME, PASSWORD)) => me("basic"),
        _ => unauthorized("Basic realm=\"test\", charset=\"UTF-8\""),
    }
}

async fn key_header_me(headers: HeaderMap) -> Response {
    if headers.get(KEY_HEADER).and_then(|v| v.to_str().ok()) == Some(API_KEY) {
        me("header")
    } else {
        unauthorized("ApiKey")
    }
}

async fn key_query_me(Query(q): Query<Vec<(String, String)>>) -> Response {
    // Exactly one key parameter, the right one (a flow's own `api_key=` must have been replaced).
    let keys: Vec<&str> = q.iter().filter(|(k, _)| k == KEY_PARAM).map(|(_, v)| v.as_str()).collect();
    if keys == [API_KEY] { me("query") } else { unauthorized("ApiKey") }
}

/// A rate-limited API: every odd request gets `429 Too Many Requests` with `Retry-After: 1`
/// and HubSpot's rate-limit headers; the others are [`basic_me`]'s.
async fn limited_me(State(s): State<Shared>, headers: HeaderMap) -> Response {
    let n = {
        let mut st = s.0.lock().unwrap();
        st.limited += 1;
        st.limited
    };
    if n % 2 == 1 {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [
                (header::RETRY_AFTER, "1"),
                (header::HeaderName::from_static("x-hubspot-ratelimit-secondly"), "1"),
                (header::HeaderName::from_static("x-hubspot-ratelimit-secondly-remaining"), "0"),
            ],
            axum::Json(json!({"status": "error", "category": "RATE_LIMITS"})),
        )
            .into_response();
    }
    basic_me(headers).await
}

/// The most requests `/strict/me` accepts in any second.
pub const STRICT_PER_SECOND: usize = 12;

/// A HubSpot-like limit: at most [`STRICT_PER_SECOND`] requests in any second (a sliding
/// window); beyond it, `429` with `Retry-After: 1`. Otherwise [`basic_me`]'s answer.
async fn strict_me(State(s): State<Shared>, headers: HeaderMap) -> Response {
    {
        let mut st = s.0.lock().unwrap();
        let now = std::time::Instant::now();
        while st.strict_accepted.front().is_some_and(|t| now.duration_since(*t) >= std::time::Duration::from_secs(1)) {
            st.strict_accepted.pop_front();
        }
        if st.strict_accepted.len() >= STRICT_PER_SECOND {
            st.strict_refused += 1;
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, "1")],
                axum::Json(json!({"category": "RATE_LIMITS"})),
            )
                .into_response();
        }
        st.strict_accepted.push_back(now);
    }
    basic_me(headers).await
}

/// `302 Location: {to}`.
async fn redirect(Query(q): Query<HashMap<String, String>>) -> Response {
    let to = q.get("to").cloned().unwrap_or_else(|| "/".into());
    (StatusCode::FOUND, [(header::LOCATION, to)]).into_response()
}

async fn google_me(State(s): State<Shared>, headers: HeaderMap) -> Response {
    let st = s.0.lock().unwrap();
    let token =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    match token.and_then(|t| st.tokens.get(t)) {
        Some(exp) if *exp > st.now_s() => me("jwt_bearer"),
        _ => unauthorized("Bearer"),
    }
}

fn oauth_error(error: &str, why: &str) -> Response {
    (StatusCode::BAD_REQUEST, axum::Json(json!({"error": error, "error_description": why}))).into_response()
}

/// RFC 7523 §2.1 and §3, as Google checks it.
async fn token(State(s): State<Shared>, headers: HeaderMap, Form(form): Form<HashMap<String, String>>) -> Response {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("").to_string();
    let audience = format!("http://{host}/token");
    let mut st = s.0.lock().unwrap();
    let subject = st.subject.clone();
    let now = st.now_s();
    let (assertion, outcome) = check(&form, &audience, subject.as_deref(), now);
    st.assertions.push(Assertion {
        claims: assertion.0,
        kid: assertion.1,
        refused: outcome.as_ref().err().map(|(_, why)| why.clone()),
    });
    if let Err((error, why)) = outcome {
        return oauth_error(error, &why);
    }
    let bytes: [u8; 24] = rand::random();
    let at = format!("ya29.{}", hex::encode(bytes));
    let expires_in = st.expires_in;
    st.tokens.insert(at.clone(), now + expires_in);
    axum::Json(json!({"access_token": at, "expires_in": expires_in, "token_type": "Bearer"})).into_response()
}

type Checked = ((Option<Value>, Option<String>), Result<(), (&'static str, String)>);

fn check(form: &HashMap<String, String>, audience: &str, subject: Option<&str>, now: u64) -> Checked {
    if form.get("grant_type").map(String::as_str) != Some("urn:ietf:params:oauth:grant-type:jwt-bearer") {
        return ((None, None), Err(("unsupported_grant_type", "grant_type must be the JWT bearer grant".into())));
    }
    let Some(jwt) = form.get("assertion") else {
        return ((None, None), Err(("invalid_request", "no assertion".into())));
    };
    let kid = jsonwebtoken::decode_header(jwt).ok().and_then(|h| h.kid);
    let key = jsonwebtoken::DecodingKey::from_rsa_pem(PUBLIC_KEY_PEM.as_bytes()).expect("public key");
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&[audience]);
    validation.set_issuer(&[CLIENT_EMAIL]);
    validation.set_required_spec_claims(&["exp", "iat", "aud", "iss"]);
    validation.leeway = 0;
    let claims = match jsonwebtoken::decode::<Value>(jwt, &key, &validation) {
        Ok(data) => data.claims,
        Err(e) => return ((None, kid), Err(("invalid_grant", format!("assertion refused: {e}")))),
    };
    let iat = claims["iat"].as_u64().unwrap_or(0);
    let exp = claims["exp"].as_u64().unwrap_or(0);
    let why = if iat > now + 60 {
        Some("iat is in the future".to_string())
    } else if exp <= now {
        Some("the assertion expired".to_string())
    } else if iat + 300 < now {
        Some("iat is more than five minutes old".to_string())
    } else if exp <= iat || exp - iat > 3600 {
        Some(format!("exp - iat must be at most an hour (is {})", exp.saturating_sub(iat)))
    } else if claims["scope"].as_str() != Some(SCOPES) {
        Some(format!("scope must be `{SCOPES}`"))
    } else if claims.get("sub").and_then(Value::as_str) != subject {
        Some(format!("sub must be {subject:?}"))
    } else if kid.as_deref() != Some(KEY_ID) {
        Some("kid must be the key file's private_key_id".into())
    } else {
        None
    };
    let outcome = match why {
        Some(why) => Err(("invalid_grant", why)),
        None => Ok(()),
    };
    ((Some(claims), kid), outcome)
}
