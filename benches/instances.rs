//! Messages per second through `tern serve` on each store, in one run: SQLite (the default),
//! PostgreSQL with one instance, PostgreSQL with two instances sharing the database (the load
//! split round-robin). Each message carries a channel message id (so it is deduplicated and
//! its answer remembered: the store is on every message's path) and runs a one-step flow.
//!
//! `cargo bench --bench instances` (CONCURRENCY=16, ROUND_MS=3000, ROUNDS=3; TERN_BIN picks the
//! binary, e.g. a release build; TERN_TEST_DATABASE_URL the PostgreSQL server). With
//! `BASELINE_BIN=/path/to/older/tern`, the two PostgreSQL set-ups run with that binary too, on
//! a database of their own (a newer schema would be refused by it), as the baseline of the same
//! run. The rounds of every set-up are interleaved, so that drift on the machine affects each
//! alike.
#![allow(clippy::unwrap_used)] // bench code: a panic is a failed run with its message

#[path = "common.rs"]
mod common;
use common::{env_num, pct_ms};

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

struct Serve(Child, String);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(bin: &str, flows: &std::path::Path, database_url: Option<&str>, key: &str) -> Serve {
    let data = tempfile::tempdir().unwrap().keep();
    let mut cmd = std::process::Command::new(bin);
    cmd.env("TERN_DATA_DIR", &data).env("TERN_MASTER_KEY", key).env("TERN_ADMIN_TOKEN", "bench-admin-token-0123456789");
    if let Some(url) = database_url {
        cmd.env("TERN_DATABASE_URL", url);
    }
    let mut child = cmd
        .args(["serve", "--listen", "127.0.0.1:0", "--watch", "false", "--max-concurrency", "4096"])
        .args(["--channel-token", testkit::CHANNEL_TOKEN])
        .args(["--flows", flows.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.trim().strip_prefix("listening on ").expect("address").to_string();
    Serve(child, url)
}

async fn round(
    client: &reqwest::Client,
    targets: &[String],
    concurrency: usize,
    dur: Duration,
    tag: &str,
) -> (usize, Vec<Duration>) {
    let until = Instant::now() + dur;
    let mut set = tokio::task::JoinSet::new();
    let targets = Arc::new(targets.to_vec());
    for w in 0..concurrency {
        let (client, targets, tag) = (client.clone(), targets.clone(), tag.to_string());
        set.spawn(async move {
            let mut lat = Vec::new();
            let mut n = 0usize;
            while Instant::now() < until {
                let base = &targets[(w + n) % targets.len()];
                let url = format!("{base}/v1/conversations/{tag}-{w}-{n}/messages");
                n += 1;
                let t = Instant::now();
                let resp = client
                    .post(&url)
                    .bearer_auth(testkit::CHANNEL_TOKEN)
                    .json(&json!({"text": "hi", "message_id": "m-1"}))
                    .send()
                    .await
                    .unwrap();
                assert!(resp.status().is_success(), "{}", resp.status());
                let _ = resp.bytes().await.unwrap();
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
    let concurrency = env_num("CONCURRENCY", 16, 2) as usize;
    let round_ms = env_num("ROUND_MS", 3000, 100);
    let rounds = env_num("ROUNDS", 3, 1) as usize;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let db = rt.block_on(tern_store::testing::PgTestDb::create());
    let flows = tempfile::tempdir().unwrap();
    std::fs::write(
        flows.path().join("hello.json"),
        json!({"version": 1, "id": "hello", "trigger": {"type": "message"}, "steps": [
            {"id": "say", "type": "send_message", "text": "Hello {{message.text}}"}
        ]})
        .to_string(),
    )
    .unwrap();
    let (_, key) = tern_store::crypto::MasterKey::generate();
    let url = db.raw_url();
    let bin = std::env::var("TERN_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_tern").to_string());
    let sqlite = serve(&bin, flows.path(), None, &key);
    let pg_a = serve(&bin, flows.path(), Some(&url), &key);
    let pg_b = serve(&bin, flows.path(), Some(&url), &key);
    let mut setups: Vec<(String, Vec<String>)> = vec![
        ("SQLite, 1 instance".into(), vec![sqlite.1.clone()]),
        ("PostgreSQL, 1 instance".into(), vec![pg_a.1.clone()]),
        ("PostgreSQL, 2 instances".into(), vec![pg_a.1.clone(), pg_b.1.clone()]),
    ];
    let mut baseline = Vec::new();
    let baseline_db = std::env::var("BASELINE_BIN").ok().map(|old| {
        let db = rt.block_on(tern_store::testing::PgTestDb::create());
        let (a, b) = (
            serve(&old, flows.path(), Some(&db.raw_url()), &key),
            serve(&old, flows.path(), Some(&db.raw_url()), &key),
        );
        setups.push(("PostgreSQL, 1 instance (BASELINE_BIN)".into(), vec![a.1.clone()]));
        setups.push(("PostgreSQL, 2 instances (BASELINE_BIN)".into(), vec![a.1.clone(), b.1.clone()]));
        baseline.extend([a, b]);
        db
    });
    let client = reqwest::Client::new();
    let dur = Duration::from_millis(round_ms);
    let mut rps = vec![Vec::new(); setups.len()];
    let mut lat = vec![Vec::new(); setups.len()];
    rt.block_on(async {
        for (i, (_, targets)) in setups.iter().enumerate() {
            round(&client, targets, concurrency, Duration::from_millis(500).min(dur), &format!("warm{i}")).await;
        }
        for r in 0..rounds {
            for (i, (_, targets)) in setups.iter().enumerate() {
                let (n, l) = round(&client, targets, concurrency, dur, &format!("r{r}s{i}")).await;
                rps[i].push(n as f64 / dur.as_secs_f64());
                lat[i].extend(l);
            }
        }
    });
    println!("concurrency {concurrency}, {rounds} interleaved rounds of {round_ms} ms per set-up");
    println!("| store | messages/s (median round) | p50 | p99 |\n|---|---|---|---|");
    for (i, (name, _)) in setups.iter().enumerate() {
        rps[i].sort_by(|a, b| a.total_cmp(b));
        lat[i].sort();
        println!(
            "| {name} | {:.0} | {:.2} ms | {:.2} ms |",
            rps[i][rounds / 2],
            pct_ms(&lat[i], 0.5),
            pct_ms(&lat[i], 0.99)
        );
    }
    drop((sqlite, pg_a, pg_b, baseline));
    rt.block_on(db.drop_db());
    if let Some(db) = baseline_db {
        rt.block_on(db.drop_db());
    }
}
