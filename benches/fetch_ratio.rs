//! Load driver: `fetch_variables` through the whole engine vs a raw reqwest loop making the
//! identical request to the same local server, measured in **interleaved** rounds so that both
//! see the same machine state (on a shared 2-core machine, run-to-run drift is larger than the
//! difference being measured). Prints requests/s and p50/p99 latency of each, and the median of
//! the per-round throughput ratios.
//!
//! `cargo bench --bench fetch_ratio` (ROUNDS and ROUND_MS environment variables tune it).
#![allow(clippy::unwrap_used)] // test code: a panic is a failed test with its message

// The same allocator as the `tern` binary, so the driver measures what the binary does.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use testkit as support;

#[path = "common.rs"]
mod common;
use common::{env_num, pct_ms};

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use tern_engine::http::{HttpClient, HttpPolicy, Outbound};
use tern_engine::secrets::NoSecrets;
use tern_engine::{Engine, LoadOptions, Message, RunInput, RunLimits, load_flow};

#[derive(Clone, Copy)]
enum Side {
    Tern,
    Raw,
}

struct Ctx {
    engine: Engine,
    flow: tern_engine::CompiledFlow,
    raw: reqwest::Client,
    url: String,
}

async fn one(ctx: &Ctx, side: Side) {
    match side {
        Side::Tern => {
            let input = RunInput {
                now_ms: None,
                woken: None,
                event: None,
                journal: None,
                flows: None,
                conversation_id: "load".into(),
                contact: json!({"id": "u1"}),
                message: Message { text: "go".into(), ..Default::default() },
            };
            let r = ctx.engine.start(&ctx.flow, input, Map::new(), None).await;
            assert_eq!(r.variables.get("last_name"), Some(&json!("Bachman")), "{:?}", r.error);
        }
        Side::Raw => {
            let resp = ctx.raw.post(&ctx.url).json(&json!({"id": "c1a2"})).send().await.expect("send");
            let body: Value = resp.json().await.expect("json");
            assert_eq!(body.pointer("/data/last_name"), Some(&json!("Bachman")));
        }
    }
}

/// Runs `concurrency` workers for `dur`; returns (requests, latencies).
async fn round(ctx: Arc<Ctx>, side: Side, concurrency: usize, dur: Duration) -> (usize, Vec<Duration>) {
    let until = Instant::now() + dur;
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let ctx = ctx.clone();
        set.spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < until {
                let t = Instant::now();
                one(&ctx, side).await;
                lat.push(t.elapsed());
            }
            lat
        });
    }
    common::gather(set).await
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rounds = env_num("ROUNDS", 12, 1) as usize;
    let round_ms = env_num("ROUND_MS", 400, 20);
    let api = support::TestApi::start_quiet();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("rt");
    let client = HttpClient::new(HttpPolicy { allow_private_network: true, ..HttpPolicy::default() }).expect("client");
    let engine = Engine {
        registry: Arc::new(tern_steps::registry()),
        outbound: Outbound::new(client, None),
        secrets: Arc::new(NoSecrets),
        limits: RunLimits::default(),
    };
    let url = format!("{}/contacts.info", api.url());
    let flow_json = json!({"version": 1, "id": "fetch", "variables": {"id": "c1a2"}, "steps": [
        {"id": "lookup", "type": "fetch_variables",
         "request": {"method": "POST", "url": url, "body": {"id": "{{id}}"}},
         "variables": {"last_name": "data.last_name"}}
    ]});
    let opts = LoadOptions::new(&engine.registry);
    let flow = load_flow(&flow_json.to_string(), &opts).expect("flow");
    let raw = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let ctx = Arc::new(Ctx { engine, flow, raw, url });

    println!("fetch_variables vs raw reqwest, {rounds} interleaved rounds of {round_ms} ms each side");
    println!("| concurrency | side | req/s (median round) | p50 | p99 | ratio tern/raw (median of rounds) |");
    println!("|---|---|---|---|---|---|");
    for concurrency in [1usize, 32] {
        let dur = Duration::from_millis(round_ms);
        // Warm up both sides (connections, allocator).
        let warm = Duration::from_millis(200).min(dur);
        rt.block_on(round(ctx.clone(), Side::Tern, concurrency, warm));
        rt.block_on(round(ctx.clone(), Side::Raw, concurrency, warm));
        let (mut tern_rps, mut raw_rps, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        let (mut tern_lat, mut raw_lat) = (Vec::new(), Vec::new());
        for i in 0..rounds {
            // Alternate which side goes first so neither always gets the warmer slot.
            let order = if i % 2 == 0 { [Side::Tern, Side::Raw] } else { [Side::Raw, Side::Tern] };
            // ONLY=tern runs Tern's side alone (for profiling); the ratio is then meaningless.
            let only_tern = std::env::var("ONLY").as_deref() == Ok("tern");
            let mut rps = [0.0f64; 2];
            for side in order {
                if only_tern && matches!(side, Side::Raw) {
                    continue;
                }
                let (n, lat) = rt.block_on(round(ctx.clone(), side, concurrency, dur));
                let r = n as f64 / dur.as_secs_f64();
                match side {
                    Side::Tern => {
                        rps[0] = r;
                        tern_lat.extend(lat);
                    }
                    Side::Raw => {
                        rps[1] = r;
                        raw_lat.extend(lat);
                    }
                }
            }
            tern_rps.push(rps[0]);
            raw_rps.push(rps[1]);
            ratios.push(rps[0] / rps[1]);
        }
        for v in [&mut tern_rps, &mut raw_rps, &mut ratios] {
            v.sort_by(|a, b| a.total_cmp(b));
        }
        tern_lat.sort();
        raw_lat.sort();
        let median = |v: &Vec<f64>| v[v.len() / 2];
        println!(
            "| {concurrency} | tern fetch_variables | {:.0} | {:.0} µs | {:.0} µs | {:.2} |",
            median(&tern_rps),
            pct_ms(&tern_lat, 0.5) * 1e3,
            pct_ms(&tern_lat, 0.99) * 1e3,
            median(&ratios)
        );
        println!(
            "| {concurrency} | raw reqwest | {:.0} | {:.0} µs | {:.0} µs | |",
            median(&raw_rps),
            pct_ms(&raw_lat, 0.5) * 1e3,
            pct_ms(&raw_lat, 0.99) * 1e3
        );
    }
}
