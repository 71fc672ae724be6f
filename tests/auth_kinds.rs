//! The integration kinds beyond OAuth's browser and service-account flows, against a server
//! that really checks each one (`testkit::credentials`): HTTP Basic (RFC 7617), an API key in
//! a header or in the query, and a service account's JWT bearer grant (RFC 7523) whose
//! assertions the token endpoint verifies with the public key.
//!
//! In process (the conversation service with `Integrations` over SQLite, saved through the
//! same `Integrations::save` as every front end): each kind authenticates, its credential
//! never goes to another origin (neither by the flow's URL nor by a redirect), and no secret
//! is in a run's trace, history or error. Through the binary: the command line of each kind
//! as the README shows it, with a secret scan of everything printed and of the data directory.

use std::sync::Arc;

use secrecy::SecretString;
use serde_json::{Value, json};
use tern_engine::clock::{Clock, ManualClock, SystemClock};
use tern_engine::http::{HttpClient, HttpPolicy};
use tern_engine::secrets::NoSecrets;
use tern_engine::{IntegrationName, TokenSource};
use tern_integrations::config::{IntegrationConfig, KeyIn, Kind};
use tern_integrations::jwt::ServiceAccountKey;
use tern_integrations::{Draft, Field, Integrations, Reachability, SaveError, SaveOptions};
use tern_store::crypto::{Keyring, MasterKey};
use tern_store::{SqliteStore, Store};

use crate::support::credentials::{self, CredentialApi};
use crate::support::service::Service;
use crate::support::{Flows, TestApi, fresh_data_dir, tern};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn name(n: &str) -> IntegrationName {
    IntegrationName::new(n).unwrap()
}

/// `Integrations` over a SQLite store in a temporary directory.
struct Kinds {
    _dir: tempfile::TempDir,
    service: Arc<Integrations>,
    /// Tern's clock, which the tests move instead of sleeping.
    clock: Arc<ManualClock>,
}

impl Kinds {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (key, _) = MasterKey::generate();
        let clock = Arc::new(ManualClock::new(SystemClock.now_s() * 1000));
        let store = SqliteStore::open(&dir.path().join("tern.db"), Keyring::new(key)).await.unwrap();
        let store: Arc<dyn Store> = Arc::new(store.with_clock(clock.clone()));
        let http = HttpClient::new(HttpPolicy { allow_private_network: true, ..HttpPolicy::default() }).unwrap();
        let public = "http://127.0.0.1:9".parse().unwrap();
        let service = Integrations::new(store, http, public, Arc::new(NoSecrets)).with_clock(clock.clone());
        Self { _dir: dir, service: Arc::new(service), clock }
    }

    async fn save(&self, n: &str, config: IntegrationConfig, secret: Option<&str>) -> Result<(), SaveError> {
        let draft = Draft {
            config,
            client_auth: None,
            client_secret: secret.map(|s| SecretString::from(s.to_string())),
            client_key: None,
        };
        let options = SaveOptions { replace: true, reachability: Reachability::Unchecked };
        self.service.save(&name(n), draft, options).await.map(drop)
    }

    /// A conversation with a flow that calls `url` through integration `n` and replies with
    /// the answer's `data.name` and `data.via`.
    async fn call(&self, n: &str, url: &str) -> crate::support::service::Conversation {
        self.call_with_headers(n, url, json!({})).await
    }

    /// [`call`](Self::call) with the flow's own request headers.
    async fn call_with_headers(&self, n: &str, url: &str, headers: Value) -> crate::support::service::Conversation {
        let flow = json!({
            "version": 1, "id": "who", "trigger": {"type": "message"},
            "steps": [
                {"id": "lookup", "type": "fetch_variables", "integration": n,
                 "request": {"method": "GET", "url": url, "headers": headers},
                 "variables": {"name": "data.name", "via": "data.via"}},
                {"id": "hi", "type": "send_message", "text": "{{name}} via {{via}}"}
            ]
        });
        let tokens: Arc<dyn TokenSource> = self.service.clone();
        let service = Service::builder().flow(&flow).tokens(tokens).start();
        service.converse(&["hi"]).await
    }
}

