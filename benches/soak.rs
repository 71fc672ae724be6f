//! Soak test of `tern serve`: CONCURRENCY clients (default 16) send messages for SOAK_SECS
//! (default 60) against one flow (message → fetch_variables against a local API → reply), each
//! message to a new conversation. Every 5 s it prints the server's RSS, messages so far and the
//! store's size on disk; at the end messages/s, p50/p99, the server's CPU time per message, the
//! CPU time per message of this process (the clients and the test API, which share the machine
//! with the server), and whether RSS still rose over the last 30 s. From the driver's CPU time
//! it prints the ceiling of messages/s on this machine: its cores divided by the driver's CPU
//! time per message, what a server that took no CPU at all would reach under this driver (the
//! driver, the test API and the server share the same cores).
//!
//! `cargo bench --bench soak`. With `BASELINE_BIN=/path/to/older/tern`, the same soak runs
//! first against that binary (the numbers before a change, in the same run).
//! `SOAK_ARGS` adds arguments to the current binary's `serve` (e.g. retention settings),
//! `BASELINE_ARGS` to the baseline's (give both the same retention to compare like for like);
//! `TERN_BIN` soaks another build of the current version instead of this profile's binary.

#![allow(clippy::unwrap_used)] // the shared test support unwraps: a panic ends the benchmark with its message

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use testkit as support;

#[path = "common.rs"]
mod common;
use common::{env_num, pct_ms};

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

/// `VmRSS` of a process, in MiB.
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// User + system CPU seconds of a process.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of stat (11 and 12 after the state field).
    (ticks(11) + ticks(12)) / 100.0
}

fn dir_mib(dir: &Path) -> f64 {
    std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(Result::ok).filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum::<u64>())
        .unwrap_or(0) as f64
        / 1_048_576.0
}

struct Report {
    label: String,
    msgs_per_sec: f64,
    p50: f64,
    p99: f64,
    cpu_us_per_msg: f64,
    driver_cpu_us_per_msg: f64,
    rss_end: f64,
    rss_rise_last_30s: f64,
    store_mib_end: f64,
}

