//! Plugin step overhead, each variant measured in the same run, interleaved in rounds so that
//! drift on a shared 2-core VM hits them alike:
//!
//! - `serde_json round-trip`: parsing the ~1 KB configuration and writing the ~1 KB output,
//!   the floor any step that exchanges JSON pays;
//! - `native step`: the same name-splitting logic as a Rust step, run by the engine;
//! - `C plugin`: plugins/examples/c-name-parts built from source, run by the engine (fresh
//!   store and instance, run, drop);
//! - `JavaScript plugin`: the same logic in QuickJS (benches/plugins/name_parts.js);
//! - `Python plugin`: the same logic in CPython (benches/plugins/name_parts.py, componentize-py,
//!   with the helper library).
//!
//! Plus loading each component from the warm compilation cache. Run with
//! `cargo bench --bench plugins`; numbers go to benches/BENCHMARKS.md.
#![allow(clippy::unwrap_used)] // test code: a panic is a failed test with its message

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{Map, Value, json};
use tern_engine::http::{HttpClient, HttpPolicy, Outbound};
use tern_engine::secrets::NoSecrets;
use tern_engine::step::{BuildContext, Outcome, Step, StepContext, StepFailure, StepType};
use tern_engine::template::JsonTemplate;
use tern_engine::{CompiledFlow, Engine, Registry, RunLimits, RunStatus, VarName};
use tern_plugins::{Limits, Plugin, PluginStepType, Runtime};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The name-splitting logic of the C example, in Rust: the first word and the rest, spelt as
/// written.
fn split(name: &str) -> (String, String, &'static str) {
    let words: Vec<&str> = name.split_whitespace().collect();
    let Some(first) = words.first() else { return (String::new(), String::new(), "empty") };
    let outcome = if words.len() == 1 { "single" } else { "full" };
    (first.to_string(), words[1..].join(" "), outcome)
}

struct NativeNameParts;

#[derive(Debug)]
struct NativeStep {
    template: JsonTemplate,
    first: VarName,
    last: VarName,
}

impl StepType for NativeNameParts {
    fn name(&self) -> &str {
        "native.name-parts"
    }
    fn description(&self) -> &str {
        "Splits a full name (Rust)"
    }
    fn config_schema(&self) -> Value {
        json!({"type": "object"})
    }
    fn build(&self, config: &Value, cx: &mut BuildContext<'_>) -> Option<Box<dyn Step>> {
        let var = |k: &str| VarName::new(config.get(k).and_then(Value::as_str).unwrap_or(k)).ok();
        let (first, last) = (var("first_as")?, var("last_as")?);
        cx.defines("/first_as", &first);
        cx.defines("/last_as", &last);
        Some(Box::new(NativeStep { template: cx.json_template("", config)?, first, last }))
    }
}

#[async_trait]
impl Step for NativeStep {
    async fn run(&self, cx: &mut StepContext<'_>) -> Result<Outcome, StepFailure> {
        let config = self.template.render(&cx.scope())?;
        let (first, last, _) = split(config.get("name").and_then(Value::as_str).unwrap_or(""));
        cx.set_var(&self.first, Value::String(first));
        cx.set_var(&self.last, Value::String(last));
        Ok(Outcome::Next)
    }
}

fn build_js(out: &Path) {
    let status = std::process::Command::new(testkit::tools::componentize_qjs())
        .args([
            "--wit",
            "plugins/wit",
            "--world",
            "step",
            "--js",
            "benches/plugins/name_parts.js",
            "--sync",
            "--stub-wasi",
            "-o",
        ])
        .arg(out)
        .current_dir(repo())
        .status()
        .expect("componentize-qjs");
    assert!(status.success());
}

/// Builds benches/plugins/name_parts.py with componentize-py (WASI stubbed, as `tern plugins
/// build` does) and the helper library.
fn build_py(bin: &Path, out: &Path) {
    let status = std::process::Command::new(bin.join("componentize-py"))
        .args(["-d", "plugins/wit", "-w", "step", "componentize", "--stub-wasi", "name_parts"])
        .args(["-p", "benches/plugins", "-p", "plugins/sdk/python", "-o"])
        .arg(out)
        .current_dir(repo())
        .status()
        .expect("componentize-py");
    assert!(status.success());
}

fn flow(registry: &Registry, step_type: &str) -> CompiledFlow {
    let flow = json!({"version": 1, "id": "bench", "variables": {"full_name": ""}, "steps": [
        {"id": "s", "type": step_type, "name": "{{full_name}}", "first_as": "first", "last_as": "last"}
    ]});
    common::compile(registry, &flow)
}