fn basic(api: &CredentialApi) -> IntegrationConfig {
    IntegrationConfig {
        kind: Kind::Basic,
        username: Some(credentials::USERNAME.into()),
        api_origins: vec![api.url()],
        ..IntegrationConfig::default()
    }
}

fn api_key(api: &CredentialApi, key_in: KeyIn) -> IntegrationConfig {
    IntegrationConfig {
        kind: Kind::ApiKey,
        key_in: Some(key_in),
        key_name: Some(if key_in == KeyIn::Query { credentials::KEY_PARAM } else { credentials::KEY_HEADER }.into()),
        api_origins: vec![api.url()],
        ..IntegrationConfig::default()
    }
}

/// A `jwt_bearer` integration from the test service account's key file, as `--key-file` reads
/// it; returns the settings and the private key.
fn jwt_bearer(api: &CredentialApi, subject: Option<&str>) -> (IntegrationConfig, String) {
    let key = ServiceAccountKey::parse(&credentials::key_file(&api.token_url())).unwrap();
    let config = IntegrationConfig {
        kind: Kind::JwtBearer,
        client_id: Some(key.client_email),
        token_url: key.token_uri,
        key_id: key.private_key_id,
        subject: subject.map(str::to_string),
        scopes: IntegrationConfig::split_scopes(credentials::SCOPES),
        api_origins: vec![api.url()],
        ..IntegrationConfig::default()
    };
    (config, credentials::PRIVATE_KEY_PEM.to_string())
}

/// Nothing the server knows as a secret is in what a conversation left behind (answers,
/// replies, traces, errors, variables).
fn assert_no_secret_in(conversation: &crate::support::service::Conversation, api: &CredentialApi) {
    let all = format!("{:#}{:?}", conversation.json(), conversation.answers);
    for secret in api.secrets() {
        assert!(!all.contains(&secret), "{secret} is in the conversation: {all}");
    }
}

#[test]
fn each_fixed_credential_kind_is_accepted_by_a_server_that_checks_it() {
    let api = CredentialApi::start();
    rt().block_on(async {
        let k = Kinds::new().await;
        k.save("erp", basic(&api), Some(credentials::PASSWORD)).await.unwrap();
        k.save("mkt-h", api_key(&api, KeyIn::Header), Some(credentials::API_KEY)).await.unwrap();
        k.save("mkt-q", api_key(&api, KeyIn::Query), Some(credentials::API_KEY)).await.unwrap();
        let u = api.url();
        for (n, url, via) in [
            ("erp", format!("{u}/basic/me"), "basic"),
            ("mkt-h", format!("{u}/key/header/me"), "header"),
            // The flow's own `api_key` is replaced by the stored key, the rest kept.
            ("mkt-q", format!("{u}/key/query/me?api_key=mine&page=2"), "query"),
        ] {
            let c = k.call(n, &url).await;
            assert_eq!(c.replies(), [format!("Ada Lovelace via {via}")], "{n}: {:#}", c.json());
            assert_no_secret_in(&c, &api);
        }
        // A header of the key's name that the flow sets itself is replaced, not sent beside it.
        let c = k.call_with_headers("mkt-h", &format!("{u}/key/header/me"), json!({"x-api-key": "mine"})).await;
        assert_eq!(c.replies(), ["Ada Lovelace via header"], "{:#}", c.json());
        let header_call = api.requests().into_iter().rfind(|r| r.uri == "/key/header/me").unwrap();
        assert_eq!(header_call.headers.get_all(credentials::KEY_HEADER).iter().count(), 1, "{header_call:?}");
        let query_call = api.requests().into_iter().rfind(|r| r.uri.starts_with("/key/query/me")).unwrap();
        assert_eq!(query_call.uri, format!("/key/query/me?page=2&api_key={}", credentials::API_KEY));
        // A wrong password is the API's 401, said as such, with nothing to refresh.
        k.save("erp", basic(&api), Some("wrong-password")).await.unwrap();
        let c = k.call("erp", &format!("{u}/basic/me")).await;
        let message = c.failed_at("lookup", "http-status");
        assert!(message.contains("401"), "{message}");
    });
}

