//! The router in process, with `tower::ServiceExt::oneshot`: every request goes through the
//! real `app(state)` (its body limit, timeout, concurrency limit and masking layers) over a
//! real SQLite store in a temporary directory and the real conversation and integrations
//! services; no socket, no binary. The end-to-end tests in `tests/serve.rs` prove the same
//! server works as a process; these are the fast checks of each handler's contract.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use secrecy::SecretString;
use serde_json::{Value, json};
use tern_engine::channels::ChannelSource;
use tern_engine::conversation::{ConversationOptions, Conversations, LoadedFlow, flow_hash};
use tern_engine::http::{HttpClient, HttpPolicy, Outbound};
use tern_engine::secrets::LayeredSecrets;
use tern_engine::{Engine, LoadOptions, RunLimits, load_flow};
use tern_integrations::Integrations;
use tern_store::SqliteStore;
use tern_store::crypto::{Keyring, MasterKey};
use tower::ServiceExt as _;

use super::{AppState, Metrics, app};

const ADMIN: &str = "oneshot-admin-token-0123456789abcdef";
/// The `default` channel's token.
const CHANNEL: &str = "oneshot-channel-token-0123456789";

/// The `support` channel's token.
const SUPPORT: &str = "oneshot-support-token-0123456789";

/// Answers with a reply that shows a field the channel sent beside the known ones.
const HELLO: &str = r#"{"version": 1, "id": "hello",
  "trigger": {"type": "message", "match": {"keywords": ["hello"]}, "priority": 2},
  "steps": [{"id": "say", "type": "send_message", "text": "Hi {{message.text}} via {{message.metadata.channel}}"}]}"#;

/// Asks, then answers the next message.
const ASK: &str = r#"{"version": 1, "id": "ask",
  "trigger": {"type": "message", "match": {"keywords": ["ask"]}, "priority": 1},
  "steps": [
    {"id": "q", "type": "ask", "text": "what?", "save_as": "a"},
    {"id": "say", "type": "send_message", "text": "got {{a}}"}
  ]}"#;

/// The app over a fresh store (kept alive by the returned directory).
pub(crate) struct Harness {
    _dir: tempfile::TempDir,
    pub(crate) app: Router,
    pub(crate) conversations: Conversations,
    /// The channels service (to add channels).
    pub(crate) channels: Arc<tern_engine::channels::Channels>,
    /// The store (to set what no route sets).
    pub(crate) store: Arc<SqliteStore>,
}

impl Harness {
    pub(crate) async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (key, _) = MasterKey::generate();
        let store = Arc::new(SqliteStore::open(&dir.path().join("tern.db"), Keyring::new(key)).await.unwrap());
        let store_handle = store.clone();
        let secrets = Arc::new(LayeredSecrets::new(Vec::new()));
        let http = HttpClient::new(HttpPolicy::default()).unwrap();
        let public = "http://127.0.0.1:8080".parse().unwrap();
        let integrations = Arc::new(Integrations::new(store.clone(), http.clone(), public, secrets.clone()));
        let engine = Engine {
            registry: Arc::new(tern_steps::registry()),
            outbound: Outbound::new(http, Some(integrations.clone())),
            secrets: secrets.clone(),
            limits: RunLimits::default(),
        };
        let flows: Vec<LoadedFlow> = [HELLO, ASK]
            .iter()
            .map(|source| {
                let opts = LoadOptions::new(&engine.registry);
                LoadedFlow { hash: flow_hash(source), flow: Arc::new(load_flow(source, &opts).unwrap()) }
            })
            .collect();
        let channels = Arc::new(tern_engine::channels::Channels::new(
            store.clone(),
            [(
                crate::cli::default_channel(Some(SecretString::from(CHANNEL.to_string())), Vec::new(), None, None),
                ChannelSource::Flags,
            )],
            ["kiosk".parse().unwrap()].into_iter().collect(),
            tern_engine::clock::system(),
        ));
        // Replies find their channel as in `tern serve` (a web chat's go to its transcript).
        let options = ConversationOptions { channels: channels.clone(), ..ConversationOptions::default() };
        let conversations = Conversations::start(engine, store.clone(), options, None);
        conversations.set_flows(flows);
        let state = Arc::new(AppState {
            conversations: conversations.clone(),
            store,
            integrations,
            channels: channels.clone(),
            channel_service: channels.clone(),
            secrets,
            admin_token: SecretString::from(ADMIN.to_string()),
            metrics: Arc::new(Metrics::default()),
            sessions: Default::default(),
            secure_cookies: false,
            invalid_flows: std::sync::RwLock::new(vec![super::InvalidFlow {
                file: "flows/broken.json".into(),
                problems: vec!["3:5: error[unknown-field] at /steps/0/nxt: unknown field `nxt`".into()],
            }]),
            max_concurrency: 16,
            request_timeout: Duration::from_secs(30),
            reply_wait: Duration::from_secs(10),
            readiness: Default::default(),
            public_url: url::Url::parse("http://127.0.0.1:8080").unwrap(),
            web: Default::default(),
            plugins: vec![tern_plugins::PluginSummary {
                step_type: "crm.contact-name".into(),
                version: "0.1.0".into(),
                description: "Looks up a CRM contact's <name>".into(),
                sha256: "ab".repeat(32),
                allowed_origins: vec!["https://api.example.com".into()],
                integration_fields: vec!["integration".into()],
                file: "/data/plugins/crm.contact-name.wasm".into(),
                load_ms: 1.0,
            }],
        });
        Self { _dir: dir, app: app(state), conversations, channels, store: store_handle }
    }

    /// One request through the router: status, headers and body (JSON when it parses, else
    /// the text as a JSON string). A request to a message route without an `Authorization`
    /// header gets the `default` channel's token ([`Self::send_as_is`] sends none).
    async fn send(&self, mut req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Value) {
        if req.uri().path().starts_with("/v1/conversations/") && !req.headers().contains_key(header::AUTHORIZATION) {
            req.headers_mut().insert(header::AUTHORIZATION, format!("Bearer {CHANNEL}").parse().unwrap());
        }
        self.send_as_is(req).await
    }

    /// One request through the router, exactly as given.
    pub(crate) async fn send_as_is(&self, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Value) {
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (status, headers, body)
    }

    async fn post_json(&self, uri: &str, body: &Value) -> (StatusCode, Value) {
        let req = Request::post(uri)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        let (status, _, body) = self.send(req).await;
        (status, body)
    }

    /// An admin request; `token` `None` sends no `Authorization` header.
    async fn admin(&self, method: Method, uri: &str, token: Option<&str>, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = match body {
            Some(b) => req.header(header::CONTENT_TYPE, "application/json").body(Body::from(b.to_string())),
            None => req.body(Body::empty()),
        };
        let (status, _, body) = self.send(req.unwrap()).await;
        (status, body)
    }

    async fn stop(self) {
        self.conversations.shutdown(Duration::from_secs(5)).await;
    }
}

