//! Plugin step types in the engine's registry, and one execution of a plugin step: a fresh
//! store and instance, the memory cap, fuel and an epoch deadline, the output cap, and every
//! failure turned into a step error that names the plugin.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Map, Value, json};
use tern_engine::step::{BuildContext, Jump, Outcome, Step, StepContext, StepFailure, StepType};
use tern_engine::template::JsonTemplate;
use tern_engine::{IntegrationName, Target, VarName};
use wasmtime::{Store, StoreLimitsBuilder};

use crate::bindings::tern::step::host::{Invocation, StepError};
use crate::fixture::Replay;
use crate::host::{Calls, HostState};
use crate::limits::TICK;
use crate::plugin::Plugin;
use crate::runtime::Runtime;

/// A plugin as a step type.
#[derive(Clone, Debug)]
pub struct PluginStepType {
    plugin: Arc<Plugin>,
    schema: Value,
    replay: Option<Arc<Replay>>,
}

impl PluginStepType {
    /// Wraps a loaded plugin.
    pub fn new(plugin: Arc<Plugin>) -> Self {
        let mut schema = plugin.info.config_schema.clone();
        if let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) {
            props.insert(
                "outcomes".into(),
                json!({"type": "object", "additionalProperties": {"type": "string"},
                       "description": "Where to go for each outcome label the plugin returns (step id or `end`)."}),
            );
            props.insert(
                "timeout_ms".into(),
                json!({"type": "integer", "minimum": 1,
                       "description": "Longest time the plugin may run, in milliseconds (capped by Tern's limit and the run's deadline)."}),
            );
        }
        Self { plugin, schema, replay: None }
    }

    /// The same step type answering every `http-fetch` from a test fixture's recording
    /// (`tern plugins test`) instead of the network.
    #[must_use]
    pub fn with_replay(mut self, replay: Arc<Replay>) -> Self {
        self.replay = Some(replay);
        self
    }

    /// The plugin.
    pub fn plugin(&self) -> &Arc<Plugin> {
        &self.plugin
    }

    /// The step's fields, said in a hint: each field its schema lists, the required ones marked.
    fn fields_hint(&self) -> String {
        let schema = &self.plugin.info.config_schema;
        let required: Vec<&str> =
            schema.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
        let fields: Vec<String> = schema
            .get("properties")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(|(k, _)| if required.contains(&k.as_str()) { format!("{k} (required)") } else { k.clone() })
            .collect();
        if fields.is_empty() {
            format!("`tern schema` has the `{}` step's schema", self.plugin.info.name)
        } else {
            format!("the `{}` step's fields: {}", self.plugin.info.name, fields.join(", "))
        }
    }

    /// A field the config schema does not declare is a typo, unless the schema says what other
    /// fields may be (`additionalProperties`): then its own rule decides. So a plugin author
    /// who lists the step's `properties` gets typos caught, as for built-in steps, without
    /// writing `"additionalProperties": false`. Reports each unknown field with the nearest
    /// declared one; `false` when there was any.
    fn known_fields_only(&self, config: &Value, cx: &mut BuildContext<'_>) -> bool {
        let schema = &self.plugin.info.config_schema;
        let (Some(declared), None) =
            (schema.get("properties").and_then(Value::as_object), schema.get("additionalProperties"))
        else {
            return true;
        };
        let Some(fields) = config.as_object() else { return true };
        let mut ok = true;
        for key in fields.keys().filter(|k| !declared.contains_key(k.as_str())) {
            let names: Vec<&str> = declared.keys().map(String::as_str).collect();
            let hint = match tern_engine::diagnostics::nearest(key, names.iter().copied()) {
                Some(n) => {
                    format!("did you mean `{n}`? The `{}` step's fields: {}", self.plugin.info.name, names.join(", "))
                }
                None => format!("the `{}` step's fields: {}", self.plugin.info.name, names.join(", ")),
            };
            let pointer = format!("/{}", key.replace('~', "~0").replace('/', "~1"));
            cx.error("unknown-field", &pointer, format!("unknown field `{key}`"), Some(hint));
            ok = false;
        }
        ok
    }
}

impl StepType for PluginStepType {
    fn name(&self) -> &str {
        &self.plugin.info.name
    }

