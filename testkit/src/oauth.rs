//! An in-process OAuth 2.0 authorization server and bearer-protected API on 127.0.0.1:0, with
//! fault injection and request counting. It implements the real checks (registered redirect
//! URI, PKCE S256, single-use codes, rotating refresh tokens, expiring access tokens) so that
//! Tern's client is tested against a server that refuses what a real one refuses.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use serde_json::{Value, json};
use sha2::Digest;

/// The only client the server knows.
pub const CLIENT_ID: &str = "tern-test-client";
/// Its secret.
pub const CLIENT_SECRET: &str = "cs_test_0123456789abcdef";

/// Faults and knobs, changeable while the server runs.
#[derive(Clone, Debug)]
pub struct Faults {
    /// `expires_in` of issued access tokens.
    pub expires_in: u64,
    /// Send `expires_in` as a string.
    pub expires_in_as_string: bool,
    /// Leave `expires_in` out.
    pub omit_expires_in: bool,
    /// Answer the token endpoint form-encoded.
    pub form_encoded: bool,
    /// Answer the token endpoint with an HTML 500.
    pub html_500: bool,
    /// Delay token responses.
    pub token_delay: Duration,
    /// Do not issue a new refresh token on refresh (Zoho, Google).
    pub no_rotation: bool,
    /// Send `token_type` in lower case.
    pub lowercase_token_type: bool,
    /// Refuse the authorization with this `error` (and an HTML-ish description).
    pub deny: Option<String>,
    /// A rejected refresh says the request it got in its `error_description` (some providers
    /// echo the form, client secret and refresh token included).
    pub echo_request: bool,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            expires_in: 3600,
            expires_in_as_string: false,
            omit_expires_in: false,
            form_encoded: false,
            html_500: false,
            token_delay: Duration::ZERO,
            no_rotation: false,
            lowercase_token_type: false,
            deny: None,
            echo_request: false,
        }
    }
}

#[derive(Default)]
struct AsState {
    faults: Faults,
    codes: HashMap<String, (String, String)>, // code -> (challenge, redirect_uri)
    access: HashMap<String, Instant>,         // token -> expiry
    refresh: HashMap<String, bool>,           // token -> still valid
    /// Every secret value ever issued or received, for the secret scanner.
    issued: Vec<String>,
    token_requests: HashMap<String, usize>,
    api_auth_headers: Vec<String>,
    redirect_uris: Vec<String>,
}

#[derive(Clone, Default)]
struct Shared(Arc<Mutex<AsState>>);

/// The running server.
pub struct AuthServer {
    /// Where it listens.
    pub addr: SocketAddr,
    state: Shared,
}

/// The arguments of `tern integrations add NAME` for a service account of the server at
/// `auth_url` (client secret in the environment variable `CS`), its API origin the server too.
pub fn client_credentials_add(name: &str, auth_url: &str) -> Vec<String> {
    [
        "integrations",
        "add",
        name,
        "--kind",
        "client-credentials",
        "--client-id",
        CLIENT_ID,
        "--client-secret-env",
        "CS",
        "--token-url",
        &format!("{auth_url}/token"),
        "--api-origin",
        auth_url,
    ]
    .map(str::to_string)
    .to_vec()
}

fn random_token(prefix: &str) -> String {
    let bytes: [u8; 16] = rand::random();
    format!("{prefix}_{}", hex::encode(bytes))
}