#[tokio::test]
async fn a_message_is_answered_with_the_run_s_replies_and_unknown_fields_reach_the_flow() {
    let h = Harness::new().await;
    let (status, body) = h
        .post_json(
            "/v1/conversations/c-1/messages",
            &json!({"text": "hello", "contact": {"id": "k-1"}, "channel": "web", "x-anything": [1, 2]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "completed", "{body}");
    assert_eq!(body["flow_id"], "hello");
    assert_eq!(body["replies"], json!([{"text": "Hi hello via web"}]));
    // No flow matches: still 200, with the status that says so.
    let (status, body) = h.post_json("/v1/conversations/c-1/messages", &json!({"text": "nothing here"})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "no_flow", "{body}");
    h.stop().await;
}

#[tokio::test]
async fn a_message_id_reused_for_another_message_is_a_409_and_the_same_message_gets_its_answer() {
    let h = Harness::new().await;
    let uri = "/v1/conversations/c-r/messages";
    let first = json!({"text": "hello", "contact": {"id": "k-1"}, "message_id": "m-1"});
    let (status, answer) = h.post_json(uri, &first).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    // The same message again (keys in another order): the first answer.
    let (status, again) =
        h.post_json(uri, &json!({"message_id": "m-1", "contact": {"id": "k-1"}, "text": "hello"})).await;
    assert_eq!((status, &again), (StatusCode::OK, &answer));
    // Another text, or another contact, under the same id: refused, and told so.
    for other in [
        json!({"text": "hello again", "contact": {"id": "k-1"}, "message_id": "m-1"}),
        json!({"text": "hello", "contact": {"id": "k-2"}, "message_id": "m-1"}),
    ] {
        let (status, body) = h.post_json(uri, &other).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(body["code"], "message-id-reused", "{body}");
        let error = body["error"].as_str().unwrap();
        assert!(error.contains("`m-1`") && error.contains("new message id"), "{error}");
        assert!(!body.to_string().contains("Hi hello"), "never another message's reply: {body}");
    }
    h.stop().await;
}

#[tokio::test]
async fn a_bad_conversation_or_message_id_is_a_400_with_its_code() {
    let h = Harness::new().await;
    let long = "x".repeat(201);
    let (status, body) = h.post_json(&format!("/v1/conversations/{long}/messages"), &json!({"text": "hello"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["code"], "bad-id");
    assert!(body["error"].as_str().unwrap().contains("conversation id"), "{body}");
    let (status, body) =
        h.post_json("/v1/conversations/c/messages", &json!({"text": "hello", "message_id": "a\u{7}b"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["code"], "bad-id");
    let (status, _, body) =
        h.send(Request::get(format!("/v1/conversations/c/messages/{long}")).body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    h.stop().await;
}

#[tokio::test]
async fn a_body_over_64_kib_is_refused_with_413() {
    let h = Harness::new().await;
    let text = "a".repeat(70 * 1024);
    let (status, body) = h.post_json("/v1/conversations/c/messages", &json!({"text": text})).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    // Just under the limit is fine.
    let (status, body) = h.post_json("/v1/conversations/c/messages", &json!({"text": "a".repeat(60 * 1024)})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    h.stop().await;
}

#[tokio::test]
async fn the_wrong_content_type_or_a_malformed_body_is_explained() {
    let h = Harness::new().await;
    let req = Request::post("/v1/conversations/c/messages")
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from(r#"{"text": "hello"}"#))
        .unwrap();
    let (status, _, body) = h.send(req).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
    assert!(body["error"].as_str().unwrap().contains("content-type application/json"), "{body}");
    let req = Request::post("/v1/conversations/c/messages").body(Body::from(r#"{"text": "hello"}"#)).unwrap();
    assert_eq!(h.send(req).await.0, StatusCode::UNSUPPORTED_MEDIA_TYPE, "no content type");
    let (status, body) = h.post_json("/v1/conversations/c/messages", &json!({"txt": "hello"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("missing field `text`"), "names the missing field: {body}");
    assert!(
        !error.contains("Failed to deserialize") && !error.contains("target type"),
        "in the caller's words: {body}"
    );
    let req = Request::post("/v1/conversations/c/messages")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{not json"))
        .unwrap();
    let (status, _, body) = h.send(req).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "syntax error");
    assert!(body["error"].as_str().unwrap().starts_with("the body is not valid JSON: "), "{body}");
    h.stop().await;
}

#[tokio::test]
async fn an_answer_is_fetched_by_message_id_and_a_repeat_gets_the_same_answer() {
    let h = Harness::new().await;
    let (status, first) =
        h.post_json("/v1/conversations/c-2/messages", &json!({"text": "ask", "message_id": "m-1"})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(first["status"], "paused", "{first}");
    assert_eq!(first["replies"], json!([{"text": "what?"}]));
    let (status, headers, fetched) =
        h.send(Request::get("/v1/conversations/c-2/messages/m-1").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fetched, first);
    // A contact's answer is never kept by a cache between Tern and the channel.
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    let post = Request::post("/v1/conversations/c-2/messages")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(r#"{"text": "ask", "message_id": "m-1"}"#))
        .unwrap();
    let (_, headers, _) = h.send(post).await;
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    // A re-sent message id is answered from the first time, not run again.
    let (_, again) = h.post_json("/v1/conversations/c-2/messages", &json!({"text": "ask", "message_id": "m-1"})).await;
    assert_eq!(again, first);
    let (_, answer) =
        h.post_json("/v1/conversations/c-2/messages", &json!({"text": "blue", "message_id": "m-2"})).await;
    assert_eq!(answer["replies"], json!([{"text": "got blue"}]), "{answer}");
    let (status, _, body) =
        h.send(Request::get("/v1/conversations/c-2/messages/never").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(body["error"].as_str().unwrap().contains("--dedupe-window"), "{body}");
    // The run's history, for the admin.
    let run = first["run_id"].as_str().unwrap();
    let (status, history) = h.admin(Method::GET, &format!("/v1/runs/{run}"), Some(ADMIN), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(history["segments"].as_array().unwrap().len(), 2, "{history}");
    h.stop().await;
}

#[tokio::test]
async fn the_admin_api_needs_the_bearer_token() {
    let h = Harness::new().await;
    for (method, uri) in [
        (Method::GET, "/v1/integrations"),
        (Method::PUT, "/v1/integrations/crm"),
        (Method::DELETE, "/v1/integrations/crm"),
        (Method::GET, "/v1/secrets"),
        (Method::PUT, "/v1/secrets/KEY"),
        (Method::DELETE, "/v1/secrets/KEY"),
        (Method::GET, "/v1/flows"),
        (Method::GET, "/v1/runs/r-1"),
    ] {
        for token in [None, Some("wrong"), Some("")] {
            let (status, body) = h.admin(method.clone(), uri, token, Some(json!({"value": "v"}))).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {uri} with {token:?}: {body}");
            assert!(body["error"].as_str().unwrap().contains("Authorization: Bearer"), "{body}");
        }
    }
    h.stop().await;
}

#[tokio::test]
async fn admin_integrations_secrets_and_flows() {
    let h = Harness::new().await;
    let settings = json!({
        "client_id": "cid",
        "client_secret": "cs-oneshot-secret-value",
        "authorization_url": "https://auth.example.com/authorize",
        "token_url": "https://auth.example.com/token",
        "api_origins": ["https://api.example.com"],
    });
    let (status, body) = h.admin(Method::PUT, "/v1/integrations/crm", Some(ADMIN), Some(settings)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["integration"]["status"], "incomplete");
    assert_eq!(body["integration"]["client_secret_set"], true);
    assert_eq!(body["callback_url"], "http://127.0.0.1:8080/oauth/callback");
    assert!(!body.to_string().contains("cs-oneshot-secret-value"), "write-only: {body}");
    let (status, body) = h.admin(Method::PUT, "/v1/integrations/crm", Some(ADMIN), Some(json!({"client_id": 5}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body["error"].as_str().unwrap().contains("client_id"), "points at the field: {body}");
    let (status, body) = h.admin(Method::PUT, "/v1/integrations/BAD%20NAME", Some(ADMIN), Some(json!({}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, list) = h.admin(Method::GET, "/v1/integrations", Some(ADMIN), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["integrations"][0]["name"], "crm", "{list}");

    let (status, _) =
        h.admin(Method::PUT, "/v1/secrets/API_KEY", Some(ADMIN), Some(json!({"value": "sv-oneshot-1"}))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = h.admin(Method::PUT, "/v1/secrets/bad-name", Some(ADMIN), Some(json!({"value": "x"}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = h.admin(Method::PUT, "/v1/secrets/EMPTY", Some(ADMIN), Some(json!({"value": ""}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, secrets) = h.admin(Method::GET, "/v1/secrets", Some(ADMIN), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(secrets["stored"][0]["name"], "API_KEY");
    assert!(!secrets.to_string().contains("sv-oneshot-1"), "values are never listed: {secrets}");

    let (status, flows) = h.admin(Method::GET, "/v1/flows", Some(ADMIN), None).await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<&str> = flows["flows"].as_array().unwrap().iter().map(|f| f["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["hello", "ask"], "highest priority first");

    assert_eq!(h.admin(Method::DELETE, "/v1/secrets/API_KEY", Some(ADMIN), None).await.0, StatusCode::NO_CONTENT);
    assert_eq!(h.admin(Method::DELETE, "/v1/secrets/API_KEY", Some(ADMIN), None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(h.admin(Method::DELETE, "/v1/integrations/crm", Some(ADMIN), None).await.0, StatusCode::NO_CONTENT);
    assert_eq!(h.admin(Method::DELETE, "/v1/integrations/crm", Some(ADMIN), None).await.0, StatusCode::NOT_FOUND);
    h.stop().await;
}

#[tokio::test]
async fn an_unknown_run_is_a_404_that_says_how_long_runs_are_kept() {
    let h = Harness::new().await;
    let (status, body) = h.admin(Method::GET, "/v1/runs/no-such-run", Some(ADMIN), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(body["error"].as_str().unwrap().contains("--history-retention"), "{body}");
    h.stop().await;
}

#[tokio::test]
async fn runs_are_listed_behind_the_admin_token_and_bad_parameters_are_each_named() {
    let h = Harness::new().await;
    assert_eq!(h.admin(Method::GET, "/v1/runs", None, None).await.0, StatusCode::UNAUTHORIZED);
    let (status, body) = h.admin(Method::GET, "/v1/runs", Some(ADMIN), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"runs": []}));
    let (status, body) =
        h.admin(Method::GET, "/v1/runs?status=done&limit=500&after=yesterday&flow=x", Some(ADMIN), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let message = body["error"].as_str().unwrap();
    for part in
        ["status: `done` is not a run status", "limit: must be a whole number from 1 to 200", "after: `yesterday`"]
    {
        assert!(message.contains(part), "{part} in {message}");
    }
    h.stop().await;
}

#[tokio::test]
async fn healthz_and_metrics() {
    let h = Harness::new().await;
    let (status, _, body) = h.send(Request::get("/healthz").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    let ready = json!({"status": "ok", "checks": [
        {"name": "store-query", "status": "ok"}, {"name": "store-write", "status": "ok"}]});
    assert_eq!(body, ready, "/healthz is readiness");
    let (status, _, body) = h.send(Request::get("/readyz").body(Body::empty()).unwrap()).await;
    assert_eq!((status, body), (StatusCode::OK, ready));
    let (status, _, body) = h.send(Request::get("/livez").body(Body::empty()).unwrap()).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"status": "ok"})));
    h.post_json("/v1/conversations/c-m/messages", &json!({"text": "hello"})).await;
    let (status, headers, body) = h.send(Request::get("/metrics").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers[header::CONTENT_TYPE].to_str().unwrap().starts_with("application/openmetrics-text"));
    let text = body.as_str().unwrap();
    assert!(text.contains("tern_messages_total 1"), "{text}");
    assert!(text.ends_with("# EOF\n"), "{text}");
    h.stop().await;
}

#[tokio::test]
async fn an_unknown_route_is_a_404() {
    let h = Harness::new().await;
    let (status, _, _) = h.send(Request::get("/v1/nothing").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    h.stop().await;
}

/// Signs in to the console; returns the `Cookie` header value.
async fn sign_in(h: &Harness) -> String {
    let req = Request::post("/login")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!("token={ADMIN}&next=%2Fruns")))
        .unwrap();
    let (status, headers, _) = h.send(req).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], "/runs");
    let set = headers[header::SET_COOKIE].to_str().unwrap().to_string();
    for part in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="] {
        assert!(set.contains(part), "{part} in {set}");
    }
    set.split(';').next().unwrap().to_string()
}

async fn page(h: &Harness, uri: &str, cookie: &str) -> (StatusCode, String) {
    let req = Request::get(uri).header(header::COOKIE, cookie).body(Body::empty()).unwrap();
    let (status, _, body) = h.send(req).await;
    (status, body.as_str().map(str::to_owned).unwrap_or_else(|| body.to_string()))
}

async fn form(h: &Harness, uri: &str, cookie: &str, body: &str) -> (StatusCode, axum::http::HeaderMap, String) {
    let req = Request::post(uri)
        .header(header::COOKIE, cookie)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body.to_string()))
        .unwrap();
    let (status, headers, body) = h.send(req).await;
    (status, headers, body.as_str().map(str::to_owned).unwrap_or_default())
}

fn csrf_in(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a form with a CSRF token") + 19;
    html[at..].split('"').next().unwrap().to_string()
}

#[tokio::test]
async fn the_console_needs_a_sign_in_and_refuses_a_wrong_token() {
    let h = Harness::new().await;
    for uri in ["/", "/runs", "/flows", "/try", "/plugins", "/runs/x", "/flows/hello/graph.svg"] {
        let (status, headers, _) = h.send(Request::get(uri).body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{uri}");
        assert!(headers[header::LOCATION].to_str().unwrap().starts_with("/login?next="), "{uri}");
    }
    let req = Request::post("/login")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from("token=wrong-token&next=%2F%2Fevil.example"))
        .unwrap();
    let (status, headers, body) = h.send(req).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(headers.get(header::SET_COOKIE).is_none());
    let body = body.as_str().unwrap();
    assert!(body.contains("That is not the admin token.") && !body.contains("wrong-token"), "{body}");
    assert!(!body.contains("evil.example"), "the next URL is only ever local: {body}");
    // A forged session id is no session; a form without the session's CSRF token is refused.
    let (status, _) = page(&h, "/runs", "tern_session=forged").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let cookie = sign_in(&h).await;
    let req = Request::get("/runs").header(header::COOKIE, &cookie).body(Body::empty()).unwrap();
    let (_, headers, _) = h.send(req).await;
    assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY");
    assert!(headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap().contains("frame-ancestors 'none'"));
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    let (status, _, body) = form(&h, "/integrations", &cookie, "csrf=forged&name=x").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    // Signing out ends the session.
    let (_, html) = page(&h, "/", &cookie).await;
    let (status, _, _) = form(&h, "/logout", &cookie, &format!("csrf={}", csrf_in(&html))).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(page(&h, "/", &cookie).await.0, StatusCode::SEE_OTHER);
    h.stop().await;
}

#[tokio::test]
async fn console_runs_flows_and_try_it_show_a_paused_and_resumed_conversation() {
    let h = Harness::new().await;
    let cookie = sign_in(&h).await;
    // Try it: the page carries the chat's session (only a signed-in operator gets one) and the
    // widget; its requests, of the console's own origin, send two messages to the `ask` flow.
    let req = Request::get("/try").header(header::COOKIE, &cookie).body(Body::empty()).unwrap();
    let (status, headers, html) = h.send(req).await;
    assert_eq!(status, StatusCode::OK);
    let html = html.as_str().unwrap().to_string();
    assert!(headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap().contains("script-src 'self'"));
    assert!(html.contains("src=\"/v1/channels/console/web/widget.js\""), "{html}");
    let at = html.find("data-session=\"").unwrap() + 14;
    let token = html[at..].split('"').next().unwrap().to_string();
    let conversation = token.split('.').nth(1).unwrap().to_string();
    let own_page = |method: Method, path: &str, body: Option<Value>| {
        let r = Request::builder()
            .method(method)
            .uri(format!("/v1/channels/console/web/{path}"))
            .header("sec-fetch-site", "same-origin")
            .header(header::COOKIE, &cookie)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::CONTENT_TYPE, "application/json");
        r.body(body.map_or_else(Body::empty, |b| Body::from(b.to_string()))).unwrap()
    };
    let transcript = async |n: usize| {
        for _ in 0..500 {
            let (_, _, body) = h.send_as_is(own_page(Method::GET, "history", None)).await;
            let entries = body["entries"].as_array().cloned().unwrap_or_default();
            if entries.len() >= n {
                return entries;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the Try it transcript never had {n} entries");
    };
    for (i, text) in ["ask", "<b>bold</b>"].into_iter().enumerate() {
        let body = json!({"message_id": format!("t-{i}"), "text": text});
        let (status, _, answer) = h.send_as_is(own_page(Method::POST, "messages", Some(body))).await;
        assert!(status.is_success(), "{answer}");
        transcript(2 * (i + 1)).await;
    }
    let entries = transcript(4).await;
    assert_eq!(entries[1]["text"], "what?");
    assert_eq!(entries[3]["text"], "got <b>bold</b>", "a text, which the widget shows as text");
    assert!(entries[3]["run_id"].is_string(), "a reply links to its run: {entries:?}");
    // The console's chat gives sessions to no one who asks, and answers no other page.
    let (status, _, _) = h.send_as_is(own_page(Method::POST, "sessions", Some(json!({})))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let mut from_elsewhere = own_page(Method::GET, "history", None);
    from_elsewhere.headers_mut().remove("sec-fetch-site");
    assert_eq!(h.send_as_is(from_elsewhere).await.0, StatusCode::FORBIDDEN);
    // Its sessions go with the sign-in: without the console's cookie (signed out), none.
    let mut signed_out = own_page(Method::GET, "history", None);
    signed_out.headers_mut().remove(header::COOKIE);
    assert_eq!(h.send_as_is(signed_out).await.0, StatusCode::UNAUTHORIZED);

    // Runs: the one run, with both activations, in the console's own channel (apart from the
    // `default` channel's conversation of the same id, and never delivered to its webhook).
    let (_, html) = page(&h, &format!("/runs?conversation={conversation}"), &cookie).await;
    assert_eq!(html.matches("<tr").count(), 0, "not a `default` conversation: {html}");
    let stored = format!("channel%3Aconsole%3A{conversation}");
    let (status, html) = page(&h, &format!("/runs?conversation={stored}"), &cookie).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(html.matches("<tr").count(), 2, "a header and one run: {html}");
    let at = html.find("href=\"/runs/").unwrap() + 12;
    let run = html[at..].split('"').next().unwrap().to_string();
    let (status, html) = page(&h, &format!("/runs/{run}"), &cookie).await;
    assert_eq!(status, StatusCode::OK);
    for part in ["ask", "what?", "got &lt;b&gt;bold&lt;/b&gt;", "Activation 1", "Activation 2", "Completed"] {
        assert!(html.contains(part), "{part} in the run page");
    }
    // Work and the wait for the contact's answer are told apart; the contact got answers.
    for part in
        ["<dt>Working</dt><dd id=\"work-time\">", "<dd id=\"wait-time\">", "(between a question and its answer)"]
    {
        assert!(html.contains(part), "{part} in the run page: {html}");
    }
    assert!(!html.contains("no-answer") && !html.contains("data-recovery"), "a clean run: {html}");
    let (status, html) = page(&h, "/runs?status=bogus", &cookie).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("<code>bogus</code> is not a run status"), "{html}");
    assert_eq!(page(&h, "/runs/no-such-run", &cookie).await.0, StatusCode::NOT_FOUND);

    // Flows: a table of both flows, each a link to its page, with its last run and failures;
    // the invalid file with its diagnostic (no Markdown backticks).
    let (_, html) = page(&h, "/flows", &cookie).await;
    for part in [
        "<table id=\"flows\">",
        "id=\"flow-hello\"",
        "<a href=\"/flows/ask\">",
        "<th>Last run</th>",
        "<th>Failures</th>",
        "flows/broken.json",
        "unknown field <code>nxt</code>",
        "never run",
    ] {
        assert!(html.contains(part), "{part} in the flows page: {html}");
    }
    assert!(!html.contains('`'), "{html}");
    // The flow's page: its facts, its last run (the one above) and its picture.
    let (status, html) = page(&h, "/flows/ask", &cookie).await;
    assert_eq!(status, StatusCode::OK);
    for part in
        ["message with a keyword: ask", "/flows/ask/graph.svg", &format!("href=\"/runs/{run}\""), "Runs of this flow"]
    {
        assert!(html.contains(part), "{part} in the flow's page: {html}");
    }
    assert_eq!(page(&h, "/flows/nope", &cookie).await.0, StatusCode::NOT_FOUND);
    let req = Request::get("/flows/ask/graph.svg").header(header::COOKIE, &cookie).body(Body::empty()).unwrap();
    let (status, headers, body) = h.send(req).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "image/svg+xml");
    let svg = body.as_str().unwrap();
    assert!(svg.contains("<svg") && svg.contains("q") && svg.contains("say"), "{svg}");
    h.stop().await;
}

#[tokio::test]
async fn the_integrations_form_keeps_what_was_typed_lists_every_problem_and_asks_before_replacing() {
    let h = Harness::new().await;
    let cookie = sign_in(&h).await;
    let (_, html) = page(&h, "/", &cookie).await;
    let csrf = csrf_in(&html);
    let bad = format!(
        "csrf={csrf}&name=crm&kind=authorization_code&client_secret=typed-secret-123&authorization_url=nope&token_url=&api_origins=&params=novalue&scopes=read+write"
    );
    let (status, _, html) = form(&h, "/integrations", &cookie, &bad).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(!html.contains("typed-secret-123"), "the secret is never sent back");
    assert!(html.contains("value=\"read write\""), "what was typed stays");
    for part in [
        "<code>nope</code> is not a whole URL; write it with its scheme",
        "<code>novalue</code> is not key=value",
        "“Client ID”",
        "at least one API origin",
    ] {
        assert!(html.contains(part), "{part} in the form");
    }
    let good = format!(
        "csrf={csrf}&name=crm&kind=authorization_code&client_id=id&client_secret=s&authorization_url=https%3A%2F%2Fa.example%2Fauth&token_url=https%3A%2F%2Fa.example%2Ftoken&api_origins=https%3A%2F%2Fapi.example"
    );
    let (status, headers, _) = form(&h, "/integrations", &cookie, &good).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], "/?saved=crm");
    let (_, html) = page(&h, "/?saved=crm", &cookie).await;
    assert!(html.contains("Integration <strong>crm</strong> saved") && html.contains(">Not authorized yet<"), "{html}");
    assert!(!html.contains("Incomplete"), "{html}");
    // The same name again: asked, not replaced.
    let (status, _, html) = form(&h, "/integrations", &cookie, &good).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(html.contains("already exists") && html.contains("name=\"replace\""), "{html}");
    let (status, _, _) = form(&h, "/integrations", &cookie, &format!("{good}&replace=yes")).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    // Edit keeps the stored secret when the field is blank; remove asks first.
    let (_, html) = page(&h, "/?edit=crm", &cookie).await;
    assert!(html.contains("Edit integration crm") && html.contains("Leave blank to keep the stored secret"), "{html}");
    let (status, _, html) = form(&h, "/integrations/crm/remove", &cookie, &format!("csrf={csrf}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Remove crm?"), "{html}");
    let (status, headers, _) = form(&h, "/integrations/crm/remove", &cookie, &format!("csrf={csrf}&confirm=yes")).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], "/?removed=crm");
    h.stop().await;
}

/// Runs that got over a failure look different from clean ones, in the list and on their
/// page; a branch where no case matched says so in words; a run that ended without a reply
/// says the contact got no answer.
#[tokio::test]
async fn recovered_runs_unmatched_branches_and_unanswered_contacts_are_said_in_words() {
    let h = Harness::new().await;
    let sources = [
        r#"{"version": 1, "id": "recover", "trigger": {"type": "message", "match": {"keywords": ["recover"]}},
          "steps": [
            {"id": "call", "type": "fetch_variables", "request": {"url": "http://127.0.0.1:1/x"}, "variables": {"a": "b"}, "on_error": "sorry"},
            {"id": "fine", "type": "send_message", "text": "fine", "next": "end"},
            {"id": "sorry", "type": "send_message", "text": "the service is down"}
          ]}"#,
        r#"{"version": 1, "id": "crash", "trigger": {"type": "message", "match": {"keywords": ["crash"]}},
          "steps": [{"id": "call", "type": "fetch_variables", "request": {"url": "http://127.0.0.1:1/x"}, "variables": {"a": "b"}}]}"#,
        r#"{"version": 1, "id": "oops", "trigger": {"type": "error"},
          "steps": [{"id": "sorry", "type": "send_message", "text": "sorry from the error flow"}]}"#,
        r#"{"version": 1, "id": "branchy", "trigger": {"type": "message", "match": {"keywords": ["branchy"]}},
          "variables": {"color": "red"},
          "steps": [
            {"id": "route", "type": "branch", "cases": [{"when": {"var": "color", "equals": "blue"}, "next": "blue"}]},
            {"id": "other", "type": "send_message", "text": "not blue", "next": "end"},
            {"id": "blue", "type": "send_message", "text": "blue"}
          ]}"#,
        r#"{"version": 1, "id": "silent", "trigger": {"type": "message", "match": {"keywords": ["silent"]}},
          "steps": [{"id": "set", "type": "set_variables", "variables": {"x": "1"}}]}"#,
        r#"{"version": 1, "id": "asker", "trigger": {"type": "message", "match": {"keywords": ["asker"]}},
          "steps": [{"id": "q", "type": "ask", "text": "Your name?", "save_as": "name"},
                    {"id": "set", "type": "set_variables", "variables": {"x": "{{name}}"}}]}"#,
    ];
    let registry = tern_steps::registry();
    let flows = sources
        .iter()
        .map(|source| {
            let opts = LoadOptions::new(&registry);
            let flow = load_flow(source, &opts).unwrap_or_else(|d| panic!("{d:?}"));
            LoadedFlow { hash: flow_hash(source), flow: Arc::new(flow) }
        })
        .collect();
    h.conversations.set_flows(flows);
    let mut runs = std::collections::BTreeMap::new();
    // With a message id of its own, each answer waits for its history to be stored.
    for text in ["recover", "crash", "branchy", "silent"] {
        let (status, answer) = h
            .post_json(
                &format!("/v1/conversations/c-{text}/messages"),
                &json!({"text": text, "message_id": format!("m-{text}")}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        runs.insert(text, answer["run_id"].as_str().unwrap().to_string());
        if text == "crash" {
            assert_eq!(answer["status"], "failed", "{answer}");
            runs.insert("oops", answer["error_flow"]["run_id"].as_str().unwrap().to_string());
        }
    }
    // Asked, answered, and then the run ended without a word to that answer.
    for (text, id) in [("asker", "m-asker-1"), ("Bob", "m-asker-2")] {
        let (status, answer) =
            h.post_json("/v1/conversations/c-asker/messages", &json!({"text": text, "message_id": id})).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        runs.insert("asker", answer["run_id"].as_str().unwrap().to_string());
    }
    let cookie = sign_in(&h).await;

    // The list: badges on the recovered run and on the error flow's run, none on clean ones.
    let (_, html) = page(&h, "/runs", &cookie).await;
    let row = |id: &str| {
        let at = html.find(&format!("<tr data-run=\"{id}\">")).unwrap_or_else(|| panic!("no row for {id}: {html}"));
        html[at..].split("</tr>").next().unwrap().to_string()
    };
    // (From the summaries: the list reads no run's history.)
    assert!(row(&runs["recover"]).contains("recovered via on_error"), "{html}");
    assert!(
        row(&runs["oops"]).contains("data-recovery=\"error_flow\"") && row(&runs["oops"]).contains(">error flow<"),
        "{html}"
    );
    for clean in ["branchy", "silent", "crash"] {
        assert!(!row(&runs[clean]).contains("data-recovery"), "{clean}: {html}");
    }
    // Completed runs that left the contact without an answer (to its last message) are marked.
    for unanswered in ["silent", "asker"] {
        assert!(row(&runs[unanswered]).contains("data-unanswered"), "{unanswered}: {html}");
    }
    for answered in ["branchy", "recover"] {
        assert!(!row(&runs[answered]).contains("data-unanswered"), "{answered}: {html}");
    }

    let (_, html) = page(&h, &format!("/runs/{}", runs["recover"]), &cookie).await;
    assert!(html.contains("recovered via on_error") && html.contains("failed, went to on_error"), "{html}");
    assert!(html.contains("id=\"recovered\"") && !html.contains("no-answer"), "{html}");
    let (_, html) = page(&h, &format!("/runs/{}", runs["crash"]), &cookie).await;
    assert!(html.contains("id=\"handled-by\"") && html.contains(&format!("href=\"/runs/{}\"", runs["oops"])), "{html}");
    assert!(!html.contains("no-answer"), "the error flow answered: {html}");
    let (_, html) = page(&h, &format!("/runs/{}", runs["oops"]), &cookie).await;
    assert!(
        html.contains("This is the error flow") && html.contains(&format!("href=\"/runs/{}\"", runs["crash"])),
        "{html}"
    );

    let (_, html) = page(&h, &format!("/runs/{}", runs["branchy"]), &cookie).await;
    assert!(html.contains("No case matched: the run went on to the next step."), "{html}");
    assert!(!html.contains("&quot;case&quot;: null") && !html.contains("\"case\": null"), "{html}");

    let (_, html) = page(&h, &format!("/runs/{}", runs["silent"]), &cookie).await;
    assert!(html.contains("The contact got no answer."), "{html}");
    let (_, html) = page(&h, &format!("/runs/{}", runs["asker"]), &cookie).await;
    assert!(html.contains("The contact got no answer to its last message."), "{html}");
    h.stop().await;
}

/// Each kind has its own form with only its fields (tabs that are links: no JavaScript), a
/// static key's edit form chooses no client authentication, no Markdown backtick reaches the
/// page, and Test says what it did: a static key without an identity URL has nothing to call.
#[tokio::test]
async fn each_kind_has_its_own_form_and_test_says_what_it_did() {
    let h = Harness::new().await;
    let cookie = sign_in(&h).await;
    let (_, html) = page(&h, "/", &cookie).await;
    let csrf = csrf_in(&html);
    assert!(html.contains("name=\"authorization_url\"") && html.contains("id=\"callback\""), "{html}");
    assert!(!html.contains("name=\"static_secret\""), "{html}");
    assert!(html.contains("id=\"kind-static\" href=\"/?kind=static#add\""), "{html}");
    assert!(!html.contains('`'), "no Markdown backticks in HTML: {html}");
    let (_, html) = page(&h, "/?kind=static", &cookie).await;
    assert!(html.contains("name=\"kind\" value=\"static\"") && html.contains("name=\"static_secret\""), "{html}");
    for absent in ["client_id", "client_secret", "token_url", "authorization_url", "client_auth", "scopes", "params"] {
        assert!(!html.contains(&format!("name=\"{absent}\"")), "{absent} in the static form: {html}");
    }
    assert!(!html.contains("id=\"callback\""), "{html}");
    assert!(!html.contains('`'), "{html}");
    let (_, html) = page(&h, "/?kind=client_credentials", &cookie).await;
    assert!(html.contains("name=\"token_url\"") && !html.contains("name=\"authorization_url\""), "{html}");

    // A static key: saved, shown ready, edited without a client authentication chosen.
    let (status, _) =
        h.admin(Method::PUT, "/v1/secrets/KV_KEY", Some(ADMIN), Some(json!({"value": "kv-key-value-123"}))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let body = format!("csrf={csrf}&name=kv&kind=static&static_secret=KV_KEY&api_origins=https%3A%2F%2Fapi.example");
    let (status, _, html) = form(&h, "/integrations", &cookie, &body).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{html}");
    let (_, html) = page(&h, "/?edit=kv", &cookie).await;
    assert!(html.contains("data-kind=\"static\"") && !html.contains("name=\"client_auth\""), "{html}");
    assert!(
        html.contains("id=\"kind-client_credentials\" href=\"/?edit=kv&amp;kind=client_credentials#add\""),
        "{html}"
    );
    let (_, html) = page(&h, "/?edit=kv&kind=client_credentials", &cookie).await;
    assert!(html.contains("<option value=\"\" selected>Provider default"), "no method chosen for a static key: {html}");
    assert!(!html.contains("value=\"basic\" selected"), "{html}");

    // Test: nothing to call is not "it works".
    let (status, _, html) = form(&h, "/integrations/kv/test", &cookie, &format!("csrf={csrf}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Test of kv: </strong>nothing to call; add an identity URL to test it."), "{html}");
    assert!(html.contains("The key is in the secret <code>KV_KEY</code>"), "{html}");
    assert!(!html.contains("it works") && !html.contains("kv-key-value-123"), "{html}");

    // An authorization-code integration nobody authorized: not authorized yet, in words.
    let good = format!(
        "csrf={csrf}&name=crm&kind=authorization_code&client_id=id&client_secret=s&authorization_url=https%3A%2F%2Fa.example%2Fauth&token_url=https%3A%2F%2Fa.example%2Ftoken&api_origins=https%3A%2F%2Fapi.example"
    );
    assert_eq!(form(&h, "/integrations", &cookie, &good).await.0, StatusCode::SEE_OTHER);
    let (_, _, html) = form(&h, "/integrations/crm/test", &cookie, &format!("csrf={csrf}")).await;
    assert!(html.contains("Test of crm: </strong>it cannot be used."), "{html}");
    assert!(html.contains("Not authorized yet: click Authorize."), "{html}");
    assert!(!html.contains('`') && !html.contains("Incomplete"), "{html}");
    h.stop().await;
}

/// Answers that echo the caller's input never mask what the caller sent: a masked echo would
/// confirm a guessed secret. Secrets the caller did not send stay masked.
#[tokio::test]
async fn an_echo_of_the_caller_s_own_input_is_no_oracle_for_secrets() {
    let h = Harness::new().await;
    let secret = "oracle-secret-value-7731";
    let (status, _) = h.admin(Method::PUT, "/v1/secrets/PIN", Some(ADMIN), Some(json!({"value": secret}))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    // In the path, echoed in a 404.
    let uri = format!("/v1/conversations/xx{secret}yy/messages/zz{secret}zz");
    let (status, _, body) = h.send(Request::get(uri.as_str()).body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let text = body.to_string();
    assert!(!text.contains("[redacted]"), "a guess is not confirmed: {text}");
    // In the body, echoed in a type error and in an answer's message id.
    let (_, body) =
        h.post_json("/v1/conversations/c1/messages", &json!({"text": "x", "contact": format!("a {secret} b")})).await;
    assert!(!body.to_string().contains("[redacted]"), "{body}");
    let (_, body) = h.post_json("/v1/conversations/c1/messages", &json!({"text": "hello", "message_id": secret})).await;
    assert!(!body.to_string().contains("[redacted]"), "{body}");
    // A flow that echoes the message (`Hi {{message.text}}`) echoes a guess as it was typed.
    let (_, body) = h
        .post_json("/v1/conversations/c2/messages", &json!({"text": format!("hello {secret}"), "channel": "web"}))
        .await;
    let reply = body["replies"][0]["text"].as_str().unwrap();
    assert!(reply.contains(secret) && !reply.contains("[redacted]"), "{body}");
    h.stop().await;
}

/// The masking layer masks every handler's answer except one its handler serialized and
/// masked already (marked [`super::mask::Masked`], as the message answers are), which it passes
/// without reading it back; the handler's masking leaves what the caller sent.
#[tokio::test]
async fn the_layer_masks_every_answer_but_one_its_handler_masked_already() {
    use super::mask::{CallerInput, Masked, masked_json};
    use axum::response::IntoResponse;
    let secret = "layer-secret-value-4411";
    tern_engine::secrets::known::remember_str(secret);
    let app = Router::new()
        .route("/plain", axum::routing::get(move || async move { format!("the key is {secret}") }))
        .route(
            "/marked",
            axum::routing::get(move || async move {
                // A (wrong) claim that the body is masked: the layer trusts the mark.
                let mut r = format!("the key is {secret}").into_response();
                r.extensions_mut().insert(Masked);
                r
            }),
        )
        .route(
            "/json",
            axum::routing::get(move |axum::Extension(caller): axum::Extension<CallerInput>| async move {
                masked_json(StatusCode::OK, &json!({"key": secret}), Some(&caller))
            }),
        )
        .layer(axum::middleware::from_fn(super::mask::mask_answer));
    let get = |uri: &str| {
        let req = Request::get(uri).body(Body::empty()).unwrap();
        let app = app.clone();
        async move {
            let resp = app.oneshot(req).await.unwrap();
            let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
            String::from_utf8(bytes.to_vec()).unwrap()
        }
    };
    assert_eq!(get("/plain").await, "the key is [redacted]");
    assert_eq!(get("/marked").await, format!("the key is {secret}"), "a marked body is not read back");
    assert_eq!(get("/json").await, r#"{"key":"[redacted]"}"#);
    assert_eq!(get(&format!("/json?guess={secret}")).await, format!(r#"{{"key":"{secret}"}}"#));
}

/// The admin API saves through the same rules as the console and the command line, and words
/// each problem with its JSON field.
#[tokio::test]
async fn the_admin_api_words_problems_with_json_fields_and_a_moved_token_url_needs_the_secret_again() {
    let h = Harness::new().await;
    let service = json!({"kind": "client_credentials", "client_id": "id", "token_url": "https://a.example/token"});
    let (status, body) = h.admin(Method::PUT, "/v1/integrations/svc", Some(ADMIN), Some(service.clone())).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("/api_origins: at least one API origin is required (`api_origins`"), "{error}");
    assert!(error.contains("/client_secret: a client_credentials integration needs its client secret"), "{error}");
    assert!(!error.contains("--"), "no command-line options in the API's words: {error}");
    let mut good = service.clone();
    good["api_origins"] = json!(["https://api.example"]);
    good["client_secret"] = json!("admin-client-secret-1");
    assert_eq!(h.admin(Method::PUT, "/v1/integrations/svc", Some(ADMIN), Some(good.clone())).await.0, StatusCode::OK);
    let mut same = good.clone();
    same.as_object_mut().unwrap().remove("client_secret");
    assert_eq!(h.admin(Method::PUT, "/v1/integrations/svc", Some(ADMIN), Some(same.clone())).await.0, StatusCode::OK);
    same["token_url"] = json!("https://evil.example/token");
    let (status, body) = h.admin(Method::PUT, "/v1/integrations/svc", Some(ADMIN), Some(same)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"].as_str().unwrap().starts_with("/client_secret: the token URL moved to another host"),
        "{body}"
    );
    h.stop().await;
}

#[tokio::test]
async fn console_banners_name_only_real_integrations_and_a_moved_token_url_needs_the_secret_again() {
    let h = Harness::new().await;
    let cookie = sign_in(&h).await;
    let (_, html) = page(&h, "/?authorized=Session%20expired%3A%20sign%20in%20at%20evil.example", &cookie).await;
    assert!(!html.contains("evil.example") && !html.contains("All set"), "{html}");
    let csrf = csrf_in(&html);
    let good = format!(
        "csrf={csrf}&name=svc&kind=client_credentials&client_id=id&client_secret=stored-client-secret-1&token_url=https%3A%2F%2Fa.example%2Ftoken&api_origins=https%3A%2F%2Fapi.example"
    );
    let (status, _, _) = form(&h, "/integrations", &cookie, &good).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    // Editing without the secret: fine where the token URL stays, refused where it moves.
    let same = format!(
        "csrf={csrf}&original=svc&name=svc&kind=client_credentials&client_id=id2&token_url=https%3A%2F%2Fa.example%2Ftoken&api_origins=https%3A%2F%2Fapi.example"
    );
    assert_eq!(form(&h, "/integrations", &cookie, &same).await.0, StatusCode::SEE_OTHER);
    let moved = same.replace("a.example%2Ftoken", "evil.example%2Ftoken");
    let (status, _, html) = form(&h, "/integrations", &cookie, &moved).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains("type the client secret again"), "{html}");
    h.stop().await;
}

/// The console's form takes a basic integration with a rate limit, shows the rate again when
/// editing, and puts a rate it cannot read, or a password too short to mask, at its field.
#[tokio::test]
async fn the_form_takes_a_basic_integration_with_a_rate_limit() {
    let h = Harness::new().await;
    let cookie = sign_in(&h).await;
    let (_, html) = page(&h, "/?kind=basic", &cookie).await;
    let csrf = csrf_in(&html);
    assert!(html.contains("name=\"username\"") && html.contains("name=\"password\" value=\"\""), "{html}");
    assert!(!html.contains("name=\"client_secret\""), "{html}");
    let base = format!("csrf={csrf}&name=erp&kind=basic&username=bot&api_origins=https%3A%2F%2Ferp.example");
    let (status, _, html) = form(&h, "/integrations", &cookie, &format!("{base}&password=short&rate_limit=five")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{html}");
    assert!(html.contains("is not a rate") && html.contains("5/s or 100/min"), "{html}");
    let (status, _, html) =
        form(&h, "/integrations", &cookie, &format!("{base}&password=pw-0123456789&rate_limit=5%2Fs+burst+3")).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{html}");
    let (_, html) = page(&h, "/?edit=erp", &cookie).await;
    assert!(html.contains("value=\"5/s burst 3\""), "{html}");
    assert!(!html.contains("pw-0123456789"), "{html}");
    let (status, _, html) = form(&h, "/integrations", &cookie, &format!("{base}&original=erp&password=short")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{html}");
    assert!(html.contains("shorter than 8 characters"), "{html}");
    h.stop().await;
}

/// The console's form takes a service account's JSON key file (its account, key id and token
/// URL fill in the settings; the key is stored, never shown) and a client certificate with its
/// key and a private CA on any kind; editing keeps the certificate and the stored key when their
/// fields are left as they are, and a key file that is not one is said at its field.
#[tokio::test]
async fn the_form_takes_a_key_file_and_a_client_certificate() {
    use tern_integrations::store::Store as _;
    let h = Harness::new().await;
    let cookie = sign_in(&h).await;
    let (_, html) = page(&h, "/?kind=jwt_bearer", &cookie).await;
    let csrf = csrf_in(&html);
    assert!(html.contains("<textarea id=\"f-private_key\""), "{html}");
    assert!(html.contains("<textarea id=\"f-client_cert\""), "every kind can have a certificate: {html}");
    let pem = std::fs::read_to_string(testkit::repo().join("testkit/fixtures/service-account-test.key.pem")).unwrap();
    let key_file = json!({
        "type": "service_account", "client_email": "bot@project.iam.gserviceaccount.com",
        "private_key_id": "kid-1", "private_key": pem, "token_uri": "https://oauth2.googleapis.com/token",
    })
    .to_string();
    let tls = testkit::mtls::MtlsServer::start();
    let client = tls.client();
    let enc = |s: &str| percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string();
    let base = format!(
        "csrf={csrf}&name=sheets&kind=jwt_bearer&scopes=https%3A%2F%2Fwww.googleapis.com%2Fauth%2Fspreadsheets&api_origins=https%3A%2F%2Fsheets.googleapis.com"
    );
    let (status, _, html) = form(&h, "/integrations", &cookie, &format!("{base}&private_key=%7B%22type%22%3A1")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{html}");
    assert!(html.contains("not a service-account key in JSON"), "{html}");
    assert!(!html.contains("a token URL is required"), "nothing blamed on the fields the file would fill: {html}");
    let full = format!(
        "{base}&private_key={}&client_cert={}&client_key={}&ca_cert={}",
        enc(&key_file),
        enc(&client.cert),
        enc(&client.key),
        enc(&tls.ca_pem())
    );
    let (status, _, html) = form(&h, "/integrations", &cookie, &full).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{html}");
    let sheets = tern_engine::IntegrationName::new("sheets").unwrap();
    let rec = h.store.get_integration(&sheets).await.unwrap().unwrap();
    assert_eq!(rec.config.client_id.as_deref(), Some("bot@project.iam.gserviceaccount.com"));
    assert_eq!(rec.config.key_id.as_deref(), Some("kid-1"));
    assert_eq!(rec.config.token_url.as_ref().map(url::Url::as_str), Some("https://oauth2.googleapis.com/token"));
    assert!(rec.config.client_cert.is_some() && rec.config.ca_cert.is_some() && rec.client_key_set);
    // Edited with the secrets left blank: the key, the certificate and its key are kept.
    let (_, html) = page(&h, "/?edit=sheets", &cookie).await;
    assert!(!html.contains("PRIVATE KEY"), "no key is shown again: {html}");
    assert!(html.contains("value=\"https://oauth2.googleapis.com/token\""), "the key file's token URL: {html}");
    // What the browser sends back: the fields as shown, the secrets blank.
    let edit = format!(
        "{base}&original=sheets&client_id={}&token_url={}&subject=ada%40example.com&client_cert={}",
        enc("bot@project.iam.gserviceaccount.com"),
        enc("https://oauth2.googleapis.com/token"),
        enc(&client.cert)
    );
    let (status, _, html) = form(&h, "/integrations", &cookie, &edit).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{html}");
    let rec = h.store.get_integration(&sheets).await.unwrap().unwrap();
    assert_eq!(rec.config.subject.as_deref(), Some("ada@example.com"));
    assert!(rec.client_key_set && rec.client_secret_set, "{rec:?}");
    // A new key file of another account replaces the account and key id the form still shows.
    let rotated = key_file.replace("bot@project", "new-bot@project").replace("kid-1", "kid-2");
    let (status, _, html) = form(&h, "/integrations", &cookie, &format!("{edit}&private_key={}", enc(&rotated))).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{html}");
    let rec = h.store.get_integration(&sheets).await.unwrap().unwrap();
    assert_eq!(rec.config.client_id.as_deref(), Some("new-bot@project.iam.gserviceaccount.com"));
    assert_eq!(rec.config.key_id.as_deref(), Some("kid-2"));
    h.stop().await;
}

/// What needs the operator is said on the integrations page with the way to fix it: a revoked
/// authorization (with its Authorize button) and a client certificate about to expire (with
/// the command that renews it); a healthy integration gets no banner.
#[tokio::test]
async fn integrations_that_need_the_operator_get_a_banner_with_the_fix() {
    use tern_integrations::store::Store as _;
    let h = Harness::new().await;
    let cookie = sign_in(&h).await;
    let server = testkit::mtls::MtlsServer::start();
    let soon = server.client_expiring_in(10);
    let fine = server.client();
    for (name, pem) in [("bank", &soon), ("bank2", &fine)] {
        let body = json!({
            "kind": "api_key", "key_name": "X-Api-Key", "api_key": "key-0123456789",
            "api_origins": ["https://api.bank.example"], "client_cert": pem.cert, "client_key": pem.key,
        });
        let (status, answer) = h.admin(Method::PUT, &format!("/v1/integrations/{name}"), Some(ADMIN), Some(body)).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer["integration"]["client_key_set"], true, "{answer}");
        assert!(!answer.to_string().contains("PRIVATE KEY"), "the key is never answered: {answer}");
    }
    let crm = tern_engine::IntegrationName::new("crm").unwrap();
    let config = tern_integrations::config::IntegrationConfig {
        client_id: Some("id".into()),
        authorization_url: Some("https://auth.example/authorize".parse().unwrap()),
        token_url: Some("https://auth.example/token".parse().unwrap()),
        api_origins: vec!["https://api.example".into()],
        ..Default::default()
    };
    h.store.put_integration(&crm, &config, None).await.unwrap();
    h.store
        .set_status(
            &crm,
            tern_store::IntegrationStatus::NeedsReauthorization,
            Some("the provider rejected the refresh token (invalid_grant)"),
        )
        .await
        .unwrap();
    let (_, html) = page(&h, "/", &cookie).await;
    assert!(html.contains("id=\"attention-crm\"") && html.contains("needs to be authorized again"), "{html}");
    assert!(html.contains("action=\"/integrations/crm/authorize\"") && html.contains("Authorize crm"), "{html}");
    assert!(html.contains("id=\"attention-cert-bank\"") && html.contains("CN=tern-client"), "{html}");
    assert!(html.contains("tern integrations add bank --update"), "{html}");
    assert!(
        !html.contains("attention-cert-bank2") && !html.contains("attention-bank"),
        "healthy ones get none: {html}"
    );
    assert!(!html.contains(&soon.key) && !html.contains("PRIVATE KEY"), "{html}");
    h.stop().await;
}

#[tokio::test]
async fn channels_are_managed_behind_the_admin_token_with_problems_per_field_and_no_secret_in_answers() {
    let h = Harness::new().await;
    const TOKEN: &str = "oneshot-support-token-0123456789";
    const SIGNING: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let settings = json!({"kind": "generic", "tokens": [TOKEN], "signing_secrets": [SIGNING],
        "webhook_url": "https://chat.example.com/replies?sig=query-secret", "webhook_secret": SIGNING});
    for (method, uri) in [
        (Method::GET, "/v1/channels"),
        (Method::GET, "/v1/channels/support"),
        (Method::PUT, "/v1/channels/support"),
        (Method::DELETE, "/v1/channels/support"),
    ] {
        let (status, body) = h.admin(method.clone(), uri, None, Some(settings.clone())).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {uri}: {body}");
        let (status, _) = h.admin(method.clone(), uri, Some("wrong-token"), Some(settings.clone())).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {uri}");
    }
    let (status, _) = h.admin(Method::GET, "/v1/channels/support", Some(ADMIN), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing was saved without the token");

    let (status, saved) = h.admin(Method::PUT, "/v1/channels/support", Some(ADMIN), Some(settings.clone())).await;
    assert_eq!(status, StatusCode::OK, "{saved}");
    assert_eq!(saved["tokens"], 1);
    assert_eq!(saved["signing_secrets"], 1);
    assert_eq!(saved["webhook_secret_set"], true);
    assert_eq!(saved["webhook_url"], "https://chat.example.com/replies?…");
    let (status, one) = h.admin(Method::GET, "/v1/channels/support", Some(ADMIN), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one["source"], "stored");
    let (status, list) = h.admin(Method::GET, "/v1/channels", Some(ADMIN), None).await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = list["channels"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["console", "default", "support"]);
    assert_eq!(list["channels"][0]["source"], "builtin");
    assert_eq!(list["channels"][1]["source"], "flags");
    for answer in [&saved, &one, &list] {
        let text = answer.to_string();
        for secret in [TOKEN, SIGNING, &SIGNING[6..], "query-secret", CHANNEL] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
    }

    // Every broken rule, each at its field.
    let (status, body) = h
        .admin(
            Method::PUT,
            "/v1/channels/bad",
            Some(ADMIN),
            Some(json!({"kind": "generic", "tokens": ["short"], "signing_secrets": ["whsec_@@"], "webhook_url": "ftp://x.example/"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["code"], "invalid-settings");
    let fields: Vec<&str> = body["problems"].as_array().unwrap().iter().map(|p| p["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["tokens", "signing_secrets", "webhook_url", "webhook_secret"], "{body}");
    assert!(body["error"].as_str().unwrap().contains("/webhook_url: the webhook URL must be http or https"), "{body}");
    // A body of the wrong shape names the field too.
    let (status, body) =
        h.admin(Method::PUT, "/v1/channels/bad", Some(ADMIN), Some(json!({"kind": "telepathy", "tokens": []}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["problems"][0]["field"], "kind", "{body}");
    let (status, body) =
        h.admin(Method::PUT, "/v1/channels/bad", Some(ADMIN), Some(json!({"kind": "generic", "token": "x"}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body["error"].as_str().unwrap().contains("unknown field `token`"), "{body}");
    // A body that is not an object of settings (an array would fill the fields by position).
    for bad in [json!(["generic", ["tok-0123456789abcdef"]]), json!(null), json!("generic")] {
        let (status, body) = h.admin(Method::PUT, "/v1/channels/bad", Some(ADMIN), Some(bad.clone())).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
        assert!(body["error"].as_str().unwrap().contains("a JSON object of channel settings"), "{body}");
    }
    // A missing field is pointed at, not at the body's root.
    let (status, body) = h.admin(Method::PUT, "/v1/channels/bad", Some(ADMIN), Some(json!({"tokens": []}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"], "at /kind: missing field `kind`", "{body}");
    assert_eq!(body["problems"][0]["field"], "kind", "{body}");
    // A bad name in the path: its own code and the problem at `name`.
    let (status, body) = h.admin(Method::PUT, "/v1/channels/Support", Some(ADMIN), Some(settings.clone())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["code"], "bad-channel-name", "{body}");
    assert_eq!(body["problems"][0]["field"], "name", "{body}");
    assert!(body["error"].as_str().unwrap().contains("lower case (`support`)"), "{body}");
    // No credentials: refused, unless the channel is opened insecurely (`kiosk` here).
    let (status, body) = h.admin(Method::PUT, "/v1/channels/bare", Some(ADMIN), Some(json!({"kind": "generic"}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["problems"][0]["field"], "tokens");
    let (status, body) =
        h.admin(Method::PUT, "/v1/channels/kiosk", Some(ADMIN), Some(json!({"kind": "generic"}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["open"], true);

    // `default` is configured by flags.
    let (status, body) = h.admin(Method::PUT, "/v1/channels/default", Some(ADMIN), Some(settings.clone())).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["error"].as_str().unwrap().contains("--channel-token"), "{body}");
    let (status, _) = h.admin(Method::DELETE, "/v1/channels/default", Some(ADMIN), None).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, body) = h.admin(Method::GET, "/v1/channels/no.dots", Some(ADMIN), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    let (status, _) = h.admin(Method::DELETE, "/v1/channels/support", Some(ADMIN), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = h.admin(Method::DELETE, "/v1/channels/support", Some(ADMIN), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["code"], "no-such-channel");
    h.stop().await;
}

#[tokio::test]
async fn a_message_route_without_the_channel_s_credentials_is_a_401_that_tells_nothing() {
    let h = Harness::new().await;
    let (status, body) =
        h.post_json("/v1/conversations/c-a/messages", &json!({"text": "ask", "message_id": "m-1"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let post = |uri: &str, auth: Option<&str>| {
        let mut req = Request::post(uri.to_string()).header(header::CONTENT_TYPE, "application/json");
        if let Some(a) = auth {
            req = req.header(header::AUTHORIZATION, a);
        }
        req.body(Body::from(r#"{"text": "blue", "message_id": "m-2"}"#)).unwrap()
    };
    let get = |uri: &str| Request::get(uri.to_string()).body(Body::empty()).unwrap();
    let mut answers = Vec::new();
    for req in [
        post("/v1/conversations/c-a/messages", None),
        post("/v1/conversations/c-a/messages", Some("Bearer wrong-token-0123456789")),
        post("/v1/conversations/c-a/messages", Some(&format!("Basic {CHANNEL}"))),
        post("/v1/conversations/never/messages", None),
        post("/v1/channels/default/conversations/c-a/messages", Some("Bearer nope")),
        post("/v1/channels/nobody/conversations/c-a/messages", Some(&format!("Bearer {CHANNEL}"))),
        post("/v1/channels/bad%20name/conversations/c-a/messages", None),
        get("/v1/conversations/c-a/messages/m-1"),
        get("/v1/conversations/c-a/messages/never"),
        get("/v1/channels/nobody/conversations/c-a/messages/m-1"),
    ] {
        let (status, headers, body) = h.send_as_is(req).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert_eq!(headers.get(header::WWW_AUTHENTICATE).unwrap(), "Bearer");
        answers.push(body);
    }
    assert!(answers.iter().all(|a| *a == answers[0]), "{answers:?}");
    assert_eq!(answers[0]["code"], "unauthorized");
    // Nothing was run or stored: the conversation still waits for its answer.
    let (status, body) = h.post_json("/v1/conversations/c-a/messages", &json!({"text": "green"})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["replies"][0]["text"], "got green", "{body}");
    // The same channel's other route is the same conversation.
    let (status, _, body) = h.send(get("/v1/channels/default/conversations/c-a/messages/m-1")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the channel route takes explicit credentials: {body}");
    let req = Request::get("/v1/channels/default/conversations/c-a/messages/m-1")
        .header(header::AUTHORIZATION, format!("Bearer {CHANNEL}"))
        .body(Body::empty())
        .unwrap();
    let (status, _, body) = h.send_as_is(req).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["replies"][0]["text"], "what?");
    h.stop().await;
}

/// A request without valid credentials is refused on its headers: its body is never waited
/// for (a body that never arrives gets the 401 at once, so an anonymous caller cannot hold a
/// connection by trickling a body). The scheme name `Bearer` may be in any case.
#[tokio::test]
async fn credentials_are_checked_before_the_body_is_read() {
    let h = Harness::new().await;
    let never = || Body::from_stream(futures_util::stream::pending::<Result<Vec<u8>, std::io::Error>>());
    for auth in [None, Some("Bearer wrong-token-0123456789".to_string()), Some(format!("Basic {CHANNEL}"))] {
        let mut req = Request::post("/v1/conversations/c-slow/messages")
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::CONTENT_LENGTH, "60000");
        if let Some(a) = &auth {
            req = req.header(header::AUTHORIZATION, a);
        }
        let answered = tokio::time::timeout(Duration::from_secs(5), h.send_as_is(req.body(never()).unwrap())).await;
        let (status, _, body) = answered.unwrap_or_else(|_| panic!("{auth:?}: waited for the body"));
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{auth:?}: {body}");
    }
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let req = Request::post("/v1/conversations/c-case/messages")
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::AUTHORIZATION, format!("{scheme} {CHANNEL}"))
            .body(Body::from(r#"{"text": "hello"}"#))
            .unwrap();
        let (status, _, body) = h.send_as_is(req).await;
        assert_eq!(status, StatusCode::OK, "{scheme}: {body}");
    }
    h.stop().await;
}

/// A signed message without a `message_id` takes its `webhook-id`; one that cannot be a
/// message id (the prefix of generated ids) is refused with 400, not replaced by a new id under
/// which the sender's retry would run the message again.
#[tokio::test]
async fn a_webhook_id_that_cannot_be_a_message_id_is_refused_not_replaced() {
    let h = Harness::new().await;
    const SIGNING: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let settings = json!({"kind": "generic", "signing_secrets": [SIGNING]});
    let (status, saved) = h.admin(Method::PUT, "/v1/channels/signed", Some(ADMIN), Some(settings)).await;
    assert_eq!(status, StatusCode::OK, "{saved}");
    let secret = tern_engine::standard_webhooks::WebhookSecret::parse(SIGNING).unwrap();
    let signed = |id: &str| {
        let body = br#"{"text": "hello"}"#;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let mut req = Request::post("/v1/channels/signed/conversations/c-1/messages")
            .header(header::CONTENT_TYPE, "application/json");
        for (k, v) in secret.headers(id, i64::try_from(now).unwrap(), body) {
            req = req.header(k, v);
        }
        req.body(Body::from(&body[..])).unwrap()
    };
    let (status, _, body) = h.send_as_is(signed("tern-retry-1")).await;
    assert_eq!((status, &body["code"]), (StatusCode::BAD_REQUEST, &json!("bad-id")), "{body}");
    assert!(body["error"].as_str().unwrap().contains("put a `message_id` in the body"), "{body}");
    let (status, _, body) = h.send_as_is(signed("msg_ok-1")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["message_id"], "msg_ok-1");
    h.stop().await;
}

/// Ids that would name another resource in an answer URL (dot segments) or look like another
/// id (space-like characters, spaces at either end) are refused.
#[tokio::test]
async fn dot_segment_and_look_alike_ids_are_refused() {
    let h = Harness::new().await;
    for id in ["%2E", "%2E%2E", "a%C2%A0b", "%E3%80%80", "%E2%A0%80", "%20a", "a%20", "a%E2%80%AFb"] {
        let (status, body) = h.post_json(&format!("/v1/conversations/{id}/messages"), &json!({"text": "hello"})).await;
        assert_eq!((status, &body["code"]), (StatusCode::BAD_REQUEST, &json!("bad-id")), "{id}: {body}");
    }
    for id in [".", "..", "m\u{a0}1", " m", "m "] {
        let (status, body) =
            h.post_json("/v1/conversations/c/messages", &json!({"text": "hello", "message_id": id})).await;
        assert_eq!((status, &body["code"]), (StatusCode::BAD_REQUEST, &json!("bad-id")), "{id:?}: {body}");
    }
    // A plain space inside is fine.
    let (status, body) = h.post_json("/v1/conversations/a%20b/messages", &json!({"text": "hello"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    h.stop().await;
}

#[tokio::test]
async fn the_default_channel_cannot_reach_an_integration_event_s_conversation() {
    let h = Harness::new().await;
    // An event conversation paused on its question.
    let mut inbound = tern_engine::conversation::Inbound::message(
        tern_engine::conversation::ConversationId::new("event:crm:42").unwrap(),
        Some(tern_engine::conversation::MessageId::new("e-1").unwrap()),
        "ask",
    );
    inbound.trigger = tern_engine::conversation::Trigger::Message;
    let answer = h.conversations.submit(inbound, None).unwrap().wait().await.unwrap();
    assert_eq!(answer.replies[0].text, "what?");
    // The same id from the default channel is another conversation (nothing paused there).
    let (status, body) = h.post_json("/v1/conversations/event:crm:42/messages", &json!({"text": "blue"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "no_flow", "{body}");
    let (status, _, body) =
        h.send(Request::get("/v1/conversations/event:crm:42/messages/e-1").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    h.stop().await;
}

/// A request with a bearer token.
/// Adds the `support` channel (token [`SUPPORT`]) through the admin API.
async fn add_support_channel(h: &Harness) {
    let settings = json!({"kind": "generic", "tokens": [SUPPORT]});
    let (status, body) = h.admin(Method::PUT, "/v1/channels/support", Some(ADMIN), Some(settings)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

fn with_token(method: Method, uri: &str, token: &str, body: Option<Value>) -> Request<Body> {
    let req = Request::builder().method(method).uri(uri).header(header::AUTHORIZATION, format!("Bearer {token}"));
    match body {
        Some(b) => req.header(header::CONTENT_TYPE, "application/json").body(Body::from(b.to_string())).unwrap(),
        None => req.body(Body::empty()).unwrap(),
    }
}

#[tokio::test]
async fn conversations_and_answers_are_each_channel_s_own() {
    let h = Harness::new().await;
    add_support_channel(&h).await;
    let support = "/v1/channels/support/conversations/c-1/messages";
    // The same conversation id in two channels: two conversations.
    let (status, _, body) = h
        .send_as_is(with_token(Method::POST, support, SUPPORT, Some(json!({"text": "ask", "message_id": "m-1"}))))
        .await;
    assert_eq!((status, body["status"].clone()), (StatusCode::OK, json!("paused")), "{body}");
    let (status, body) =
        h.post_json("/v1/conversations/c-1/messages", &json!({"text": "blue", "message_id": "m-1"})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "no_flow", "the default channel's c-1 has nothing paused: {body}");
    let (_, _, body) = h
        .send_as_is(with_token(Method::POST, support, SUPPORT, Some(json!({"text": "green", "message_id": "m-2"}))))
        .await;
    assert_eq!(body["replies"][0]["text"], "got green", "{body}");
    // Each channel reads its own answers, and only those: the other's token is refused.
    let (status, _, body) = h.send_as_is(with_token(Method::GET, &format!("{support}/m-1"), SUPPORT, None)).await;
    assert_eq!((status, body["replies"][0]["text"].clone()), (StatusCode::OK, json!("what?")));
    let (status, _, _) = h.send_as_is(with_token(Method::GET, &format!("{support}/m-1"), CHANNEL, None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) =
        h.send_as_is(with_token(Method::GET, "/v1/conversations/c-1/messages/m-1", SUPPORT, None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, body) =
        h.send_as_is(with_token(Method::GET, "/v1/conversations/c-1/messages/m-1", CHANNEL, None)).await;
    assert_eq!((status, body["status"].clone()), (StatusCode::OK, json!("no_flow")));
    // The default channel cannot name another channel's conversation by its stored id.
    let (_, body) = h.post_json("/v1/conversations/channel:support:c-1/messages", &json!({"text": "red"})).await;
    assert_eq!(body["status"], "no_flow", "{body}");
    let (status, _, _) =
        h.send(Request::get("/v1/conversations/channel:support:c-1/messages/m-1").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // The admin finds the channel's runs by the channel's own conversation id (history is
    // written in the background: wait for it).
    let mut found = Value::Null;
    for _ in 0..100 {
        let (status, page) = h.admin(Method::GET, "/v1/runs?channel=support&conversation=c-1", Some(ADMIN), None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        if page["runs"].as_array().is_some_and(|r| !r.is_empty()) {
            found = page;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let runs = found["runs"].as_array().expect("the support channel's run is listed");
    assert!(runs.iter().all(|r| r["conversation_id"].as_str().unwrap().starts_with("channel:support@")), "{found}");
    for (query, says) in [
        ("/v1/runs?channel=nope&conversation=c-1", "no channel `nope`"),
        ("/v1/runs?channel=support", "give `conversation` too"),
        ("/v1/runs?channel=Support&conversation=c-1", "lower case"),
    ] {
        let (status, body) = h.admin(Method::GET, query, Some(ADMIN), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert_eq!(body["code"], "bad-query", "{query}: {body}");
        assert!(body["error"].as_str().unwrap().contains(says), "{query}: {body}");
    }
    h.stop().await;
}

#[tokio::test]
async fn every_console_page_warns_while_a_channel_is_open() {
    let h = Harness::new().await;
    let cookie = sign_in(&h).await;
    for uri in ["/", "/runs", "/flows", "/try", "/channels", "/plugins"] {
        let (status, html) = page(&h, uri, &cookie).await;
        assert_eq!(status, StatusCode::OK, "{uri}");
        let banner = html.split("id=\"open-channels\"").nth(1).unwrap_or_else(|| panic!("no banner on {uri}: {html}"));
        assert!(banner.contains("channel kiosk accepts messages without credentials"), "{uri}: {banner}");
    }
    h.stop().await;
}

/// The plugins page shows each loaded plugin's step type, version, integrations, allowed
/// origins and whole SHA-256, escaped (the sign-in test covers it needing a session).
#[tokio::test]
async fn the_plugins_page_lists_the_loaded_plugins_with_their_checksums() {
    let h = Harness::new().await;
    let cookie = sign_in(&h).await;
    let (status, html) = page(&h, "/plugins", &cookie).await;
    assert_eq!(status, StatusCode::OK);
    for expected in [
        "id=\"plugin-crm.contact-name\"",
        "0.1.0",
        &"ab".repeat(32),
        "https://api.example.com",
        "<code>integration</code> field",
        "CRM contact's &lt;name&gt;",
        "aria-current=\"page\"",
    ] {
        assert!(html.contains(expected), "{expected} missing: {html}");
    }
    h.stop().await;
}

#[tokio::test]
async fn the_channels_page_lists_channels_without_their_credentials() {
    let h = Harness::new().await;
    let settings = json!({"kind": "generic", "tokens": ["console-page-token-0123456789"],
        "webhook_url": "https://chat.example.com/replies?key=console-query-secret",
        "webhook_secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"});
    let (status, _) = h.admin(Method::PUT, "/v1/channels/support", Some(ADMIN), Some(settings)).await;
    assert_eq!(status, StatusCode::OK);
    let cookie = sign_in(&h).await;
    let (status, html) = page(&h, "/channels", &cookie).await;
    assert_eq!(status, StatusCode::OK);
    for expected in ["id=\"channel-default\"", "id=\"channel-support\"", "https://chat.example.com/replies", "1 set"] {
        assert!(html.contains(expected), "{expected} missing: {html}");
    }
    for secret in ["console-page-token-0123456789", "console-query-secret", CHANNEL] {
        assert!(!html.contains(secret), "{secret} on the page");
    }
    h.stop().await;
}

#[tokio::test]
async fn a_202_points_at_the_channel_s_own_route_with_the_channel_s_ids() {
    use tern_engine::channel::ChannelName;
    use tern_engine::conversation::{ConversationId, Inbound, MessageId};
    let h = Harness::new().await;
    add_support_channel(&h).await;
    let support = ChannelName::new("support").unwrap();
    let id = ConversationId::of_channel(&support, "c/9 é").unwrap();
    let path = super::messages::answer_path(&id, &MessageId::new("m 1+").unwrap());
    assert_eq!(path, "/v1/channels/support/conversations/c%2F9%20%C3%A9/messages/m%201%2B");
    let default = ConversationId::of_channel(&ChannelName::default_channel(), "event:x").unwrap();
    assert_eq!(
        super::messages::answer_path(&default, &MessageId::new("m").unwrap()),
        "/v1/conversations/event%3Ax/messages/m"
    );
    let event = ConversationId::new("event:crm:42").unwrap();
    assert_eq!(super::messages::answer_path(&event, &MessageId::new("m").unwrap()), "");
    let inbound = Inbound::message(id, Some(MessageId::new("m 1+").unwrap()), "ask");
    assert_eq!(inbound.channel, support);
    // The path reads the answer back, with the channel's credentials (a message posted to the
    // stored channel, whose conversations are its incarnation's).
    let post = "/v1/channels/support/conversations/c%2F9%20%C3%A9/messages";
    let (status, _, _) =
        h.send_as_is(with_token(Method::POST, post, SUPPORT, Some(json!({"text": "ask", "message_id": "m 1+"})))).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, body) = h.send_as_is(with_token(Method::GET, &path, SUPPORT, None)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["replies"][0]["text"], "what?");
    h.stop().await;
}

/// A channel removed and added again under the same name is a new channel: its new token reads
/// none of the old channel's answers and resumes none of its waiting runs, and the old token is
/// refused.
#[tokio::test]
async fn a_channel_removed_and_added_again_reaches_nothing_of_the_old_one() {
    const OLD: &str = "old-support-token-0123456789";
    const NEW: &str = "new-support-token-0123456789";
    let h = Harness::new().await;
    let settings = |token: &str| json!({"kind": "generic", "tokens": [token]});
    let as_channel = |method: Method, uri: &str, token: &str, body: Option<Value>| {
        let req = Request::builder().method(method).uri(uri).header(header::AUTHORIZATION, format!("Bearer {token}"));
        match body {
            Some(b) => req.header(header::CONTENT_TYPE, "application/json").body(Body::from(b.to_string())).unwrap(),
            None => req.body(Body::empty()).unwrap(),
        }
    };
    let messages = "/v1/channels/support/conversations/c-1/messages";
    assert_eq!(h.admin(Method::PUT, "/v1/channels/support", Some(ADMIN), Some(settings(OLD))).await.0, StatusCode::OK);
    let (status, _, asked) =
        h.send(as_channel(Method::POST, messages, OLD, Some(json!({"text": "ask", "message_id": "m-1"})))).await;
    assert_eq!((status, &asked["replies"][0]["text"]), (StatusCode::OK, &json!("what?")), "{asked}");

    let (status, _) = h.admin(Method::DELETE, "/v1/channels/support", Some(ADMIN), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(h.admin(Method::PUT, "/v1/channels/support", Some(ADMIN), Some(settings(NEW))).await.0, StatusCode::OK);

    // The old answer is not the new channel's to read.
    let (status, _, body) = h.send(as_channel(Method::GET, &format!("{messages}/m-1"), NEW, None)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    // The old waiting run is not the new channel's to resume.
    let (status, _, body) =
        h.send(as_channel(Method::POST, messages, NEW, Some(json!({"text": "blue", "message_id": "m-2"})))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "no_flow", "the old run was resumed: {body}");
    // The old token is refused.
    let (status, _, _) = h.send(as_channel(Method::GET, &format!("{messages}/m-1"), OLD, None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    h.stop().await;
}

/// The console adds a channel with the proposed token and webhook secret, shows each broken
/// rule at its field, and removes a stored channel after asking.
#[tokio::test]
async fn the_console_adds_and_removes_channels() {
    let h = Harness::new().await;
    let cookie = sign_in(&h).await;
    let (status, html) = page(&h, "/channels", &cookie).await;
    assert_eq!(status, StatusCode::OK);
    let csrf = csrf_in(&html);
    let value_of = |html: &str, id: &str| {
        let at = html.find(&format!("id=\"c-{id}\"")).unwrap();
        let rest = &html[at..];
        let v = rest.find("value=\"").unwrap() + 7;
        rest[v..].split('"').next().unwrap().to_string()
    };
    let token = value_of(&html, "token");
    let hook = value_of(&html, "webhook_secret");
    assert_eq!(token.len(), 48, "a proposed token: {token}");
    assert!(hook.starts_with("whsec_"), "a proposed webhook secret: {hook}");
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();

    // Every broken rule, at its field, nothing saved.
    let bad = format!(
        "csrf={csrf}&name=Web&token=short&webhook_url={}&webhook_secret={}",
        enc("ftp://x.example/"),
        enc(&hook)
    );
    let (status, _, html) = form(&h, "/channels", &cookie, &bad).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{html}");
    for part in ["upper-case letters", "token 1 has 5 characters", "http or https"] {
        assert!(html.contains(part), "{part} in {html}");
    }
    // Saved, then usable with the token, and listed without it.
    let good = format!(
        "csrf={csrf}&name=web&token={token}&signing_secret=&webhook_url={}&webhook_secret={}",
        enc("https://chat.example.com/replies"),
        enc(&hook)
    );
    let (status, headers, _) = form(&h, "/channels", &cookie, &good).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], "/channels?saved=web");
    let req = Request::post("/v1/channels/web/conversations/c-1/messages")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(json!({"text": "hello"}).to_string()))
        .unwrap();
    assert_eq!(h.send(req).await.0, StatusCode::OK);
    let (_, html) = page(&h, "/channels?saved=web", &cookie).await;
    assert!(html.contains("id=\"channel-web\"") && html.contains("Channel <code>web</code> saved"), "{html}");
    assert!(!html.contains(&token) && !html.contains(&hook), "a saved secret is never shown again");
    // The same name again is refused at the name.
    let (status, _, html) = form(&h, "/channels", &cookie, &good).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains("exists already"), "{html}");
    // Removing asks first, then removes; `default` has no remove button.
    assert!(!html.contains("id=\"remove-default\""));
    let (status, _, html) = form(&h, "/channels/web/remove", &cookie, &format!("csrf={csrf}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Remove channel web?"), "{html}");
    let (status, headers, _) = form(&h, "/channels/web/remove", &cookie, &format!("csrf={csrf}&confirm=yes")).await;
    assert_eq!((status, headers[header::LOCATION].to_str().unwrap()), (StatusCode::SEE_OTHER, "/channels?removed=web"));
    let (_, html) = page(&h, "/channels", &cookie).await;
    assert!(!html.contains("id=\"channel-web\""), "{html}");
    // A platform channel shows its platform's settings (never a secret), not a generic one's.
    let settings = json!({"kind": "whatsapp", "app_secret": "6c0ffee0ddba11a5f00dfeedc0de4b1d",
        "verify_token": "wa-verify-token-0123456789", "phone_number_id": "106540352242922", "integration": "meta"});
    let (status, body) = h.admin(Method::PUT, "/v1/channels/wa", Some(ADMIN), Some(settings)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, html) = page(&h, "/channels", &cookie).await;
    let card = &html[html.find("id=\"channel-wa\"").unwrap()..];
    let card = &card[..card.find("</section>").unwrap()];
    for fact in [
        "/v1/channels/wa/webhook",
        "<dt>App secret</dt><dd>set</dd>",
        "<dt>Phone number id</dt><dd>106540352242922</dd>",
        "<dt>Integration</dt>",
        "<dt>API base</dt><dd>https://graph.facebook.com/v23.0</dd>",
    ] {
        assert!(card.contains(fact), "{fact} in {card}");
    }
    assert!(
        !card.contains("Bearer tokens") && !card.contains("6c0ffee0") && !card.contains("wa-verify-token"),
        "{card}"
    );
    h.stop().await;
}

/// A value of the wrong type is never quoted back: a secret sent as a string where a list was
/// expected, in a field of another kind, or in a body that is not JSON.
#[tokio::test]
async fn a_secret_sent_in_the_wrong_type_is_not_echoed_back() {
    const SECRET: &str = "misplaced-secret-0123456789abcdef";
    let h = Harness::new().await;
    for (uri, body) in [
        ("/v1/channels/web", json!({"kind": "generic", "tokens": SECRET})),
        ("/v1/channels/web", json!({"kind": SECRET, "tokens": ["0123456789abcdef0123"]})),
        ("/v1/channels/web", json!({"kind": "generic", "tokens": [SECRET], "webhook_url": 12345678901234_i64})),
        ("/v1/integrations/crm", json!({"kind": SECRET, "client_id": "x"})),
        ("/v1/integrations/crm", json!({"client_id": [SECRET]})),
        ("/v1/secrets/CRM_KEY", json!({"value": [SECRET]})),
    ] {
        let (status, answer) = h.admin(Method::PUT, uri, Some(ADMIN), Some(body.clone())).await;
        assert!(status.is_client_error(), "{uri} {body}: {status} {answer}");
        let text = answer.to_string();
        assert!(!text.contains(SECRET) && !text.contains("12345678901234"), "{uri} echoes the value: {text}");
    }
    let (status, answer) =
        h.admin(Method::PUT, "/v1/channels/web", Some(ADMIN), Some(json!({"kind": "generic", "tokens": SECRET}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(answer["problems"][0]["field"], "tokens", "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("at /tokens: invalid type: a string, expected a sequence"),
        "{answer}"
    );
    // Not JSON at all, with the secret in it.
    let req = Request::put("/v1/channels/web")
        .header(header::AUTHORIZATION, format!("Bearer {ADMIN}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(format!("{{\"tokens\": [\"{SECRET}\"")))
        .unwrap();
    let (status, _, answer) = h.send(req).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(!answer.to_string().contains(SECRET), "{answer}");
    h.stop().await;
}

/// One leading UTF-8 byte order mark is skipped wherever JSON comes in: the message webhook
/// and the admin API (secrets, integrations, channels); a second one is still an error.
#[tokio::test]
async fn json_bodies_with_a_byte_order_mark_are_read_everywhere() {
    let h = Harness::new().await;
    let with_bom = |uri: &str, method: Method, auth: &str, json: &Value| {
        let mut body = tern_engine::json::UTF8_BOM.to_vec();
        body.extend_from_slice(json.to_string().as_bytes());
        Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {auth}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .unwrap()
    };
    let (status, _, body) = h
        .send(with_bom(
            "/v1/conversations/c-bom/messages",
            Method::POST,
            CHANNEL,
            &json!({"text": "hello", "channel": "web"}),
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["replies"][0]["text"], "Hi hello via web", "{body}");
    let (status, _, body) =
        h.send(with_bom("/v1/secrets/BOM_SECRET", Method::PUT, ADMIN, &json!({"value": "bom-secret-value-1"}))).await;
    assert!(status.is_success(), "{status} {body}");
    let settings = json!({"client_id": "cid", "client_secret": "cs-bom-secret-value", "authorization_url": "https://auth.example.com/authorize",
        "token_url": "https://auth.example.com/token", "api_origins": ["https://api.example.com"]});
    let (status, _, body) = h.send(with_bom("/v1/integrations/bom", Method::PUT, ADMIN, &settings)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, body) = h
        .send(with_bom(
            "/v1/channels/bomchan",
            Method::PUT,
            ADMIN,
            &json!({"kind": "generic", "tokens": ["bom-channel-token-0123456789"]}),
        ))
        .await;
    assert!(status.is_success(), "{status} {body}");
    // Two marks are not one.
    let mut twice = tern_engine::json::UTF8_BOM.repeat(2);
    twice.extend_from_slice(br#"{"text": "hello"}"#);
    let req = Request::post("/v1/conversations/c-bom/messages")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(twice))
        .unwrap();
    let (status, _, _) = h.send(req).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    h.stop().await;
}

/// Wrong admin tokens are throttled with `Retry-After` (the throttle's table itself is tested
/// in `console::session`).
#[tokio::test]
async fn too_many_wrong_sign_ins_get_429_with_retry_after() {
    let h = Harness::new().await;
    let wrong = || {
        Request::post("/login")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from("token=wrong-token"))
            .unwrap()
    };
    for _ in 0..crate::server::console::session::MAX_FAILURES_PER_MINUTE {
        assert_eq!(h.send(wrong()).await.0, StatusCode::UNAUTHORIZED);
    }
    let (status, headers, body) = h.send(wrong()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let secs: u64 = headers[header::RETRY_AFTER].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&secs), "{secs}");
    assert!(body.as_str().unwrap().contains(&format!("try again in {secs} s")), "{body}");
    h.stop().await;
}