    fn description(&self) -> &str {
        &self.plugin.info.description
    }

    fn config_schema(&self) -> Value {
        self.schema.clone()
    }

    fn build(&self, config: &Value, cx: &mut BuildContext<'_>) -> Option<Box<dyn Step>> {
        let mut config = config.clone();
        let mut outcomes = BTreeMap::new();
        let mut ok = true;
        let timeout = match config.as_object_mut().and_then(|m| m.remove("timeout_ms")) {
            None => None,
            Some(v) => match v.as_u64().filter(|ms| *ms > 0) {
                Some(ms) => Some(Duration::from_millis(ms)),
                None => {
                    cx.error("bad-timeout", "/timeout_ms", "`timeout_ms` must be a positive integer", None);
                    ok = false;
                    None
                }
            },
        };
        match config.as_object_mut().and_then(|m| m.remove("outcomes")) {
            None => {}
            Some(Value::Object(o)) => {
                for (label, target) in o {
                    let rel = format!("/outcomes/{}", label.replace('~', "~0").replace('/', "~1"));
                    match serde_json::from_value::<Target>(target) {
                        Ok(t) => match cx.target(&rel, &t) {
                            Some(j) => {
                                outcomes.insert(label, j);
                            }
                            None => ok = false,
                        },
                        Err(e) => {
                            cx.error("bad-target", &rel, e.to_string(), Some("a step id or `end`".into()));
                            ok = false;
                        }
                    }
                }
            }
            Some(_) => {
                cx.error("bad-outcomes", "/outcomes", "`outcomes` must be an object of label → step id", None);
                ok = false;
            }
        }
        ok &= self.known_fields_only(&config, cx);
        for error in self.plugin.validator.iter_errors(&config) {
            let pointer = error.instance_path().to_string();
            cx.error("plugin-config", &pointer, format!("{error}"), Some(self.fields_hint()));
            ok = false;
        }
        let integrations = integrations_named(&config, cx, &mut ok);
        let declared = declared_variables(&self.plugin, &config, cx);
        let template = cx.json_template("", &config)?;
        if !ok {
            return None;
        }
        Some(Box::new(PluginStep {
            plugin: self.plugin.clone(),
            name: Arc::from(self.plugin.info.name.as_str()),
            template,
            outcomes,
            integrations: Arc::new(integrations),
            declared,
            timeout,
            replay: self.replay.clone(),
        }))
    }
}

/// `integration` (string) and `integrations` (array) in the config: the integrations the
/// plugin may use.
fn integrations_named(config: &Value, cx: &mut BuildContext<'_>, ok: &mut bool) -> BTreeSet<IntegrationName> {
    let mut out = BTreeSet::new();
    let mut add = |rel: String, v: &Value, cx: &mut BuildContext<'_>| match v.as_str().map(IntegrationName::new) {
        Some(Ok(name)) => {
            cx.integration(&rel, &name);
            out.insert(name);
        }
        Some(Err(e)) => {
            cx.error("bad-integration", &rel, e.to_string(), None);
            *ok = false;
        }
        None => {}
    };
    if let Some(v) = config.get("integration") {
        add("/integration".into(), v, cx);
    }
    if let Some(list) = config.get("integrations").and_then(Value::as_array) {
        for (i, v) in list.iter().enumerate() {
            add(format!("/integrations/{i}"), v, cx);
        }
    }
    out
}