/// A 429 with a `Retry-After` that fits in the step's time is waited out once: the step
/// succeeds, and its trace says it waited.
#[test]
fn a_rate_limited_answer_is_waited_out_once() {
    let api = CredentialApi::start();
    rt().block_on(async {
        let k = Kinds::new().await;
        k.save("erp", basic(&api), Some(credentials::PASSWORD)).await.unwrap();
        let c = k.call("erp", &format!("{}/limited/me", api.url())).await;
        assert_eq!(c.replies(), ["Ada Lovelace via basic"], "{:#}", c.json());
        let lookup = c.step("lookup");
        let said = lookup["detail"]["response"]["rate_limited"].as_str().unwrap_or_default();
        let waited = lookup["detail"]["response"]["rate_limit_wait_ms"].as_u64().unwrap_or_default();
        assert!(said.contains("429") && waited >= 1000, "its Retry-After was 1 s: {lookup:#}");
        let calls = api.requests().iter().filter(|r| r.uri == "/limited/me").count();
        assert_eq!(calls, 2, "the first answer was 429, the second the data");
    });
}

/// A burst of 200 conversations against an API that refuses more than 12 requests in any
/// second: with the integration's rate limit (9/s, burst 2) every request waits its turn (about
/// 22 s for the last), none is refused, no step fails, and the waits are in the traces.
#[test]
fn a_burst_waits_for_the_integrations_rate_limit_instead_of_failing() {
    use tern_integrations::config::{RateLimit, RatePeriod};
    let api = CredentialApi::start();
    rt().block_on(async {
        let k = Kinds::new().await;
        let rate = RateLimit { requests: 9, per: RatePeriod::Second, burst: Some(2) };
        k.save("erp", IntegrationConfig { rate_limit: Some(rate), ..basic(&api) }, Some(credentials::PASSWORD))
            .await
            .unwrap();
        let flow = json!({
            "version": 1, "id": "who", "trigger": {"type": "message"},
            "steps": [
                {"id": "lookup", "type": "fetch_variables", "integration": "erp",
                 "request": {"method": "GET", "url": format!("{}/strict/me", api.url()), "timeout_ms": 60_000},
                 "variables": {"name": "data.name"}},
                {"id": "hi", "type": "send_message", "text": "{{name}}"}
            ]
        });
        let tokens: Arc<dyn TokenSource> = k.service.clone();
        let service = Service::builder().flow(&flow).tokens(tokens).start();
        let all = futures_util::future::join_all((0..200).map(|_| service.converse(&["hi"]))).await;
        // Each conversation's own run (converse, called concurrently, sees the others' runs too).
        let own_lookup = |c: &crate::support::service::Conversation| {
            let run = c.runs.iter().find(|r| Some(&r.run_id) == c.main().run_id.as_ref()).expect("its run");
            let entry = run.trace.iter().find(|t| t.step.as_str() == "lookup").expect("the lookup");
            serde_json::to_value(entry).unwrap()
        };
        let waited = all
            .iter()
            .filter(|c| own_lookup(c)["detail"]["response"]["rate_limit_wait_ms"].as_u64().is_some_and(|ms| ms > 0))
            .count();
        for c in &all {
            assert_eq!(c.replies(), ["Ada Lovelace"], "{:#}", c.json());
        }
        assert_eq!(api.strict_refused(), 0, "the API never had to refuse a request");
        assert!(waited >= 190, "all but the burst waited their turn: {waited}");
        let said = own_lookup(all.iter().max_by_key(|c| own_lookup(c)["duration_us"].as_u64()).unwrap());
        let why = said["detail"]["response"]["rate_limited"].as_str().unwrap_or_default();
        assert!(why.contains("for the integration's rate limit"), "{said:#}");
    });
}

