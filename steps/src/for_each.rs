//! `for_each`: run a body of steps once per item of a list.
//!
//! The body is ordinary steps of the flow: it starts at `body`, and a pass ends when the run
//! comes back to the `for_each` step (the body's last step has `"next": "<the for_each id>"`).
//! The compiler finds the body's steps (every step on a way from `body` back to the loop) and
//! refuses a body that never comes back, and a loop whose way out (its `next`, or the step
//! after it) leads back into its body. Each pass sets `item_as` (and `index_as`); `collect.as`
//! holds one value per pass so far (`[]` before the first), so a body that leaves the loop
//! early keeps what was collected; after the last pass the step continues with its `next`.
//!
//! Where it is in the list is the step's kept state ([`StepContext::take_state`], `set_state`), which a
//! paused run keeps: a body may `ask` once per item, and the loop goes on after a restart,
//! on another instance, with the same list (taken once, when the loop starts).
//!
//! Bounds: at most `max_items` items (default [`DEFAULT_MAX_ITEMS`], at most
//! [`MAX_ITEMS`]); a longer list fails the step (say `max_items`, or narrow the list with a
//! JSONPath filter) rather than silently dropping items. Every pass counts its body's steps and
//! one for the loop against the run's step budget (1000 steps): a one-step body fits 499 items.
//!
//! A failing body step without its own `on_error`: `on_item_error` says what happens:
//! `stop` (default) fails the loop like any step (its `on_error`, the flow's, or the run
//! fails); `skip` goes on with the next item; `collect` goes on and appends
//! `{index, item, step, code, message}` to `errors_as`.

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};
use tern_engine::dot_path::describe;
use tern_engine::template::JsonTemplate;
use tern_engine::{
    Behavior, BuildContext, Jump, Outcome, Repeat, Step, StepContext, StepFailure, StepType, Target, VarName,
    schema::schema_of,
};

/// Items a loop takes when `max_items` is not given.
pub const DEFAULT_MAX_ITEMS: u32 = 100;
/// The most `max_items` may be.
pub const MAX_ITEMS: u32 = 1000;

/// Config of `for_each`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The list: usually one placeholder (`"{{contacts}}"`, which keeps the variable's JSON
    /// type), or a literal array whose strings are templates.
    items: Value,
    /// The variable holding the current item during a pass.
    item_as: VarName,
    /// The variable holding the current item's position (0, 1, …).
    #[serde(default)]
    index_as: Option<VarName>,
    /// The first step of each pass. The body's last step goes back to this step (`"next"`).
    body: Target,
    /// The most items the list may have (default 100, at most 1000).
    #[serde(default)]
    max_items: Option<u32>,
    /// What to keep from each pass: `value` (a template, rendered when the pass ends) is
    /// appended to the list `as`, set when the loop ends.
    #[serde(default)]
    collect: Option<CollectConfig>,
    /// When a body step without its own `on_error` fails: `stop` (default), `skip` the item, or
    /// `collect` the error into `errors_as` and go on.
    #[serde(default)]
    on_item_error: ItemErrorPolicy,
    /// With `on_item_error: collect`: the variable that receives the list of failures.
    #[serde(default)]
    errors_as: Option<VarName>,
}

/// `collect` of `for_each`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct CollectConfig {
    /// The variable that receives the list.
    #[serde(rename = "as")]
    into: VarName,
    /// The value kept from each pass (`"{{contact_name}}"`, or an object of templates).
    value: Value,
}

/// What a failing body step does to the loop.
#[derive(Clone, Copy, Debug, Default, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum ItemErrorPolicy {
    /// The loop fails like any step.
    #[default]
    Stop,
    /// The item is skipped.
    Skip,
    /// The failure is appended to `errors_as` and the loop goes on.
    Collect,
}

pub struct ForEach;

