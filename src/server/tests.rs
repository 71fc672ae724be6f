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
use tern_engine::conversation::{ConversationOptions, Conversations, LoadedFlow, flow_hash};
use tern_engine::crypto::{Keyring, MasterKey};
use tern_engine::http::{HttpClient, HttpPolicy, Outbound};
use tern_engine::integrations::Integrations;
use tern_engine::secrets::LayeredSecrets;
use tern_engine::store::SqliteStore;
use tern_engine::{Engine, LoadOptions, RunLimits, load_flow};
use tower::ServiceExt as _;

use super::{AppState, Metrics, app};

const ADMIN: &str = "oneshot-admin-token-0123456789abcdef";

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
struct Harness {
    _dir: tempfile::TempDir,
    app: Router,
    conversations: Conversations,
}

impl Harness {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (key, _) = MasterKey::generate();
        let store = Arc::new(SqliteStore::open(&dir.path().join("tern.db"), Keyring::new(key)).await.unwrap());
        let secrets = Arc::new(LayeredSecrets::new(Vec::new()));
        let http = HttpClient::new(HttpPolicy::default()).unwrap();
        let public = "http://127.0.0.1:8080".parse().unwrap();
        let integrations = Arc::new(Integrations::new(store.clone(), http.clone(), public, secrets.clone()));
        let engine = Engine {
            registry: Arc::new(tern_steps::registry()),
            outbound: Outbound { client: http, tokens: Some(integrations.clone()) },
            secrets: secrets.clone(),
            limits: RunLimits::default(),
        };
        let flows = [HELLO, ASK]
            .iter()
            .map(|source| {
                let opts = LoadOptions { registry: &engine.registry, integrations: None, limits: Default::default() };
                LoadedFlow { hash: flow_hash(source), flow: Arc::new(load_flow(source, &opts).unwrap()) }
            })
            .collect();
        let conversations = Conversations::start(engine, store.clone(), ConversationOptions::default(), None);
        conversations.set_flows(flows);
        let state = Arc::new(AppState {
            conversations: conversations.clone(),
            store,
            integrations,
            secrets,
            admin_token: SecretString::from(ADMIN.to_string()),
            metrics: Arc::new(Metrics::default()),
            csrf: SecretString::from("csrf-test-token".to_string()),
            max_concurrency: 16,
            request_timeout: Duration::from_secs(30),
            reply_wait: Duration::from_secs(10),
        });
        Self { _dir: dir, app: app(state), conversations }
    }

    /// One request through the router: status, headers and body (JSON when it parses, else
    /// the text as a JSON string).
    async fn send(&self, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Value) {
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
    assert!(body["error"].as_str().unwrap().contains("text"), "names the missing field: {body}");
    let req = Request::post("/v1/conversations/c/messages")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{not json"))
        .unwrap();
    assert_eq!(h.send(req).await.0, StatusCode::BAD_REQUEST, "syntax error");
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
    let (status, _, fetched) =
        h.send(Request::get("/v1/conversations/c-2/messages/m-1").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fetched, first);
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
async fn healthz_and_metrics() {
    let h = Harness::new().await;
    let (status, _, body) = h.send(Request::get("/healthz").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"status": "ok"}));
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