/// The integration's rate limit outlives a token refresh (which changes the stored settings'
/// version): a 1/min integration whose token was just renewed still holds its second request.
#[test]
fn a_token_refresh_keeps_the_integrations_rate_limit() {
    use tern_integrations::config::{RateLimit, RatePeriod};
    let api = CredentialApi::start();
    rt().block_on(async {
        let k = Kinds::new().await;
        let (config, key) = jwt_bearer(&api, None);
        let rate = RateLimit { requests: 1, per: RatePeriod::Minute, burst: Some(1) };
        k.save("sheets", IntegrationConfig { rate_limit: Some(rate), ..config }, Some(&key)).await.unwrap();
        let url = format!("{}/google/me", api.url());
        let c = k.call("sheets", &url).await;
        assert_eq!(c.replies(), ["Ada Lovelace via jwt_bearer"], "{:#}", c.json());
        k.clock.advance(std::time::Duration::from_secs(55 * 60));
        api.advance(55 * 60);
        let c = k.call("sheets", &url).await;
        let message = c.failed_at("lookup", "rate-limited");
        assert!(message.contains("would pass the step's deadline"), "{message}");
        assert_eq!(api.assertions().len(), 2, "the token was renewed before the request was held");
        let calls = api.requests().iter().filter(|r| r.uri == "/google/me").count();
        assert_eq!(calls, 1, "one request a minute");
    });
}