impl StepType for ForEach {
    fn name(&self) -> &str {
        "for_each"
    }
    fn description(&self) -> &str {
        "Run a body of steps once per item of a list (item_as, index_as, collect, max_items, on_item_error)"
    }
    fn config_schema(&self) -> Value {
        schema_of::<Config>()
    }
    fn build(&self, config: &Value, cx: &mut BuildContext<'_>) -> Option<Box<dyn Step>> {
        let cfg: Config = cx.config(config)?;
        let mut ok = true;
        cx.defines("/item_as", &cfg.item_as);
        if let Some(v) = &cfg.index_as {
            cx.defines("/index_as", v);
            if *v == cfg.item_as {
                cx.error(
                    "invalid-value",
                    "/index_as",
                    format!("`index_as` and `item_as` are both `{v}`: the position would replace the item"),
                    Some("give the position its own variable, such as \"index_as\": \"n\"".into()),
                );
                ok = false;
            }
        }
        let items = cx.json_template("/items", &cfg.items);
        let one_placeholder = matches!(&items, Some(JsonTemplate::Text(t)) if t.is_single_placeholder());
        if !(cfg.items.is_array() || one_placeholder) && items.is_some() {
            cx.error(
                "invalid-value",
                "/items",
                format!(
                    "`items` must be a list, or one placeholder alone such as \"{{{{contacts}}}}\", but {}",
                    describe(&cfg.items)
                ),
                Some("write \"items\": \"{{contacts}}\" for the list in the variable `contacts`".into()),
            );
            ok = false;
        }
        let max_items = cx.bound("/max_items", cfg.max_items, DEFAULT_MAX_ITEMS, MAX_ITEMS);
        ok &= max_items.is_some();
        let collect = match &cfg.collect {
            Some(c) => {
                cx.defines("/collect/as", &c.into);
                let value = cx.json_template("/collect/value", &c.value);
                ok &= value.is_some();
                value.map(|v| (c.into.clone(), v))
            }
            None => None,
        };
        match (cfg.on_item_error, &cfg.errors_as) {
            (ItemErrorPolicy::Collect, Some(v)) => cx.defines("/errors_as", v),
            (ItemErrorPolicy::Collect, None) => {
                cx.error(
                    "missing-field",
                    "/errors_as",
                    "`on_item_error: collect` needs `errors_as`, the variable that receives the failures",
                    Some("add \"errors_as\": \"failed_items\"".into()),
                );
                ok = false;
            }
            (_, Some(_)) => {
                cx.error(
                    "invalid-value",
                    "/errors_as",
                    "`errors_as` is only used with `on_item_error: collect`",
                    Some("add \"on_item_error\": \"collect\", or remove `errors_as`".into()),
                );
                ok = false;
            }
            (_, None) => {}
        }
        let body = match &cfg.body {
            Target::End => {
                cx.error("invalid-value", "/body", "the body cannot be `end`; name the first step of each pass", None);
                None
            }
            Target::Step(id) if id == cx.step_id() => {
                cx.error(
                    "invalid-value",
                    "/body",
                    "the body cannot be the `for_each` step itself; name the first step of each pass",
                    None,
                );
                None
            }
            target => match cx.labeled_target("/body", target, "each item") {
                Some(Jump::Step(i)) => Some(i),
                _ => None,
            },
        };
        let (Some(items), Some(body), Some(max_items), true) = (items, body, max_items, ok) else { return None };
        Some(Box::new(Loop {
            items,
            item_as: cfg.item_as,
            index_as: cfg.index_as,
            body,
            max_items,
            collect,
            policy: cfg.on_item_error,
            errors_as: cfg.errors_as,
        }))
    }
}

#[derive(Debug)]
struct Loop {
    items: JsonTemplate,
    item_as: VarName,
    index_as: Option<VarName>,
    body: usize,
    max_items: u32,
    collect: Option<(VarName, JsonTemplate)>,
    policy: ItemErrorPolicy,
    errors_as: Option<VarName>,
}

/// Where a loop is: its list (taken once), the next position, what was collected so far. Kept
/// as the step's state between passes and moved in and out of it, so the list is never copied
/// per pass.
#[derive(Debug, Default, Deserialize)]
struct Progress {
    items: Vec<Value>,
    index: usize,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    collected: Vec<Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    errors: Vec<Value>,
}

impl Progress {
    /// Reads the kept state (moved: `serde_json::from_value` takes the values it holds).
    fn from_state(state: Value) -> Result<Self, StepFailure> {
        serde_json::from_value(state)
            .map_err(|e| fail("loop-state", format!("the loop's saved place cannot be read ({e})")))
    }

