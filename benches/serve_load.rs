//! Load driver for `tern serve`: conversation messages that each run message → fetch_variables
//! → reply against a local API, next to the same number of requests sent straight to that API,
//! interleaved. Prints req/s and p50/p99 for each.
//!
//! `cargo bench --bench serve_load` (CONCURRENCY, ROUND_MS, ROUNDS tune it).
#![allow(clippy::unwrap_used)] // test code: a panic is a failed test with its message

// The same allocator as the `tern` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use testkit as support;

#[path = "common.rs"]
mod common;
use common::{env_num, pct_ms};

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::json;

async fn round(
    client: &reqwest::Client,
    target: &str,
    body: serde_json::Value,
    concurrency: usize,
    dur: Duration,
    tern: bool,
) -> (usize, Vec<Duration>) {
    let until = Instant::now() + dur;
    let mut set = tokio::task::JoinSet::new();
    for w in 0..concurrency {
        let (client, target, body) = (client.clone(), target.to_string(), body.clone());
        set.spawn(async move {
            let mut lat = Vec::new();
            let mut n = 0u64;
            while Instant::now() < until {
                let url =
                    if tern { format!("{target}/v1/conversations/load-{w}-{n}/messages") } else { target.clone() };
                n += 1;
                let t = Instant::now();
                let resp =
                    client.post(&url).bearer_auth(support::CHANNEL_TOKEN).json(&body).send().await.expect("send");
                assert!(resp.status().is_success(), "{}", resp.status());
                let _ = resp.bytes().await.expect("body");
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
    let concurrency = env_num("CONCURRENCY", 64, 4) as usize;
    let round_ms = env_num("ROUND_MS", 1000, 50);
    let rounds = env_num("ROUNDS", 5, 1) as usize;
    let api = support::TestApi::start_quiet();
    let flows = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        flows.path().join("hello.json"),
        json!({"version": 1, "id": "hello", "trigger": {"type": "message"}, "steps": [
            {"id": "lookup", "type": "fetch_variables",
             "request": {"method": "POST", "url": format!("{}/contacts.info", api.url()), "body": {"id": "c1a2"}},
             "variables": {"last_name": "data.last_name"}},
            {"id": "say", "type": "send_message", "text": "Hello {{last_name}}"}
        ]})
        .to_string(),
    )
    .expect("flow");
    let data = tempfile::tempdir().expect("tempdir");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tern"))
        .env("TERN_DATA_DIR", data.path())
        .env("TERN_ALLOW_PRIVATE_NETWORK", "1")
        .env("TERN_ADMIN_TOKEN", "load-test-admin-token-0123")
        .args([
            "serve",
            "--channel-token",
            support::CHANNEL_TOKEN,
            "--listen",
            "127.0.0.1:0",
            "--flows",
            flows.path().to_str().expect("path"),
            "--max-concurrency",
            "4096",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("tern serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("address");
    let base = line.trim().strip_prefix("listening on ").expect("address").to_string();

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("rt");
    let client = reqwest::Client::new();
    let dur = Duration::from_millis(round_ms);
    let raw_url = format!("{}/contacts.info", api.url());
    let (mut tern_rps, mut raw_rps) = (Vec::new(), Vec::new());
    let (mut tern_lat, mut raw_lat) = (Vec::new(), Vec::new());
    rt.block_on(async {
        let warm = Duration::from_millis(300).min(dur);
        round(&client, &base, json!({"text": "hi"}), concurrency, warm, true).await;
        round(&client, &raw_url, json!({"id": "c1a2"}), concurrency, warm, false).await;
        for i in 0..rounds {
            for side in if i % 2 == 0 { [true, false] } else { [false, true] } {
                let (n, lat) = if side {
                    round(&client, &base, json!({"text": "hi", "contact": {"id": "u"}}), concurrency, dur, true).await
                } else {
                    round(&client, &raw_url, json!({"id": "c1a2"}), concurrency, dur, false).await
                };
                let rps = n as f64 / dur.as_secs_f64();
                if side {
                    tern_rps.push(rps);
                    tern_lat.extend(lat);
                } else {
                    raw_rps.push(rps);
                    raw_lat.extend(lat);
                }
            }
        }
    });
    let _ = child.kill();
    let _ = child.wait();
    for v in [&mut tern_rps, &mut raw_rps] {
        v.sort_by(|a, b| a.total_cmp(b));
    }
    tern_lat.sort();
    raw_lat.sort();
    println!("concurrency {concurrency}, {rounds} interleaved rounds of {round_ms} ms");
    println!("| side | req/s (median round) | p50 | p99 |\n|---|---|---|---|");
    println!(
        "| tern serve: message → fetch_variables → reply | {:.0} | {:.2} ms | {:.2} ms |",
        tern_rps[rounds / 2],
        pct_ms(&tern_lat, 0.5),
        pct_ms(&tern_lat, 0.99)
    );
    println!(
        "| the API alone (raw reqwest) | {:.0} | {:.2} ms | {:.2} ms |",
        raw_rps[rounds / 2],
        pct_ms(&raw_lat, 0.5),
        pct_ms(&raw_lat, 0.99)
    );
}