#[test]
fn fixed_credentials_never_reach_another_origin() {
    let api = CredentialApi::start();
    let elsewhere = TestApi::start();
    rt().block_on(async {
        let k = Kinds::new().await;
        k.save("erp", basic(&api), Some(credentials::PASSWORD)).await.unwrap();
        k.save("mkt-q", api_key(&api, KeyIn::Query), Some(credentials::API_KEY)).await.unwrap();
        k.save("mkt-h", api_key(&api, KeyIn::Header), Some(credentials::API_KEY)).await.unwrap();
        for n in ["erp", "mkt-q", "mkt-h"] {
            // Straight to another origin: refused before connecting.
            let c = k.call(n, &format!("{}/me", elsewhere.url())).await;
            let message = c.failed_at("lookup", "token-origin");
            assert!(message.contains(&api.url()), "{message}");
            // Through a redirect from the API to another origin: followed without the credential.
            let target = format!("{}/me?from={n}", elsewhere.url());
            let c = k.call(n, &format!("{}/redirect?to={}", api.url(), urlencode(&target))).await;
            assert_no_secret_in(&c, &api);
        }
        let seen = elsewhere.requests();
        assert_eq!(seen.len(), 3, "only the three redirected requests arrive: {seen:?}");
        for r in &seen {
            let all = format!("{} {:?}", r.uri, r.headers);
            for secret in api.secrets() {
                assert!(!all.contains(&secret), "{secret} reached another origin: {all}");
            }
            assert!(r.header("authorization").is_none() && r.header(credentials::KEY_HEADER).is_none(), "{all}");
        }
    });
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[test]
fn a_service_account_signs_its_assertion_and_its_token_is_reused_until_it_expires() {
    let api = CredentialApi::start();
    rt().block_on(async {
        let k = Kinds::new().await;
        let (config, key) = jwt_bearer(&api, None);
        k.save("sheets", config, Some(&key)).await.unwrap();
        let url = format!("{}/google/me", api.url());
        for _ in 0..3 {
            let c = k.call("sheets", &url).await;
            assert_eq!(c.replies(), ["Ada Lovelace via jwt_bearer"], "{:#}", c.json());
            assert_no_secret_in(&c, &api);
        }
        let assertions = api.assertions();
        assert_eq!(assertions.len(), 1, "one token for three calls: {assertions:?}");
        let claims = assertions[0].claims.clone().unwrap();
        assert_eq!(assertions[0].refused, None);
        assert_eq!(claims["iss"], credentials::CLIENT_EMAIL);
        assert_eq!(claims["aud"], api.token_url());
        assert_eq!(claims["scope"], credentials::SCOPES);
        assert!(claims.get("sub").is_none(), "no subject unless one is set: {claims}");
        assert_eq!(assertions[0].kid.as_deref(), Some(credentials::KEY_ID));

        // 55 minutes later the token expires within the refresh skew (five minutes): the next
        // use signs a new assertion (issued then) and gets a new token, used from then on.
        k.clock.advance(std::time::Duration::from_secs(55 * 60));
        api.advance(55 * 60);
        for _ in 0..2 {
            let c = k.call("sheets", &url).await;
            assert_eq!(c.replies(), ["Ada Lovelace via jwt_bearer"], "{:#}", c.json());
        }
        let assertions = api.assertions();
        assert_eq!(assertions.len(), 2, "one new token before the old one expired: {assertions:?}");
        let renewed = assertions[1].claims.clone().unwrap();
        assert_eq!(renewed["iat"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 55 * 60, "{renewed}");

        // Domain-wide delegation: the subject goes in `sub`.
        api.require_subject("ops@example.com");
        let (config, key) = jwt_bearer(&api, Some("ops@example.com"));
        k.save("sheets-ops", config, Some(&key)).await.unwrap();
        let c = k.call("sheets-ops", &url).await;
        assert_eq!(c.replies(), ["Ada Lovelace via jwt_bearer"], "{:#}", c.json());
        assert_eq!(api.assertions().last().unwrap().claims.as_ref().unwrap()["sub"], "ops@example.com");
    });
}

#[test]
fn a_refused_assertion_is_the_token_endpoints_words_and_no_key() {
    let api = CredentialApi::start();
    api.require_subject("someone@example.com");
    rt().block_on(async {
        let k = Kinds::new().await;
        let (config, key) = jwt_bearer(&api, None);
        k.save("sheets", config, Some(&key)).await.unwrap();
        let c = k.call("sheets", &format!("{}/google/me", api.url())).await;
        let message = c.failure().message.clone();
        assert!(message.contains("invalid_grant") && message.contains("sub must be"), "{message}");
        assert!(!message.contains("PRIVATE KEY") && !format!("{:#}", c.json()).contains("MII"), "{message}");
    });
}

#[test]
fn what_each_kind_needs_is_said_at_its_field() {
    let api = CredentialApi::start();
    rt().block_on(async {
        let k = Kinds::new().await;
        let problems = |e: SaveError| match e {
            SaveError::Invalid { problems, .. } => problems,
            other => panic!("{other}"),
        };
        let fields = |p: &[tern_integrations::Problem]| p.iter().map(|p| p.field).collect::<Vec<_>>();

        let no_user = IntegrationConfig { username: None, ..basic(&api) };
        let p = problems(k.save("a", no_user, None).await.unwrap_err());
        assert_eq!(fields(&p), [Field::Username, Field::Password], "{p:?}");
        assert!(p[1].to_string().contains("--password-env"), "{}", p[1]);
        let colon = IntegrationConfig { username: Some("a:b".into()), ..basic(&api) };
        let p = problems(k.save("a", colon, Some("pw")).await.unwrap_err());
        assert!(p[0].to_string().contains("RFC 7617"), "{p:?}");
        // A password or key that could not be masked, or could not go into a request.
        for (bad, says) in [("short", "shorter than 8"), ("line\r\nX-Evil: 1", "control character")] {
            let p = problems(k.save("a", basic(&api), Some(bad)).await.unwrap_err());
            assert_eq!(fields(&p), [Field::Password], "{p:?}");
            assert!(p[0].to_string().contains(says), "{p:?}");
        }
        let p = problems(k.save("b", api_key(&api, KeyIn::Header), Some(&"k".repeat(5000))).await.unwrap_err());
        assert!(p[0].to_string().contains("longer than 4096"), "{p:?}");

        let no_name = IntegrationConfig { key_name: None, ..api_key(&api, KeyIn::Query) };
        let p = problems(k.save("b", no_name, None).await.unwrap_err());
        assert_eq!(fields(&p), [Field::KeyName, Field::ApiKey], "{p:?}");
        let framing = IntegrationConfig { key_name: Some("Content-Length".into()), ..api_key(&api, KeyIn::Header) };
        let p = problems(k.save("b", framing, Some(credentials::API_KEY)).await.unwrap_err());
        assert_eq!(fields(&p), [Field::KeyName], "{p:?}");

        let (config, _) = jwt_bearer(&api, None);
        let p = problems(k.save("c", config.clone(), Some("not a key")).await.unwrap_err());
        assert_eq!(fields(&p), [Field::PrivateKey], "{p:?}");
        assert!(p[0].to_string().contains("BEGIN PRIVATE KEY"), "{p:?}");
        let p = problems(k.save("c", IntegrationConfig { client_id: None, ..config }, None).await.unwrap_err());
        assert_eq!(fields(&p), [Field::ClientId, Field::PrivateKey], "{p:?}");

        // A stored password or key only goes where it was saved for: a new API origin, or a
        // new kind, needs it typed again.
        k.save("erp", basic(&api), Some(credentials::PASSWORD)).await.unwrap();
        let mut wider = basic(&api);
        wider.api_origins.push("https://evil.example".into());
        let p = problems(k.save("erp", wider, None).await.unwrap_err());
        assert_eq!(fields(&p), [Field::Password], "{p:?}");
        assert!(p[0].to_string().contains("https://evil.example"), "{p:?}");
        let p = problems(k.save("erp", api_key(&api, KeyIn::Header), None).await.unwrap_err());
        assert!(p[0].to_string().contains("the kind changed from basic to api_key"), "{p:?}");
        // The same origins, the same kind: the stored password is kept.
        k.save("erp", basic(&api), None).await.unwrap();
    });
}

/// `tern integrations add` for each kind, as the README shows it, then `tern run`, `show` and
/// `list`; nothing secret in anything printed (debug logs on) nor in plaintext on disk.
#[test]
fn the_command_line_adds_each_kind_and_leaks_nothing() {
    let api = CredentialApi::start();
    let data = fresh_data_dir();
    let flows = Flows::new();
    let key_dir = tempfile::tempdir().unwrap();
    let key_file = key_dir.path().join("service-account.json");
    std::fs::write(&key_file, credentials::key_file(&api.token_url())).unwrap();
    let mut printed = String::new();
    let mut tern_ok = |args: &[&str]| {
        let out = tern()
            .env("TERN_DATA_DIR", &data)
            .env("TERN_ALLOW_PRIVATE_NETWORK", "1")
            .env("RUST_LOG", "debug")
            .env("ERP_PASSWORD", credentials::PASSWORD)
            .env("MKT_KEY", credentials::API_KEY)
            .args(args)
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "tern {args:?}: {text}");
        printed.push_str(&text);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let u = api.url();
    tern_ok(&[
        "integrations",
        "add",
        "erp",
        "--kind",
        "basic",
        "--username",
        credentials::USERNAME,
        "--password-env",
        "ERP_PASSWORD",
        "--api-origin",
        &u,
    ]);
    tern_ok(&[
        "integrations",
        "add",
        "mkt",
        "--kind",
        "api-key",
        "--key-env",
        "MKT_KEY",
        "--key-in",
        "query",
        "--key-name",
        "api_key",
        "--api-origin",
        &u,
    ]);
    let key_path = key_file.to_str().unwrap();
    tern_ok(&[
        "integrations",
        "add",
        "sheets",
        "--kind",
        "jwt-bearer",
        "--key-file",
        key_path,
        "--scopes",
        credentials::SCOPES,
        "--api-origin",
        &u,
    ]);
    for (n, path, via) in
        [("erp", "/basic/me", "basic"), ("mkt", "/key/query/me", "query"), ("sheets", "/google/me", "jwt_bearer")]
    {
        let flow = flows.write(
            n,
            &json!({
                "version": 1, "id": n,
                "steps": [
                    {"id": "lookup", "type": "fetch_variables", "integration": n,
                     "request": {"method": "GET", "url": format!("{u}{path}")},
                     "variables": {"name": "data.name", "via": "data.via"}},
                    {"id": "hi", "type": "send_message", "text": "{{name}} via {{via}}"}
                ]
            }),
        );
        let out = tern_ok(&["run", flow.to_str().unwrap(), "-m", "hi", "--json"]);
        let run: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        assert_eq!(run["replies"][0]["text"], format!("Ada Lovelace via {via}"), "{run:#}");
    }
    let shown = tern_ok(&["integrations", "show", "sheets"]);
    assert!(shown.contains("kind:              jwt_bearer") && shown.contains("private key:       set"), "{shown}");
    assert!(shown.contains(credentials::CLIENT_EMAIL), "the issuer is the key file's client_email: {shown}");
    let shown = tern_ok(&["integrations", "show", "mkt"]);
    assert!(shown.contains("API key in:        query parameter api_key"), "{shown}");
    let list = tern_ok(&["integrations", "list"]);
    for n in ["erp", "mkt", "sheets"] {
        // A service account whose token was fetched shows as authorized.
        assert!(list.lines().any(|l| l.starts_with(n) && (l.contains("ready") || l.contains("authorized"))), "{list}");
    }
    // Another kind's secret option is a mistake worth saying.
    let out = tern()
        .env("TERN_DATA_DIR", &data)
        .env("MKT_KEY", "x")
        .args([
            "integrations",
            "add",
            "x",
            "--kind",
            "basic",
            "--username",
            "u",
            "--key-env",
            "MKT_KEY",
            "--api-origin",
            &u,
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--key-* is not read for an integration of kind basic"), "{err}");

    let mut files = Vec::new();
    for e in std::fs::read_dir(&data).unwrap() {
        files.extend(std::fs::read(e.unwrap().path()).unwrap_or_default());
    }
    let key_body = credentials::PRIVATE_KEY_PEM.lines().nth(1).unwrap();
    for secret in api.secrets().iter().map(String::as_str).chain([key_body]) {
        assert!(!printed.contains(secret), "{secret} was printed: {printed}");
        assert!(!files.windows(secret.len()).any(|w| w == secret.as_bytes()), "{secret} stored in plaintext");
    }
}

/// An API that requires a client certificate from its private CA (`testkit::mtls`): the
/// integration with the certificate, its key and the CA gets in; the same integration without
/// them, or with a stranger's certificate, does not; the certificate is never presented to
/// another origin; and `show` says when it expires, with a warning when that is near.
#[test]
fn a_client_certificate_opens_the_api_that_requires_it_and_nothing_else() {
    use crate::support::mtls::MtlsServer;
    let server = MtlsServer::start();
    rt().block_on(async {
        let k = Kinds::new().await;
        let client = server.client();
        let with_cert = |cert: Option<String>, ca: Option<String>| IntegrationConfig {
            kind: Kind::ApiKey,
            key_in: Some(KeyIn::Header),
            key_name: Some(credentials::KEY_HEADER.into()),
            api_origins: vec![server.url()],
            client_cert: cert,
            ca_cert: ca,
            ..IntegrationConfig::default()
        };
        let save = |n: &'static str, config: IntegrationConfig, key: Option<String>| {
            let service = k.service.clone();
            async move {
                let draft = Draft {
                    config,
                    client_auth: None,
                    client_secret: Some(SecretString::from(credentials::API_KEY.to_string())),
                    client_key: key.map(SecretString::from),
                };
                let options = SaveOptions { replace: true, reachability: Reachability::Unchecked };
                service.save(&name(n), draft, options).await
            }
        };
        save("bank", with_cert(Some(client.cert.clone()), Some(server.ca_pem())), Some(client.key.clone()))
            .await
            .unwrap();
        let url = format!("{}/me", server.url());
        let c = k.call("bank", &url).await;
        assert_eq!(c.replies(), ["Ada Lovelace via mtls"], "{:#}", c.json());
        assert_eq!(server.seen_clients(), ["tern-client"]);

        // Only the CA: the server's certificate is trusted, but no certificate is presented.
        save("bank-no-cert", with_cert(None, Some(server.ca_pem())), None).await.unwrap();
        let c = k.call("bank-no-cert", &url).await;
        assert_eq!(c.failure().code, "http", "{:#}", c.json());
        // A stranger's certificate: refused by the server.
        let stranger = server.stranger();
        save("bank-stranger", with_cert(Some(stranger.cert), Some(server.ca_pem())), Some(stranger.key)).await.unwrap();
        let c = k.call("bank-stranger", &url).await;
        assert_eq!(c.failure().code, "http", "{:#}", c.json());
        // Without the private CA the server's certificate is not trusted.
        save("bank-no-ca", with_cert(Some(client.cert.clone()), None), Some(client.key.clone())).await.unwrap();
        let c = k.call("bank-no-ca", &url).await;
        assert_eq!(c.failure().code, "http", "{:#}", c.json());
        assert_eq!(server.seen_clients(), ["tern-client"], "only the first call got in");

        // A redirect to another origin (the same server as `localhost`, whose certificate
        // names it too): the integration's client would trust it and present the certificate;
        // the hop goes on the plain client, which does neither, so the server sees no one new.
        let target = format!("https://localhost:{}/me", server.addr.port());
        let c = k.call("bank", &format!("{}/redirect?to={}", server.url(), urlencode(&target))).await;
        assert!(c.main().error.is_some(), "{:#}", c.json());
        assert_eq!(server.seen_clients(), ["tern-client"], "the certificate went to another origin");

        // What each front end is told about a certificate and a key that do not go together.
        let other = server.client_expiring_in(10);
        let p = match save("bank", with_cert(Some(client.cert.clone()), None), Some(other.key)).await.unwrap_err() {
            SaveError::Invalid { problems, .. } => problems,
            e => panic!("{e}"),
        };
        assert_eq!(p.iter().map(|p| p.field).collect::<Vec<_>>(), [Field::ClientKey], "{p:?}");
        // A new certificate needs its key again; the stored one is for the old certificate.
        let renewed = server.client_expiring_in(200);
        let p = match save("bank", with_cert(Some(renewed.cert), Some(server.ca_pem())), None).await.unwrap_err() {
            SaveError::Invalid { problems, .. } => problems,
            e => panic!("{e}"),
        };
        assert!(p[0].to_string().contains("--client-key") && p[0].to_string().contains("changed"), "{p:?}");
        // The same certificate keeps its stored key.
        save("bank", with_cert(Some(client.cert.clone()), Some(server.ca_pem())), None).await.unwrap();
        let c = k.call("bank", &url).await;
        assert_eq!(c.replies(), ["Ada Lovelace via mtls"], "{:#}", c.json());
        // Settings that leave the certificate out remove it, and say so.
        let saved = save("bank", with_cert(None, Some(server.ca_pem())), None).await.unwrap();
        assert_eq!(saved.warnings.iter().map(|p| p.field).collect::<Vec<_>>(), [Field::ClientCert]);
        assert!(saved.warnings[0].to_string().contains("removed"), "{:?}", saved.warnings);
    });
}
