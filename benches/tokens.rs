//! Token benchmarks (load driver, interleaved rounds):
//!
//! 1. Token injection on the hot path: `fetch_variables` with an authorized integration (token
//!    from the in-memory grant cache, origin check, header injection) against the identical
//!    step without an integration, same local server, same run.
//! 2. 1000 concurrent runs while the token is refreshed once (the token endpoint takes 50 ms):
//!    latency percentiles next to 1000 concurrent runs with a fresh token.
//!
//! `cargo bench --bench tokens`.
#![allow(clippy::unwrap_used)] // test code: a panic is a failed test with its message

// The same allocator as the `tern` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use testkit as support;

#[path = "common.rs"]
mod common;
use common::{env_num, pct_ms};

use std::sync::Arc;
use std::time::{Duration, Instant};

use secrecy::SecretString;
use serde_json::{Map, Value, json};
use tern_engine::clock::{Clock, SystemClock};
use tern_engine::http::{HttpClient, HttpPolicy, Outbound};
use tern_engine::secrets::NoSecrets;
use tern_engine::{CompiledFlow, Engine, IntegrationName, LoadOptions, Message, RunInput, TokenOwner, load_flow};
use tern_integrations::config::{ClientAuth, IntegrationConfig};
use tern_integrations::{CallbackParams, Integrations};
use tern_store::crypto::{Keyring, MasterKey};
use tern_store::{IntegrationStatus, SqliteStore, Store, TokenRecord};

fn input(i: usize) -> RunInput {
    RunInput {
        now_ms: None,
        woken: None,
        event: None,
        journal: None,
        flows: None,
        conversation_id: format!("c{i}"),
        contact: json!({"id": "u"}),
        message: Message { text: "go".into(), ..Default::default() },
    }
}

fn flow(engine: &Engine, url: &str, integration: Option<&str>) -> CompiledFlow {
    let mut step = json!({"id": "lookup", "type": "fetch_variables",
        "request": {"method": "POST", "url": url, "body": {"id": "c1a2"}},
        "variables": {"last_name": "data.last_name"}});
    if let Some(i) = integration {
        step["integration"] = json!(i);
    }
    let text = json!({"version": 1, "id": "f", "steps": [step]}).to_string();
    load_flow(&text, &LoadOptions::new(&engine.registry)).expect("flow")
}

