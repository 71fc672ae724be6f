//! Step types that exist only for the engine's own tests, so that the compiler, the executor
//! and the conversation service are tested without the built-in steps (tern-steps depends on
//! the engine, not the other way round). Each does one thing a real step does:
//!
//! - `say` `{"text": TEMPLATE}`: replies;
//! - `ask` `{"text": TEMPLATE, "save_as": VAR}`: replies, pauses, and saves the next message;
//! - `set` `{"variables": {VAR: JSON TEMPLATE}}`: sets variables;
//! - `jump_if` `{"var": VAR, "at_least": NUMBER, "then": TARGET}`: jumps when the variable is
//!   a number at least that big (a loop can leave through it);
//! - `fail` `{"code": CODE}`: fails with that code (`failed` by default).
#![allow(dead_code)] // each test binary uses part of it

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};
use tern_engine::http::{HttpClient, HttpPolicy, Outbound};
use tern_engine::secrets::NoSecrets;
use tern_engine::template::{JsonTemplate, Template};
use tern_engine::{
    Behavior, BuildContext, CompiledFlow, Diagnostic, Engine, Jump, LoadOptions, Message, Outcome, Registry, RunInput,
    RunLimits, Step, StepContext, StepFailure, StepType, Target, VarName, load_flow, schema::schema_of,
};

/// A registry with the test step types only.
pub fn registry() -> Registry {
    let mut registry = Registry::new();
    let types: [Arc<dyn StepType>; 5] = [Arc::new(Say), Arc::new(Ask), Arc::new(Set), Arc::new(JumpIf), Arc::new(Fail)];
    for t in types {
        registry.register(t).expect("distinct names");
    }
    registry
}

/// An engine with the test steps, no network access and no secrets.
pub fn engine(limits: RunLimits) -> Engine {
    Engine {
        registry: Arc::new(registry()),
        outbound: Outbound { client: HttpClient::new(HttpPolicy::default()).expect("client"), tokens: None },
        secrets: Arc::new(NoSecrets),
        limits,
    }
}

/// Compiles a flow document against the test steps.
pub fn compile(flow: &Value) -> Result<CompiledFlow, Vec<Diagnostic>> {
    compile_source(&flow.to_string())
}

/// Compiles flow source text against the test steps.
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
        journal: None,
        conversation_id: "c-1".into(),
        contact: json!({"id": "u-1"}),
        message: Message { text: text.into(), ..Default::default() },
        event: None,
    }
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct SayConfig {
    text: String,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct AskConfig {
    text: String,
    save_as: VarName,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct SetConfig {
    variables: BTreeMap<VarName, Value>,
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

struct Say;

impl StepType for Say {
    fn name(&self) -> &str {
        "say"
    }
    fn description(&self) -> &str {
        "Replies with a text (test step)"
    }
    fn config_schema(&self) -> Value {
        schema_of::<SayConfig>()
    }
    fn build(&self, config: &Value, cx: &mut BuildContext<'_>) -> Option<Box<dyn Step>> {
        let cfg: SayConfig = cx.config(config)?;
        Some(Box::new(SayStep { text: cx.template("/text", &cfg.text)? }))
    }
}

#[derive(Debug)]
struct SayStep {
    text: Template,
}

#[async_trait]
impl Step for SayStep {
    async fn run(&self, cx: &mut StepContext<'_>) -> Result<Outcome, StepFailure> {
        let text = self.text.render(&cx.scope())?;
        cx.reply(text);
        Ok(Outcome::Next)
    }
}

struct Ask;

impl StepType for Ask {
    fn name(&self) -> &str {
        "ask"
    }
    fn description(&self) -> &str {
        "Asks, pauses and saves the answer (test step)"
    }
    fn config_schema(&self) -> Value {
        schema_of::<AskConfig>()
    }
    fn build(&self, config: &Value, cx: &mut BuildContext<'_>) -> Option<Box<dyn Step>> {
        let cfg: AskConfig = cx.config(config)?;
        cx.defines("/save_as", &cfg.save_as);
        Some(Box::new(AskStep { text: cx.template("/text", &cfg.text)?, save_as: cfg.save_as }))
    }
}

#[derive(Debug)]
struct AskStep {
    text: Template,
    save_as: VarName,
}

#[async_trait]
impl Step for AskStep {
    async fn run(&self, cx: &mut StepContext<'_>) -> Result<Outcome, StepFailure> {
        let text = self.text.render(&cx.scope())?;
        cx.reply(text);
        Ok(Outcome::Pause(Value::Null))
    }

    async fn resume(&self, cx: &mut StepContext<'_>, _: Value) -> Result<Outcome, StepFailure> {
        let answer = cx.message_text().trim().to_string();
        cx.set_var(&self.save_as, Value::String(answer));
        Ok(Outcome::Next)
    }

    fn behavior(&self) -> Behavior {
        Behavior { pauses: true, terminal: false }
    }
}

struct Set;

impl StepType for Set {
    fn name(&self) -> &str {
        "set"
    }
    fn description(&self) -> &str {
        "Sets variables (test step)"
    }
    fn config_schema(&self) -> Value {
        schema_of::<SetConfig>()
    }
    fn build(&self, config: &Value, cx: &mut BuildContext<'_>) -> Option<Box<dyn Step>> {
        let cfg: SetConfig = cx.config(config)?;
        let mut vars = BTreeMap::new();
        for (var, value) in cfg.variables {
            let rel = format!("/variables/{var}");
            cx.defines(&rel, &var);
            let template = cx.json_template(&rel, &value)?;
            vars.insert(var, template);
        }
        Some(Box::new(SetStep { vars }))
    }
}

#[derive(Debug)]
struct SetStep {
    vars: BTreeMap<VarName, JsonTemplate>,
}

#[async_trait]
impl Step for SetStep {
    async fn run(&self, cx: &mut StepContext<'_>) -> Result<Outcome, StepFailure> {
        let values: Vec<(VarName, Value)> = self
            .vars
            .iter()
            .map(|(n, t)| Ok((n.clone(), t.render(&cx.scope())?)))
            .collect::<Result<_, StepFailure>>()?;
        for (name, value) in values {
            cx.set_var(&name, value);
        }
        Ok(Outcome::Next)
    }
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