/// The variables a plugin step may set: the output schema's properties, and the values of
/// config fields named `save_as` or `*_as` (variable names chosen by the flow). A `*_as` field
/// the flow leaves out declares the `default` its property has in the plugin's config schema,
/// the name the plugin falls back to.
fn declared_variables(plugin: &Plugin, config: &Value, cx: &mut BuildContext<'_>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    if let Some(props) = plugin.info.output_schema.as_ref().and_then(|s| s.get("properties")).and_then(Value::as_object)
    {
        for name in props.keys() {
            if let Ok(var) = VarName::new(name.as_str()) {
                cx.defines("", &var);
                out.insert(name.clone());
            }
        }
    }
    let names_a_variable = |key: &str| key == "save_as" || key.ends_with("_as");
    let chosen = config.as_object().into_iter().flatten().filter(|(key, _)| names_a_variable(key));
    for (key, value) in chosen {
        let Some(text) = value.as_str() else { continue };
        match VarName::new(text) {
            Ok(var) => {
                cx.defines(&format!("/{key}"), &var);
                out.insert(text.to_string());
            }
            Err(e) => cx.error("bad-variable", &format!("/{key}"), e.to_string(), None),
        }
    }
    let schema_props = plugin.info.config_schema.get("properties").and_then(Value::as_object);
    let defaults =
        schema_props.into_iter().flatten().filter(|(key, _)| names_a_variable(key) && config.get(key).is_none());
    for (_, property) in defaults {
        if let Some(var) = property.get("default").and_then(Value::as_str).and_then(|d| VarName::new(d).ok()) {
            cx.defines("", &var);
            out.insert(var.as_str().to_string());
        }
    }
    out
}

/// A plugin step in a flow.
#[derive(Debug)]
pub struct PluginStep {
    plugin: Arc<Plugin>,
    name: Arc<str>,
    template: JsonTemplate,
    outcomes: BTreeMap<String, Jump>,
    integrations: Arc<BTreeSet<IntegrationName>>,
    declared: BTreeSet<String>,
    timeout: Option<Duration>,
    replay: Option<Arc<Replay>>,
}

fn failure(code: &'static str, message: String) -> StepFailure {
    StepFailure::Other { code, message }
}

impl PluginStep {
    fn fail(&self, code: &'static str, what: impl std::fmt::Display) -> StepFailure {
        failure(code, format!("plugin `{}`: {what}", self.name))
    }
}

/// A store with the runtime's limits: memory cap, fuel, and an epoch deadline `time` from now.
pub(crate) fn new_store(runtime: &Runtime, mut state: HostState, time: Duration) -> Store<HostState> {
    state.limits = StoreLimitsBuilder::new()
        .memory_size(runtime.limits.memory_bytes)
        .instances(64)
        .tables(64)
        .memories(4)
        .trap_on_grow_failure(true)
        .build();
    let mut store = Store::new(&runtime.engine, state);
    store.limiter(|s| s);
    let _ = store.set_fuel(runtime.limits.fuel);
    let ticks = time.as_micros().div_ceil(TICK.as_micros()).saturating_add(1);
    store.set_epoch_deadline(u64::try_from(ticks).unwrap_or(u64::MAX));
    store.epoch_deadline_trap();
    store
}

/// A trap, in words: deadline, fuel, memory, or the guest's own trap.
pub(crate) fn explain_trap(e: &wasmtime::Error, runtime: &Runtime, time: Duration) -> String {
    match e.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => format!("did not finish within its {} ms", time.as_millis()),
        Some(wasmtime::Trap::OutOfFuel) => {
            format!("ran out of fuel ({} instructions); it probably loops forever", runtime.limits.fuel)
        }
        // The guest aborted: say what usually makes it, since the guest said nothing.
        Some(wasmtime::Trap::UnreachableCodeReached) => format!(
            "trapped: {}; the plugin aborted without an error value: in JavaScript, an exception thrown outside the helper library's `step()` (plugins/sdk/js/tern-step.js turns them into step errors with their words) or an export the world names (`describe`, `run`) missing or misspelled; in Python, a call that needs WASI (open(), os.environ, time, random), which plugins do not get; in C, a call to abort()",
            wasmtime::Trap::UnreachableCodeReached
        ),
        Some(trap) => format!("trapped: {trap}"),
        None => {
            let text = format!("{e:#}");
            if text.contains("memory") && text.contains("limit") || text.contains("forcing trap when growing memory") {
                format!("needed more than {} MiB of memory", runtime.limits.memory_bytes >> 20)
            } else {
                format!("failed: {text}")
            }
        }
    }
}

fn trap_code(e: &wasmtime::Error) -> &'static str {
    match e.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) | Some(wasmtime::Trap::OutOfFuel) => "plugin-timeout",
        Some(_) => "plugin-trap",
        None => {
            let text = format!("{e:#}");
            if text.contains("forcing trap when growing memory") || text.contains("memory") && text.contains("limit") {
                "plugin-memory"
            } else {
                "plugin-trap"
            }
        }
    }
}