impl AuthServer {
    /// Starts the server on its own thread and runtime.
    pub fn start() -> Self {
        let state = Shared::default();
        state.0.lock().unwrap().issued.push(CLIENT_SECRET.to_string());
        let s2 = state.clone();
        let addr = crate::serve_on_thread(app(s2));
        Self { addr, state }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Changes faults.
    pub fn set(&self, f: impl FnOnce(&mut Faults)) {
        f(&mut self.state.0.lock().unwrap().faults);
    }

    /// Token requests by grant type.
    pub fn token_requests(&self, grant: &str) -> usize {
        self.state.0.lock().unwrap().token_requests.get(grant).copied().unwrap_or(0)
    }

    /// Authorization headers the API received.
    pub fn api_auth_headers(&self) -> Vec<String> {
        self.state.0.lock().unwrap().api_auth_headers.clone()
    }

    /// Redirect URIs seen on /authorize.
    pub fn redirect_uris(&self) -> Vec<String> {
        self.state.0.lock().unwrap().redirect_uris.clone()
    }

    /// Every secret value the server issued or knows (client secret, codes, tokens).
    pub fn secrets(&self) -> Vec<String> {
        self.state.0.lock().unwrap().issued.clone()
    }

    /// Invalidates every access token (the API answers 401 until a refresh).
    pub fn revoke_access_tokens(&self) {
        self.state.0.lock().unwrap().access.clear();
    }

    /// Invalidates every refresh token (the next refresh gets invalid_grant).
    pub fn revoke_refresh_tokens(&self) {
        for v in self.state.0.lock().unwrap().refresh.values_mut() {
            *v = false;
        }
    }
}

fn app(state: Shared) -> Router {
    Router::new()
        .route("/authorize", get(authorize))
        .route("/token", post(token))
        .route("/api/contacts.info", post(api))
        .route("/api/users.me", get(me))
        .route("/api/echo-headers", axum::routing::any(echo_headers))
        .with_state(state)
}

async fn authorize(State(s): State<Shared>, Query(q): Query<HashMap<String, String>>) -> Response {
    let mut st = s.0.lock().unwrap();
    let redirect = q.get("redirect_uri").cloned().unwrap_or_default();
    st.redirect_uris.push(redirect.clone());
    if q.get("client_id").map(String::as_str) != Some(CLIENT_ID) {
        return (StatusCode::BAD_REQUEST, "unknown client").into_response();
    }
    if q.get("response_type").map(String::as_str) != Some("code")
        || q.get("code_challenge_method").map(String::as_str) != Some("S256")
    {
        return (StatusCode::BAD_REQUEST, "PKCE S256 required").into_response();
    }
    let state = q.get("state").cloned().unwrap_or_default();
    let mut target = url::Url::parse(&redirect).expect("redirect uri");
    if let Some(error) = st.faults.deny.clone() {
        target
            .query_pairs_mut()
            .append_pair("error", &error)
            .append_pair("error_description", "<script>alert('x')</script> denied")
            .append_pair("state", &state);
    } else {
        let code = random_token("code");
        st.issued.push(code.clone());
        st.codes.insert(code.clone(), (q.get("code_challenge").cloned().unwrap_or_default(), redirect.clone()));
        target.query_pairs_mut().append_pair("code", &code).append_pair("state", &state);
    }
    (StatusCode::FOUND, [(header::LOCATION, target.to_string())]).into_response()
}

fn client_ok(headers: &HeaderMap, form: &HashMap<String, String>) -> bool {
    if let Some(auth) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok())
        && let Some(b64) = auth.strip_prefix("Basic ")
    {
        let decoded = base64::engine::general_purpose::STANDARD.decode(b64).unwrap_or_default();
        let text = String::from_utf8_lossy(&decoded).into_owned();
        let decode =
            |s: &str| url::form_urlencoded::parse(format!("x={s}").as_bytes()).next().map(|(_, v)| v.into_owned());
        if let Some((id, secret)) = text.split_once(':') {
            return decode(id).as_deref() == Some(CLIENT_ID) && decode(secret).as_deref() == Some(CLIENT_SECRET);
        }
        return false;
    }
    form.get("client_id").map(String::as_str) == Some(CLIENT_ID)
        && form.get("client_secret").map(String::as_str) == Some(CLIENT_SECRET)
}

fn oauth_error(error: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"error": error, "error_description": format!("{error} (test server)")})),
    )
        .into_response()
}