fn soak(label: &str, bin: &str, extra: &[String], api_url: &str, secs: u64, concurrency: usize) -> Report {
    let flows = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        flows.path().join("hello.json"),
        json!({"version": 1, "id": "hello", "trigger": {"type": "message"}, "steps": [
            {"id": "lookup", "type": "fetch_variables",
             "request": {"method": "POST", "url": format!("{api_url}/contacts.info"), "body": {"id": "c1a2"}},
             "variables": {"last_name": "data.last_name"}},
            {"id": "say", "type": "send_message", "text": "Hello {{last_name}}"}
        ]})
        .to_string(),
    )
    .expect("flow");
    let data = tempfile::tempdir().expect("tempdir");
    // A baseline from before channel authentication (issue 22) has no `--channel-token`: its
    // edge is open and the clients' bearer token is ignored.
    let help = std::process::Command::new(bin).args(["serve", "--help"]).output().expect("tern serve --help");
    let channel_token: &[&str] = if String::from_utf8_lossy(&help.stdout).contains("--channel-token") {
        &["--channel-token", support::CHANNEL_TOKEN]
    } else {
        &[]
    };
    let mut child = std::process::Command::new(bin)
        .env("TERN_DATA_DIR", data.path())
        .env("TERN_ALLOW_PRIVATE_NETWORK", "1")
        .env("TERN_ADMIN_TOKEN", "soak-test-admin-token-0123")
        .arg("serve")
        .args(channel_token)
        .args(["--listen", "127.0.0.1:0", "--watch", "false", "--flows"])
        .arg(flows.path())
        .args(["--max-concurrency", "4096"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("tern serve");
    let pid = child.id();
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("address");
    let base = line.trim().strip_prefix("listening on ").expect("address").to_string();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("rt");
    let client = reqwest::Client::new();
    let sent = Arc::new(AtomicU64::new(0));
    println!("\n### {label}\n\n| t (s) | RSS (MiB) | messages | store (MiB) |\n|---|---|---|---|");
    let cpu0 = cpu_secs(pid);
    let driver_cpu0 = cpu_secs(std::process::id());
    let started = Instant::now();
    let until = started + Duration::from_secs(secs);
    let mut samples: Vec<(f64, f64)> = Vec::new();
    let (lat, store_end) = rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for w in 0..concurrency {
            let (client, base, sent) = (client.clone(), base.clone(), sent.clone());
            set.spawn(async move {
                let mut lat = Vec::new();
                let mut n = 0u64;
                while Instant::now() < until {
                    let url = format!("{base}/v1/conversations/soak-{w}-{n}/messages");
                    n += 1;
                    let t = Instant::now();
                    let resp = client
                        .post(&url)
                        .bearer_auth(support::CHANNEL_TOKEN)
                        .json(&json!({"text": "hi", "contact": {"id": "u"}}))
                        .send()
                        .await
                        .expect("send");
                    assert!(resp.status().is_success(), "{}", resp.status());
                    let _ = resp.bytes().await.expect("body");
                    // Keep 1 in 16 latencies: enough for p99, bounded memory in the driver.
                    if n.is_multiple_of(16) {
                        lat.push(t.elapsed());
                    }
                    sent.fetch_add(1, Ordering::Relaxed);
                }
                lat
            });
        }
        let sampler = async {
            // Every 5 s (every second in a short smoke run).
            let every = secs.clamp(1, 5);
            let mut t = every;
            while Instant::now() < until {
                tokio::time::sleep_until((started + Duration::from_secs(t)).into()).await;
                let rss = rss_mib(pid);
                samples.push((t as f64, rss));
                println!("| {t} | {rss:.1} | {} | {:.1} |", sent.load(Ordering::Relaxed), dir_mib(data.path()));
                t += every;
            }
        };
        let (lat, ()) = tokio::join!(common::gather(set), sampler);
        (lat.1, dir_mib(data.path()))
    });
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_secs(pid) - cpu0;
    let driver_cpu = cpu_secs(std::process::id()) - driver_cpu0;
    let _ = child.kill();
    let _ = child.wait();
    let mut lat = lat;
    lat.sort();
    let n = sent.load(Ordering::Relaxed) as f64;
    let last = samples.iter().filter(|(t, _)| *t >= secs as f64 - 30.0).map(|(_, r)| *r).collect::<Vec<_>>();
    let rise = match (last.first(), last.last()) {
        (Some(a), Some(b)) => b - a,
        _ => 0.0,
    };
    Report {
        label: label.to_string(),
        msgs_per_sec: n / elapsed,
        p50: pct_ms(&lat, 0.5),
        p99: pct_ms(&lat, 0.99),
        cpu_us_per_msg: cpu * 1e6 / n.max(1.0),
        driver_cpu_us_per_msg: driver_cpu * 1e6 / n.max(1.0),
        rss_end: samples.last().map_or(0.0, |s| s.1),
        rss_rise_last_30s: rise,
        store_mib_end: store_end,
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let secs = env_num("SOAK_SECS", 60, 1);
    let concurrency = env_num("CONCURRENCY", 16, 2) as usize;
    let api = support::TestApi::start_quiet();
    let mut reports = Vec::new();
    let args = |var: &str| -> Vec<String> {
        std::env::var(var).map(|a| a.split_whitespace().map(str::to_string).collect()).unwrap_or_default()
    };
    if let Ok(baseline) = std::env::var("BASELINE_BIN") {
        let extra = args("BASELINE_ARGS");
        reports.push(soak("baseline (BASELINE_BIN)", &baseline, &extra, &api.url(), secs, concurrency));
    }
    let extra = args("SOAK_ARGS");
    // TERN_BIN: soak another build of this version (e.g. `target/release/tern` while the
    // driver itself is a debug build).
    let bin = std::env::var("TERN_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_tern").to_string());
    reports.push(soak("this build", &bin, &extra, &api.url(), secs, concurrency));
    let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
    println!(
        "\n{concurrency} connections, {secs} s, {cores} cores\n\n| binary | messages/s | p50 | p99 | server CPU per message | driver + test API CPU per message | ceiling (cores / driver CPU per message) | RSS at end | RSS change, last 30 s | store at end |\n|---|---|---|---|---|---|---|---|---|---|"
    );
    for r in reports {
        let ceiling = cores * 1e6 / r.driver_cpu_us_per_msg.max(1.0);
        println!(
            "| {} | {:.0} | {:.2} ms | {:.2} ms | {:.0} µs | {:.0} µs | {:.0}/s | {:.1} MiB | {:+.1} MiB | {:.1} MiB |",
            r.label,
            r.msgs_per_sec,
            r.p50,
            r.p99,
            r.cpu_us_per_msg,
            r.driver_cpu_us_per_msg,
            ceiling,
            r.rss_end,
            r.rss_rise_last_30s,
            r.store_mib_end
        );
    }
}
