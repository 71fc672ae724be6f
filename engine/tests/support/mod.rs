//! The engine's own tests run flows of the built-in steps (`tern-steps` is a dev-dependency:
//! it depends on the engine, and integration tests link the one engine both use) and of two
//! step types that exist only here, for what no built-in step does:
//!
//! - `jump_if` `{"var": VAR, "at_least": NUMBER, "then": TARGET}`: jumps when the variable is
//!   a number at least that big (a loop can leave through it);
//! - `fail` `{"code": CODE}`: fails with that code (`failed` by default).
#![allow(dead_code)] // each test binary uses part of it

use std::sync::Arc;

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};
use tern_engine::http::{HttpClient, HttpPolicy, Outbound};
use tern_engine::secrets::NoSecrets;
use tern_engine::{
    BuildContext, CompiledFlow, Diagnostic, Engine, Jump, LoadOptions, Message, Outcome, Registry, RunInput, RunLimits,
    Step, StepContext, StepFailure, StepType, Target, VarName, load_flow, schema::schema_of,
};

/// The built-in steps and the test step types.
pub fn registry() -> Registry {
    let mut registry = tern_steps::registry();
    let types: [Arc<dyn StepType>; 2] = [Arc::new(JumpIf), Arc::new(Fail)];
    for t in types {
        registry.register(t).expect("distinct names");
    }
    registry
}

/// An engine with the built-in and test steps, no network access and no secrets.
pub fn engine(limits: RunLimits) -> Engine {
    Engine {
        registry: Arc::new(registry()),
        outbound: Outbound::new(HttpClient::new(HttpPolicy::default()).expect("client"), None),
        secrets: Arc::new(NoSecrets),
        limits,
    }
}

/// Compiles a flow document against the built-in and test steps.
pub fn compile(flow: &Value) -> Result<CompiledFlow, Vec<Diagnostic>> {
    compile_source(&flow.to_string())
}

/// Compiles flow source text against the built-in and test steps.
pub fn compile_source(source: &str) -> Result<CompiledFlow, Vec<Diagnostic>> {
    let registry = registry();
    let opts = LoadOptions::new(&registry);
    load_flow(source, &opts)
}

/// A flow that must compile.
pub fn compiled(flow: &Value) -> CompiledFlow {
    compile(flow).unwrap_or_else(|d| panic!("the flow should compile: {d:#?}"))
}

/// `{"version": 1, "id": "t", "steps": steps}`.
pub fn flow(steps: Value) -> Value {
    json!({"version": 1, "id": "t", "steps": steps})
}

/// A message `text` in conversation `c-1` from contact `u-1`.
pub fn input(text: &str) -> RunInput {
    RunInput {
        now_ms: None,
        woken: None,
        journal: None,
        conversation_id: "c-1".into(),
        contact: json!({"id": "u-1"}),
        message: Message { text: text.into(), ..Default::default() },
        event: None,
        flows: None,
    }
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct JumpIfConfig {
    var: VarName,
    at_least: f64,
    then: Target,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct FailConfig {
    #[serde(default)]
    code: Option<String>,
}

struct JumpIf;

impl StepType for JumpIf {
    fn name(&self) -> &str {
        "jump_if"
    }
    fn description(&self) -> &str {
        "Jumps when a variable is at least a number (test step)"
    }
    fn config_schema(&self) -> Value {
        schema_of::<JumpIfConfig>()
    }
    fn build(&self, config: &Value, cx: &mut BuildContext<'_>) -> Option<Box<dyn Step>> {
        let cfg: JumpIfConfig = cx.config(config)?;
        let reference = tern_engine::template::VarRef::parse_placeholder(cfg.var.as_str()).ok()?;
        cx.use_var("/var", &reference);
        let jump = cx.labeled_target("/then", &cfg.then, format!("{} at least {}", cfg.var, cfg.at_least))?;
        Some(Box::new(JumpIfStep { var: cfg.var, at_least: cfg.at_least, jump }))
    }
}

#[derive(Debug)]
struct JumpIfStep {
    var: VarName,
    at_least: f64,
    jump: Jump,
}

#[async_trait]
impl Step for JumpIfStep {
    async fn run(&self, cx: &mut StepContext<'_>) -> Result<Outcome, StepFailure> {
        let n = cx.var(&self.var).and_then(Value::as_f64);
        Ok(if n.is_some_and(|n| n >= self.at_least) { Outcome::Goto(self.jump) } else { Outcome::Next })
    }
}

struct Fail;

impl StepType for Fail {
    fn name(&self) -> &str {
        "fail"
    }
    fn description(&self) -> &str {
        "Always fails (test step)"
    }
    fn config_schema(&self) -> Value {
        schema_of::<FailConfig>()
    }
    fn build(&self, config: &Value, cx: &mut BuildContext<'_>) -> Option<Box<dyn Step>> {
        let cfg: FailConfig = cx.config(config)?;
        // A code is `&'static str`; test flows name a handful.
        let code: &'static str = cfg.code.map_or("failed", |c| Box::leak(c.into_boxed_str()));
        Some(Box::new(FailStep { code }))
    }
}

#[derive(Debug)]
struct FailStep {
    code: &'static str,
}

#[async_trait]
impl Step for FailStep {
    async fn run(&self, _: &mut StepContext<'_>) -> Result<Outcome, StepFailure> {
        Err(StepFailure::Other { code: self.code, message: format!("the test step failed ({})", self.code) })
    }
}