    /// The state to keep (moved: the list and values go into it).
    fn into_state(self) -> Value {
        let mut state = serde_json::Map::new();
        state.insert("items".into(), Value::Array(self.items));
        state.insert("index".into(), json!(self.index));
        if !self.collected.is_empty() {
            state.insert("collected".into(), Value::Array(self.collected));
        }
        if !self.errors.is_empty() {
            state.insert("errors".into(), Value::Array(self.errors));
        }
        Value::Object(state)
    }
}

fn fail(code: &'static str, message: String) -> StepFailure {
    StepFailure::Other { code, message }
}

impl Loop {
    /// Takes the list when the loop starts.
    fn start(&self, cx: &mut StepContext<'_>) -> Result<Progress, StepFailure> {
        let items = match self.items.render(&cx.scope())? {
            Value::Array(items) => items,
            other => {
                return Err(fail(
                    "not-a-list",
                    format!(
                        "`items` must be a list, but {}; give a variable that holds a list (a mapping with a JSONPath such as `$.results[*]` makes one)",
                        describe(&other)
                    ),
                ));
            }
        };
        if items.len() > self.max_items as usize {
            return Err(fail(
                "too-many-items",
                format!(
                    "the list has {} items and `max_items` is {}; raise `max_items` (at most {MAX_ITEMS}) or narrow the list",
                    items.len(),
                    self.max_items
                ),
            ));
        }
        Ok(Progress { items, ..Progress::default() })
    }

    /// Ends a pass: keeps its value (or its failure, by the policy) and moves on.
    fn end_pass(&self, cx: &mut StepContext<'_>, progress: &mut Progress) -> Result<(), StepFailure> {
        let item = progress.items.get(progress.index).cloned().unwrap_or(Value::Null);
        match cx.caught_failure().cloned() {
            Some(failure) => match self.policy {
                // A loop that stops does not catch: the failure never comes back here.
                ItemErrorPolicy::Stop | ItemErrorPolicy::Skip => {}
                ItemErrorPolicy::Collect => progress.errors.push(json!({
                    "index": progress.index,
                    "item": item,
                    "step": failure.step.as_str(),
                    "code": failure.code,
                    "message": failure.message,
                })),
            },
            None => {
                if let Some((_, value)) = &self.collect {
                    progress.collected.push(value.render(&cx.scope())?);
                }
            }
        }
        progress.index += 1;
        Ok(())
    }
}

#[async_trait]
impl Step for Loop {
    async fn run(&self, cx: &mut StepContext<'_>) -> Result<Outcome, StepFailure> {
        // Coming from outside the body, the loop starts (again), whatever an earlier, unfinished
        // run of it left behind (a body step whose `on_error` left the loop).
        let kept = cx.take_state().filter(|_| cx.returned_from_body());
        let progress = match kept {
            None => self.start(cx)?,
            Some(state) => {
                let mut progress = Progress::from_state(state)?;
                self.end_pass(cx, &mut progress)?;
                progress
            }
        };
        cx.record("items", json!(progress.items.len()));
        cx.record("index", json!(progress.index));
        // What was collected so far is in its variables at every pass, so a body that leaves
        // the loop early (a branch out of it) keeps what the passes before collected.
        if let Some((name, _)) = &self.collect {
            cx.set_var(name, Value::Array(progress.collected.clone()));
        }
        if let Some(name) = &self.errors_as {
            cx.set_var(name, Value::Array(progress.errors.clone()));
        }
        // Done: the place is forgotten (it was taken out of the state).
        let Some(item) = progress.items.get(progress.index).cloned() else { return Ok(Outcome::Next) };
        cx.set_var(&self.item_as, item);
        if let Some(name) = &self.index_as {
            cx.set_var(name, json!(progress.index));
        }
        cx.set_state(Some(progress.into_state()));
        Ok(Outcome::Goto(Jump::Step(self.body)))
    }

    fn behavior(&self) -> Behavior {
        let catches_failures = self.policy != ItemErrorPolicy::Stop;
        Behavior { repeats: Some(Repeat { body: self.body, catches_failures }), ..Behavior::default() }
    }
}
