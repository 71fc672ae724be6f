//! Helpers shared by the load drivers.

#![allow(dead_code)]

use std::time::Duration;

use serde_json::{Value, json};
use tern_engine::{CompiledFlow, LoadOptions, Message, Registry, RunInput, load_flow};

/// Whether this is a smoke run rather than a measurement. `cargo bench` passes `--bench` to
/// every benchmark binary; `cargo test --benches` (which `scripts/test` runs, so that a broken
/// benchmark fails CI) passes nothing. Without `--bench` each driver runs a few iterations and
/// prints its table, whose numbers mean nothing; it asserts what it always asserts (answers,
/// statuses), never a timing. Criterion's benchmarks (`engine`) make the same distinction
/// themselves (their "test mode").
pub fn smoke() -> bool {
    !std::env::args().any(|a| a == "--bench")
}

/// A number from the environment, or the default (`smoke` in a [`smoke`] run).
pub fn env_num(name: &str, default: u64, smoke: u64) -> u64 {
    let fallback = if self::smoke() { smoke } else { default };
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(fallback)
}

/// The `p` quantile (0..=1) of sorted latencies, in milliseconds.
pub fn pct_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1e3
}

/// Compiles a flow document against `registry`.
pub fn compile(registry: &Registry, flow: &Value) -> CompiledFlow {
    let opts = LoadOptions::new(registry);
    load_flow(&flow.to_string(), &opts).expect("valid flow")
}

/// The message every benchmark run starts with.
pub fn input() -> RunInput {
    RunInput {
        now_ms: None,
        woken: None,
        event: None,
        journal: None,
        flows: None,
        conversation_id: "bench".into(),
        contact: json!({"id": "u1"}),
        message: Message { text: "go".into(), ..Default::default() },
    }
}

/// Every worker's latencies, gathered: (how many, all of them).
pub async fn gather(mut set: tokio::task::JoinSet<Vec<Duration>>) -> (usize, Vec<Duration>) {
    let mut all = Vec::new();
    while let Some(r) = set.join_next().await {
        all.extend(r.expect("worker"));
    }
    (all.len(), all)
}
