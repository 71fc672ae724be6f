//! Engine benchmarks, each next to a baseline measured in the same run:
//!
//! - `pure_flow`: a 20-step flow of set_variables / branch / send_message with templates,
//!   against a plain Rust function doing the same work (format, map inserts, comparisons).
//! - `fetch_variables`: a flow whose one step POSTs to a local Teamleader-like API and maps
//!   `data.last_name`, against a raw reqwest loop sending the identical request and extracting
//!   the same field; at concurrency 1 and 32.
//!
//! Run with `cargo bench --bench engine`; numbers go to benches/BENCHMARKS.md.
#![allow(clippy::unwrap_used)] // test code: a panic is a failed test with its message
#![allow(missing_docs)] // criterion_group! generates an undocumented public function

// The same allocator as the `tern` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use testkit as support;

mod common;

use common::input;

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Map, Value, json};
use tern_engine::http::{HttpClient, HttpPolicy, Outbound};
use tern_engine::secrets::NoSecrets;
use tern_engine::{CompiledFlow, Engine, RunLimits, RunStatus};

fn engine(allow_private_network: bool) -> Engine {
    let client = HttpClient::new(HttpPolicy { allow_private_network, ..HttpPolicy::default() }).expect("client");
    Engine {
        registry: Arc::new(tern_steps::registry()),
        outbound: Outbound::new(client, None),
        secrets: Arc::new(NoSecrets),
        limits: RunLimits::default(),
    }
}

fn compile(engine: &Engine, flow: &Value) -> CompiledFlow {
    common::compile(&engine.registry, flow)
}

/// 20 steps: 8 set_variables, 6 branches, 6 send_message, all with templates.
fn pure_flow() -> Value {
    let mut steps = Vec::new();
    for i in 0..6 {
        steps.push(json!({"id": format!("set{i}"), "type": "set_variables",
            "variables": {"greeting": format!("Hello {{{{name}}}} #{i}"), "count": "{{n}}"}}));
        steps.push(json!({"id": format!("br{i}"), "type": "branch",
            "cases": [{"when": {"var": "count", "gt": 1000}, "next": "end"}]}));
        steps.push(json!({"id": format!("say{i}"), "type": "send_message", "text": "{{greeting}} ({{count}})"}));
    }
    steps.push(json!({"id": "set_a", "type": "set_variables", "variables": {"done": true}}));
    steps.push(json!({"id": "set_b", "type": "set_variables", "variables": {"summary": "{{name}} done"}}));
    json!({"version": 1, "id": "pure", "variables": {"name": "Ann", "n": 7}, "steps": steps})
}

/// The same work as `pure_flow`, written as plain Rust.
fn pure_baseline(vars: &mut Map<String, Value>) -> Vec<String> {
    let mut replies = Vec::new();
    for i in 0..6 {
        let name = vars.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
        vars.insert("greeting".into(), Value::String(format!("Hello {name} #{i}")));
        let n = vars.get("n").cloned().unwrap_or(Value::Null);
        vars.insert("count".into(), n);
        if vars.get("count").and_then(Value::as_f64).is_some_and(|c| c > 1000.0) {
            return replies;
        }
        let greeting = vars.get("greeting").and_then(Value::as_str).unwrap_or_default();
        replies.push(format!("{greeting} ({})", vars.get("count").map(|v| v.to_string()).unwrap_or_default()));
    }
    vars.insert("done".into(), Value::Bool(true));
    let name = vars.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
    vars.insert("summary".into(), Value::String(format!("{name} done")));
    replies
}

fn bench_pure(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
    let engine = engine(false);
    let flow = compile(&engine, &pure_flow());
    assert_eq!(flow.steps.len(), 20);
    let mut group = c.benchmark_group("pure_flow_20_steps");
    group.throughput(Throughput::Elements(20));
    group.bench_function("tern_engine", |b| {
        b.to_async(&rt).iter(|| async {
            let r = engine.start(&flow, input(), Map::new(), None).await;
            assert_eq!(r.status, RunStatus::Completed);
            r
        })
    });
    group.bench_function("plain_rust_baseline", |b| {
        b.iter(|| {
            let mut vars = Map::new();
            vars.insert("name".into(), json!("Ann"));
            vars.insert("n".into(), json!(7));
            pure_baseline(&mut vars)
        })
    });
    group.finish();
}

fn fetch_flow(api: &support::TestApi) -> Value {
    json!({"version": 1, "id": "fetch", "variables": {"id": "c1a2"}, "steps": [
        {"id": "lookup", "type": "fetch_variables",
         "request": {"method": "POST", "url": format!("{}/contacts.info", api.url()), "body": {"id": "{{id}}"}},
         "variables": {"last_name": "data.last_name"}}
    ]})
}

fn bench_fetch(c: &mut Criterion) {
    let api = support::TestApi::start_quiet();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("rt");
    let engine = Arc::new(engine(true));
    let flow = Arc::new(compile(&engine, &fetch_flow(&api)));
    let raw = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let url = format!("{}/contacts.info", api.url());

    let mut group = c.benchmark_group("fetch_variables");
    for concurrency in [1usize, 32] {
        group.throughput(Throughput::Elements(concurrency as u64));
        group.bench_with_input(BenchmarkId::new("tern_fetch_variables", concurrency), &concurrency, |b, &n| {
            b.to_async(&rt).iter_custom(|iters| {
                let engine = engine.clone();
                let flow = flow.clone();
                async move {
                    let started = Instant::now();
                    for _ in 0..iters {
                        let mut set = tokio::task::JoinSet::new();
                        for _ in 0..n {
                            let (engine, flow) = (engine.clone(), flow.clone());
                            set.spawn(async move {
                                let r = engine.start(&flow, input(), Map::new(), None).await;
                                assert_eq!(r.variables.get("last_name"), Some(&json!("Bachman")), "{:?}", r.error);
                            });
                        }
                        while set.join_next().await.is_some() {}
                    }
                    started.elapsed()
                }
            })
        });
        group.bench_with_input(BenchmarkId::new("raw_reqwest", concurrency), &concurrency, |b, &n| {
            b.to_async(&rt).iter_custom(|iters| {
                let (raw, url) = (raw.clone(), url.clone());
                async move {
                    let started = Instant::now();
                    for _ in 0..iters {
                        let mut set = tokio::task::JoinSet::new();
                        for _ in 0..n {
                            let (raw, url) = (raw.clone(), url.clone());
                            set.spawn(async move {
                                let resp = raw.post(&url).json(&json!({"id": "c1a2"})).send().await.expect("send");
                                let body: Value = resp.json().await.expect("json");
                                assert_eq!(body.pointer("/data/last_name"), Some(&json!("Bachman")));
                            });
                        }
                        while set.join_next().await.is_some() {}
                    }
                    started.elapsed()
                }
            })
        });
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default().warm_up_time(Duration::from_secs(2)).measurement_time(Duration::from_secs(5)).sample_size(30)
}

criterion_group! { name = benches; config = config(); targets = bench_pure, bench_fetch }
criterion_main!(benches);