async fn concurrent(engine: &Arc<Engine>, flow: &Arc<CompiledFlow>, n: usize) -> (Duration, Vec<Duration>) {
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..n {
        let (engine, flow) = (engine.clone(), flow.clone());
        set.spawn(async move {
            let t = Instant::now();
            let r = engine.start(&flow, input(i), Map::new(), None).await;
            assert_eq!(r.variables.get("last_name"), Some(&json!("Bachman")), "{:?}", r.error);
            t.elapsed()
        });
    }
    let mut lat = Vec::new();
    while let Some(r) = set.join_next().await {
        lat.push(r.expect("run"));
    }
    lat.sort();
    (started.elapsed(), lat)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("rt");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let (key, _) = MasterKey::generate();
        let store = Arc::new(SqliteStore::open(&dir.path().join("tern.db"), Keyring::new(key)).await.expect("store"));
        let http = HttpClient::new(HttpPolicy { allow_private_network: true, ..HttpPolicy::default() }).expect("http");
        let public = url::Url::parse("http://127.0.0.1:9").expect("url");
        let integrations = Arc::new(Integrations::new(store.clone(), http.clone(), public, Arc::new(NoSecrets)));
        let engine = Arc::new(Engine {
            registry: Arc::new(tern_steps::registry()),
            outbound: Outbound::new(http.clone(), Some(integrations.clone())),
            secrets: Arc::new(NoSecrets),
            limits: Default::default(),
        });

        // 1. Injection overhead.
        let api = support::TestApi::start_quiet();
        let name = IntegrationName::new("bench").expect("name");
        let config =
            IntegrationConfig { client_id: Some("x".into()), api_origins: vec![api.url()], ..Default::default() };
        store.put_integration(&name, &config, None).await.expect("put");
        let token = TokenRecord {
            access_token: SecretString::from("at_bench_token".to_string()),
            refresh_token: None,
            expires_at: Some(SystemClock.now_s() + 86_400),
            obtained_at: SystemClock.now_s(),
            scopes: None,
            metadata: Map::new(),
            version: 0,
        };
        store.put_token(&name, &TokenOwner::Workspace, &token).await.expect("token");
        store.set_status(&name, IntegrationStatus::Authorized, None).await.expect("status");
        let url = format!("{}/contacts.info", api.url());
        let with = Arc::new(flow(&engine, &url, Some("bench")));
        let without = Arc::new(flow(&engine, &url, None));
        let rounds = env_num("ROUNDS", 10, 1) as usize;
        let round_ms = env_num("ROUND_MS", 300, 20);
        let burst = env_num("BURST", 1000, 20) as usize;
        println!("## Token injection on the hot path ({rounds} rounds × {round_ms} ms per side, concurrency 32)");
        let (mut ratios, mut rps_with, mut rps_without) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..rounds {
            let mut rps = [0.0; 2];
            let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
            for side in order {
                let f = if side == 0 { with.clone() } else { without.clone() };
                let until = Instant::now() + Duration::from_millis(round_ms);
                let mut set = tokio::task::JoinSet::new();
                for w in 0..32 {
                    let (engine, f) = (engine.clone(), f.clone());
                    set.spawn(async move {
                        let mut n = 0usize;
                        while Instant::now() < until {
                            let r = engine.start(&f, input(w), Map::new(), None).await;
                            assert!(r.error.is_none(), "{:?}", r.error);
                            n += 1;
                        }
                        n
                    });
                }
                let mut total = 0;
                while let Some(n) = set.join_next().await {
                    total += n.expect("worker");
                }
                rps[side] = total as f64 / (round_ms as f64 / 1e3);
            }
            rps_with.push(rps[0]);
            rps_without.push(rps[1]);
            ratios.push(rps[1] / rps[0]);
        }
        for v in [&mut ratios, &mut rps_with, &mut rps_without] {
            v.sort_by(|a, b| a.total_cmp(b));
        }
        println!("| side | req/s (median round) |\n|---|---|");
        println!("| with integration (token injected) | {:.0} |", rps_with[rounds / 2]);
        println!("| without integration | {:.0} |", rps_without[rounds / 2]);
        println!("cost ratio (time with / time without, median of rounds): {:.3}", ratios[rounds / 2]);

        // 2. 1000 concurrent runs during one refresh.
        let auth = support::oauth::AuthServer::start();
        let crm = IntegrationName::new("crm").expect("name");
        let a = auth.url();
        let config = IntegrationConfig {
            client_id: Some(support::oauth::CLIENT_ID.into()),
            authorization_url: Some(url::Url::parse(&format!("{a}/authorize")).expect("url")),
            token_url: Some(url::Url::parse(&format!("{a}/token")).expect("url")),
            api_origins: vec![a.clone()],
            client_auth: ClientAuth::Basic,
            ..Default::default()
        };
        store
            .put_integration(&crm, &config, Some(&SecretString::from(support::oauth::CLIENT_SECRET.to_string())))
            .await
            .expect("put");
        let start = integrations.begin(&crm, TokenOwner::Workspace).await.expect("begin");
        let browser = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
        let loc = browser.get(start.url.as_str()).send().await.expect("authorize");
        let loc = url::Url::parse(loc.headers()["location"].to_str().expect("loc")).expect("url");
        let q: Map<String, Value> = loc.query_pairs().map(|(k, v)| (k.into_owned(), json!(v))).collect();
        let params: CallbackParams = serde_json::from_value(Value::Object(q)).expect("params");
        integrations.complete(&params).await.expect("complete");
        auth.set(|f| f.token_delay = Duration::from_millis(50));
        let crm_flow = Arc::new(flow(&engine, &format!("{a}/api/contacts.info"), Some("crm")));

        let (total_fresh, fresh) = concurrent(&engine, &crm_flow, burst).await;
        // Expire the stored token so the next burst must refresh it (once).
        let mut t = store.get_token(&crm, &TokenOwner::Workspace).await.expect("get").expect("token");
        t.expires_at = Some(SystemClock.now_s() - 1);
        store.put_token(&crm, &TokenOwner::Workspace, &t).await.expect("put");
        integrations.invalidate(&crm);
        let before = auth.token_requests("refresh_token");
        let (total_refresh, during) = concurrent(&engine, &crm_flow, burst).await;
        let refreshes = auth.token_requests("refresh_token") - before;
        println!("\n## {burst} concurrent runs (token endpoint latency 50 ms)");
        println!("| burst | wall time | p50 | p99 | max | token requests |\n|---|---|---|---|---|---|");
        println!(
            "| fresh token | {:.0} ms | {:.1} ms | {:.1} ms | {:.1} ms | 0 |",
            total_fresh.as_secs_f64() * 1e3,
            pct_ms(&fresh, 0.5),
            pct_ms(&fresh, 0.99),
            pct_ms(&fresh, 1.0)
        );
        println!(
            "| expired token, refreshed once | {:.0} ms | {:.1} ms | {:.1} ms | {:.1} ms | {refreshes} |",
            total_refresh.as_secs_f64() * 1e3,
            pct_ms(&during, 0.5),
            pct_ms(&during, 0.99),
            pct_ms(&during, 1.0)
        );
    });
}