#[async_trait]
impl Step for PluginStep {
    async fn run(&self, cx: &mut StepContext<'_>) -> Result<Outcome, StepFailure> {
        let runtime = &self.plugin.runtime;
        let config = self.template.render(&cx.scope())?;
        let config_json = serde_json::to_string(&config).map_err(|e| self.fail("plugin-input", e))?;
        let variables_json = serde_json::to_string(cx.vars()).map_err(|e| self.fail("plugin-input", e))?;
        let mut time = cx.time_left().min(runtime.limits.max_duration);
        if let Some(t) = self.timeout {
            time = time.min(t);
        }
        let deadline = tokio::time::Instant::now() + time;
        let state = HostState {
            limits: StoreLimitsBuilder::new().build(),
            plugin: self.name.clone(),
            step: cx.step_id().to_string(),
            calls: match &self.replay {
                Some(replay) => Calls::Replay(replay.clone()),
                None => Calls::Journal(cx.call_journal()),
            },
            contact: cx.contact_id().map(std::borrow::Cow::into_owned),
            integrations: self.integrations.clone(),
            allowed_origins: self.plugin.allowed_origins.clone(),
            http_calls_left: runtime.limits.http_calls,
            deadline,
            fetches: Vec::new(),
            masker: cx.masker().clone(),
        };
        let mut store = new_store(runtime, state, time);
        let invocation = Invocation {
            flow_id: cx.flow_id().to_string(),
            step_id: cx.step_id().to_string(),
            run_id: cx.run_id().to_string(),
            conversation_id: cx.conversation_id().to_string(),
            message_text: cx.message_text().to_string(),
            deadline_ms: u64::try_from(time.as_millis()).unwrap_or(u64::MAX),
        };
        let result = async {
            let instance = self.plugin.pre.instantiate_async(&mut store).await?;
            instance.call_run(&mut store, &invocation, &config_json, &variables_json).await
        }
        .await;
        let fetches = std::mem::take(&mut store.data_mut().fetches);
        if !fetches.is_empty() {
            cx.record("requests", Value::Array(fetches));
        }
        if let Ok(fuel) = store.get_fuel() {
            cx.record("fuel", Value::from(runtime.limits.fuel.saturating_sub(fuel)));
        }
        drop(store);
        let output = match result {
            Err(e) => return Err(self.fail(trap_code(&e), explain_trap(&e, runtime, time))),
            Ok(Err(StepError::InvalidConfig(m))) => return Err(self.fail("plugin-invalid-config", m)),
            Ok(Err(StepError::Retryable(m))) => return Err(self.fail("plugin-retryable", m)),
            Ok(Err(StepError::Fatal(m))) => return Err(self.fail("plugin-fatal", m)),
            Ok(Ok(output)) => output,
        };
        let size = output.variables_json.len() + output.outcome.as_ref().map_or(0, String::len);
        if size > runtime.limits.output_bytes {
            return Err(self.fail(
                "plugin-output",
                format!("returned {size} bytes of output; the limit is {} bytes", runtime.limits.output_bytes),
            ));
        }
        let variables: Map<String, Value> = tern_engine::json::from_str(&output.variables_json)
            .map_err(|e| self.fail("plugin-output", format!("variables-json is not a JSON object: {e}")))?;
        for name in variables.keys() {
            if !self.declared.contains(name) {
                return Err(self.fail(
                    "plugin-output",
                    format!(
                        "set variable `{name}`, which the step does not declare (declared: {}); variables come from the plugin's output schema or the step's `*_as` fields",
                        if self.declared.is_empty() { "none".to_string() } else { self.declared.iter().cloned().collect::<Vec<_>>().join(", ") }
                    ),
                ));
            }
        }
        for (name, value) in variables {
            if let Ok(var) = VarName::new(name.as_str()) {
                cx.set_var(&var, value);
            }
        }
        if let Some(label) = &output.outcome {
            cx.record("outcome", Value::from(label.as_str()));
            if let Some(jump) = self.outcomes.get(label) {
                return Ok(Outcome::Goto(*jump));
            }
        }
        Ok(Outcome::Next)
    }
}
