//! The demo's embedded OAuth provider and Teamleader-like API, on 127.0.0.1:0. The provider
//! checks what a real one checks (PKCE S256, exact redirect URI, single-use codes, rotating
//! refresh tokens) and approves every authorization request as if the person clicked "Allow".

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use serde_json::{Value, json};
use sha2::Digest;

pub const CLIENT_ID: &str = "tern-demo";

#[derive(Default)]
struct Inner {
    client_secret: String,
    codes: HashMap<String, (String, String)>,
    access: HashMap<String, i64>,
    refresh: HashMap<String, bool>,
    pub token_requests: Vec<String>,
}

/// The running demo provider.
#[derive(Clone)]
pub struct DemoProvider {
    pub addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
}

fn random(prefix: &str) -> String {
    let bytes: [u8; 16] = rand::random();
    format!("{prefix}_{}", hex::encode(bytes))
}

fn now() -> i64 {
    tern_engine::clock::Clock::now_s(&tern_engine::clock::SystemClock)
}

impl DemoProvider {
    /// Starts the provider on a random loopback port.
    pub async fn start(client_secret: &str) -> std::io::Result<Self> {
        let inner = Arc::new(Mutex::new(Inner { client_secret: client_secret.to_string(), ..Inner::default() }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = Router::new()
            .route("/oauth2/authorize", get(authorize))
            .route("/oauth2/access_token", post(token))
            .route("/contacts.info", post(contacts))
            .with_state(inner.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Self { addr, inner })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Grant types of the token requests so far.
    pub fn token_requests(&self) -> Vec<String> {
        self.inner.lock().map(|i| i.token_requests.clone()).unwrap_or_default()
    }
}

type Shared = Arc<Mutex<Inner>>;

async fn authorize(State(s): State<Shared>, Query(q): Query<HashMap<String, String>>) -> Response {
    let Ok(mut st) = s.lock() else { return StatusCode::INTERNAL_SERVER_ERROR.into_response() };
    if q.get("client_id").map(String::as_str) != Some(CLIENT_ID)
        || q.get("code_challenge_method").map(String::as_str) != Some("S256")
    {
        return (StatusCode::BAD_REQUEST, "unknown client or PKCE missing").into_response();
    }
    let redirect = q.get("redirect_uri").cloned().unwrap_or_default();
    let Ok(mut target) = url::Url::parse(&redirect) else {
        return (StatusCode::BAD_REQUEST, "bad redirect_uri").into_response();
    };
    let code = random("code");
    st.codes.insert(code.clone(), (q.get("code_challenge").cloned().unwrap_or_default(), redirect));
    target.query_pairs_mut().append_pair("code", &code).append_pair("state", q.get("state").map_or("", |s| s));
    (StatusCode::FOUND, [(header::LOCATION, target.to_string())]).into_response()
}

fn error(e: &str) -> Response {
    (StatusCode::BAD_REQUEST, axum::Json(json!({"error": e}))).into_response()
}

async fn token(State(s): State<Shared>, Form(form): Form<HashMap<String, String>>) -> Response {
    let Ok(mut st) = s.lock() else { return StatusCode::INTERNAL_SERVER_ERROR.into_response() };
    let grant = form.get("grant_type").cloned().unwrap_or_default();
    st.token_requests.push(grant.clone());
    if form.get("client_id").map(String::as_str) != Some(CLIENT_ID)
        || form.get("client_secret") != Some(&st.client_secret)
    {
        return (StatusCode::UNAUTHORIZED, axum::Json(json!({"error": "invalid_client"}))).into_response();
    }
    match grant.as_str() {
        "authorization_code" => {
            let Some((challenge, redirect)) = st.codes.remove(form.get("code").map_or("", |c| c)) else {
                return error("invalid_grant");
            };
            let verifier = form.get("code_verifier").map_or("", |v| v);
            let computed =
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
            if computed != challenge || form.get("redirect_uri") != Some(&redirect) {
                return error("invalid_grant");
            }
        }
        "refresh_token" => {
            let rt = form.get("refresh_token").cloned().unwrap_or_default();
            if st.refresh.get(&rt) != Some(&true) {
                return error("invalid_grant");
            }
            st.refresh.insert(rt, false); // Teamleader rotates refresh tokens on every refresh.
        }
        _ => return error("unsupported_grant_type"),
    }
    let (at, rt) = (random("at"), random("rt"));
    st.access.insert(at.clone(), now() + 3600);
    st.refresh.insert(rt.clone(), true);
    axum::Json(json!({"access_token": at, "token_type": "Bearer", "expires_in": 3600, "refresh_token": rt}))
        .into_response()
}

async fn contacts(State(s): State<Shared>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let Ok(st) = s.lock() else { return StatusCode::INTERNAL_SERVER_ERROR.into_response() };
    let token =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    if token.and_then(|t| st.access.get(t)).is_none_or(|exp| *exp <= now()) {
        return (StatusCode::UNAUTHORIZED, axum::Json(json!({"errors": [{"title": "Unauthorized"}]}))).into_response();
    }
    let id = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("id").and_then(Value::as_str).map(str::to_string));
    match id.as_deref() {
        Some("cde0bc5f") => axum::Json(json!({"data": {
            "id": "cde0bc5f", "first_name": "Erlich", "last_name": "Bachman", "status": "active",
            "emails": [{"type": "primary", "email": "erlich@piedpiper.example"}]
        }}))
        .into_response(),
        _ => (StatusCode::NOT_FOUND, axum::Json(json!({"errors": [{"title": "Contact not found"}]}))).into_response(),
    }
}