fn median_us(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    let at = |p: f64| v[((v.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1e6;
    (at(0.5), at(0.99))
}

fn main() {
    // A smoke run (`cargo test --benches`) on a machine without the plugin toolchains says so
    // and ends, as the tests do (and fails under `scripts/test`, which installs them).
    if common::smoke()
        && !testkit::tools::available("benches/plugins.rs", &[&testkit::tools::CLANG_WASI, &testkit::tools::NODE])
    {
        return;
    }
    let rounds = common::env_num("ROUNDS", 20, 1) as usize;
    let warm_loads = common::env_num("LOADS", 20, 1);
    let per_round = common::env_num("PER_ROUND", 200, 2) as usize;
    let scratch = tempfile::tempdir().expect("tempdir");
    let c_file = scratch.path().join("name-parts.wasm");
    tern_plugin_build::build_c(
        &repo().join("plugins/examples/c-name-parts"),
        &repo().join("plugins/wit"),
        &scratch.path().join("work"),
        &c_file,
    )
    .expect("build the C example");
    // ONLY=native|c|js measures one engine variant (for profiling).
    let only = std::env::var("ONLY").ok();
    let js_file = scratch.path().join("js-name-parts.wasm");
    let with_js = only.as_deref().is_none_or(|o| o == "js");
    if with_js {
        build_js(&js_file);
    } else {
        std::fs::copy(&c_file, &js_file).expect("copy");
    }
    let py_file = scratch.path().join("py-name-parts.wasm");
    let py_bin = if only.as_deref().is_none_or(|o| o == "py") {
        testkit::tools::componentize_py("benches/plugins.rs (Python)")
    } else {
        None
    };
    if let Some(bin) = &py_bin {
        build_py(bin, &py_file);
    }

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let cache = scratch.path().join("cache");
    let runtime = Runtime::new(Limits::default(), Some(&cache)).expect("runtime");
    println!("pooling allocator: {}", runtime.is_pooling());
    let c = rt.block_on(Plugin::load(&runtime, &c_file, Vec::new())).expect("load C");
    let js = rt.block_on(Plugin::load(&runtime, &js_file, Vec::new())).expect("load JS");
    let py = py_bin.as_ref().map(|_| rt.block_on(Plugin::load(&runtime, &py_file, Vec::new())).expect("load Python"));
    println!(
        "first load (compile): C {:.1} ms, JS {:.1} ms, Python {}",
        c.load_time.as_secs_f64() * 1e3,
        js.load_time.as_secs_f64() * 1e3,
        py.as_ref().map_or("not built".to_string(), |p| format!("{:.1} ms", p.load_time.as_secs_f64() * 1e3))
    );

    // Loading from the warm cache, as every later start does.
    let files: Vec<&Path> = [Some(c_file.as_path()), Some(js_file.as_path()), py.as_ref().map(|_| py_file.as_path())]
        .into_iter()
        .flatten()
        .collect();
    let mut loads: Vec<Vec<Duration>> = vec![Vec::new(); files.len()];
    for _ in 0..warm_loads {
        for (i, f) in files.iter().enumerate() {
            let p = rt.block_on(Plugin::load(&runtime, f, Vec::new())).expect("load");
            loads[i].push(p.load_time);
        }
    }
    let medians: Vec<String> = ["C", "JS", "Python"]
        .iter()
        .zip(loads)
        .map(|(label, l)| format!("{label} {:.3} ms", median_us(l).0 / 1e3))
        .collect();
    println!("precompiled load (median of {warm_loads}): {}", medians.join(", "));

    let mut registry = tern_steps::registry();
    registry.register(Arc::new(NativeNameParts)).expect("native");
    registry.register(Arc::new(PluginStepType::new(Arc::new(c)))).expect("C");
    if with_js {
        registry.register(Arc::new(PluginStepType::new(Arc::new(js)))).expect("JS");
    }
    let with_py = py.is_some();
    if let Some(py) = py {
        registry.register(Arc::new(PluginStepType::new(Arc::new(py)))).expect("Python");
    }
    let client = HttpClient::new(HttpPolicy::default()).expect("client");
    let engine = Engine {
        registry: Arc::new(registry),
        outbound: Outbound::new(client, None),
        secrets: Arc::new(NoSecrets),
        limits: RunLimits::default(),
    };
    let flows = [
        flow(&engine.registry, "native.name-parts"),
        flow(&engine.registry, "text.name-parts"),
        flow(&engine.registry, if with_js { "js.name-parts" } else { "native.name-parts" }),
        flow(&engine.registry, if with_py { "py.name-parts" } else { "native.name-parts" }),
    ];
    // ~1 KB in (the rendered configuration) and ~1 KB out (the last name).
    let name = format!("ada {}", "lovelace-byron ".repeat(68).trim_end());
    let mut vars = Map::new();
    vars.insert("full_name".into(), Value::String(name.clone()));
    let config_json = json!({"name": name, "first_as": "first", "last_as": "last"}).to_string();
    println!("payload: {} bytes of configuration in", config_json.len());

    let mut samples: [Vec<Duration>; 5] = Default::default();
    for _ in 0..rounds {
        // serde_json round-trip of the same payload.
        for _ in 0..per_round {
            let t = Instant::now();
            let v: Value = serde_json::from_str(&config_json).expect("json");
            let (first, last, _) = split(v["name"].as_str().unwrap_or(""));
            let out = json!({"first": first, "last": last}).to_string();
            std::hint::black_box(out);
            samples[0].push(t.elapsed());
        }
        for (i, f) in flows.iter().enumerate() {
            if only.as_deref().is_some_and(|o| o != ["native", "c", "js", "py"][i]) || (i == 3 && !with_py) {
                continue;
            }
            rt.block_on(async {
                for _ in 0..per_round {
                    let t = Instant::now();
                    let r = engine.start(f, common::input(), vars.clone(), None).await;
                    samples[i + 1].push(t.elapsed());
                    assert_eq!(r.status, RunStatus::Completed, "{:?}", r.error);
                    // Every variant keeps the name as written, like the C example.
                    assert_eq!(r.variables.get("first"), Some(&json!("ada")));
                }
            });
        }
    }
    println!("per call (median / p99, µs), {} calls each, interleaved in {rounds} rounds:", rounds * per_round);
    for (label, s) in [
        "serde_json round-trip",
        "native step (engine)",
        "C plugin (engine)",
        "JavaScript plugin (engine)",
        "Python plugin (engine)",
    ]
    .iter()
    .zip(samples)
    {
        if s.is_empty() {
            continue;
        }
        let (p50, p99) = median_us(s);
        println!("  {label:<28} {p50:>9.2} {p99:>9.2}");
    }
}