async fn token(State(s): State<Shared>, headers: HeaderMap, Form(form): Form<HashMap<String, String>>) -> Response {
    let delay = s.0.lock().unwrap().faults.token_delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut st = s.0.lock().unwrap();
    let grant = form.get("grant_type").cloned().unwrap_or_default();
    *st.token_requests.entry(grant.clone()).or_default() += 1;
    if st.faults.html_500 {
        return (StatusCode::INTERNAL_SERVER_ERROR, [(header::CONTENT_TYPE, "text/html")], "<html>down</html>")
            .into_response();
    }
    if !client_ok(&headers, &form) {
        return (StatusCode::UNAUTHORIZED, axum::Json(json!({"error": "invalid_client"}))).into_response();
    }
    let mut issue_refresh = true;
    match grant.as_str() {
        "authorization_code" => {
            let code = form.get("code").cloned().unwrap_or_default();
            let Some((challenge, redirect)) = st.codes.remove(&code) else { return oauth_error("invalid_grant") };
            let verifier = form.get("code_verifier").cloned().unwrap_or_default();
            st.issued.push(verifier.clone());
            let computed =
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
            if computed != challenge || form.get("redirect_uri") != Some(&redirect) {
                return oauth_error("invalid_grant");
            }
        }
        "refresh_token" => {
            let rt = form.get("refresh_token").cloned().unwrap_or_default();
            if st.refresh.get(&rt) != Some(&true) {
                if st.faults.echo_request {
                    let mut raw: Vec<String> = form.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    raw.sort();
                    let description = format!("refresh token revoked; raw={}", raw.join("&"));
                    return (
                        StatusCode::BAD_REQUEST,
                        axum::Json(json!({"error": "invalid_grant", "error_description": description})),
                    )
                        .into_response();
                }
                return oauth_error("invalid_grant");
            }
            if st.faults.no_rotation {
                issue_refresh = false;
            } else {
                st.refresh.insert(rt, false);
            }
        }
        "client_credentials" => issue_refresh = false,
        _ => return oauth_error("unsupported_grant_type"),
    }
    let at = random_token("at");
    let f = st.faults.clone();
    st.access.insert(at.clone(), Instant::now() + Duration::from_secs(f.expires_in));
    st.issued.push(at.clone());
    let mut body = serde_json::Map::new();
    body.insert("access_token".into(), json!(at));
    body.insert("token_type".into(), json!(if f.lowercase_token_type { "bearer" } else { "Bearer" }));
    if !f.omit_expires_in {
        body.insert(
            "expires_in".into(),
            if f.expires_in_as_string { json!(f.expires_in.to_string()) } else { json!(f.expires_in) },
        );
    }
    body.insert("account_id".into(), json!("acct-42"));
    body.insert(
        "api_domain".into(),
        json!(format!("http://{}", headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or(""))),
    );
    if issue_refresh {
        let rt = random_token("rt");
        st.refresh.insert(rt.clone(), true);
        st.issued.push(rt.clone());
        body.insert("refresh_token".into(), json!(rt));
    }
    if f.form_encoded {
        let text = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(
                body.iter().map(|(k, v)| (k.clone(), v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()))),
            )
            .finish();
        return ([(header::CONTENT_TYPE, "application/x-www-form-urlencoded")], text).into_response();
    }
    axum::Json(Value::Object(body)).into_response()
}

async fn api(State(s): State<Shared>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let mut st = s.0.lock().unwrap();
    let auth = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    st.api_auth_headers.push(auth.clone());
    let valid = auth.strip_prefix("Bearer ").and_then(|t| st.access.get(t)).is_some_and(|exp| *exp > Instant::now());
    if !valid {
        return (StatusCode::UNAUTHORIZED, axum::Json(json!({"errors": [{"title": "Unauthorized"}]}))).into_response();
    }
    let id = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("id").and_then(Value::as_str).map(str::to_string));
    match id.as_deref() {
        Some("c1a2") => {
            axum::Json(json!({"data": {"id": "c1a2", "first_name": "Erlich", "last_name": "Bachman"}})).into_response()
        }
        _ => (StatusCode::NOT_FOUND, axum::Json(json!({"errors": [{"title": "Not found"}]}))).into_response(),
    }
}

/// Who the token belongs to (Teamleader's `users.me`): the account id Tern captures for events.
async fn me(State(s): State<Shared>, headers: HeaderMap) -> Response {
    let st = s.0.lock().unwrap();
    let auth = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or("");
    let valid = auth.strip_prefix("Bearer ").and_then(|t| st.access.get(t)).is_some_and(|exp| *exp > Instant::now());
    if !valid {
        return (StatusCode::UNAUTHORIZED, axum::Json(json!({"errors": [{"title": "Unauthorized"}]}))).into_response();
    }
    axum::Json(json!({"data": {"id": "user-1", "account": {"id": "acct-77"}}})).into_response()
}

/// An API that, like many, echoes the request's credentials in a 400 error body.
async fn echo_headers(headers: HeaderMap) -> Response {
    let auth = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    (StatusCode::BAD_REQUEST, axum::Json(json!({"error": "bad request", "echo": auth}))).into_response()
}
