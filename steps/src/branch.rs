//! `branch`: choose the next step by conditions on variables. The first case whose condition
//! holds wins; when none does, the step continues like any other (its `next`, or the following
//! step).
//!
//! A condition is either a test on one value (`{"var": "qty", "gte": 100}`) or an expression
//! (`"order.total > 100 && contact.country == 'FR'"`, see `tern_engine::expr`), which must give
//! true or false.

use async_trait::async_trait;
use regex::Regex;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;
use tern_engine::expr::Expression;
use tern_engine::template::{JsonTemplate, Scope, VarRef, value_text};
use tern_engine::{BuildContext, Jump, Outcome, Step, StepContext, StepFailure, StepType, Target, schema::schema_of};

/// Config of `branch`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Cases, tried in order.
    cases: Vec<CaseConfig>,
}

/// One case.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct CaseConfig {
    /// The condition: an expression giving true or false such as `qty >= 100 && vip`, or a test on one value such as `{"var": "qty", "gte": 100}`.
    when: WhenConfig,
    /// Where to go when it holds: a step id or `end`.
    next: Target,
}

/// A condition as written.
#[derive(Deserialize, JsonSchema)]
#[serde(untagged)]
enum WhenConfig {
    /// An expression that gives true or false.
    Expression(String),
    /// A test on one value.
    Test(Box<ConditionConfig>),
}

/// A test on one value. Give `var` and exactly one operator.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ConditionConfig {
    /// What to test: a variable or a dotted path (`last_name`, `user.age`, `message.text`).
    var: String,
    /// Equal to this value (a template; numbers and numeric strings compare as numbers).
    #[serde(default)]
    equals: Option<Value>,
    /// Not equal to this value.
    #[serde(default)]
    not_equals: Option<Value>,
    /// `true`: the value is set and not null; `false`: it is not.
    #[serde(default)]
    exists: Option<bool>,
    /// The value's text matches this regular expression.
    #[serde(default)]
    matches: Option<String>,
    /// Greater than (numeric).
    #[serde(default)]
    gt: Option<f64>,
    /// Greater than or equal (numeric).
    #[serde(default)]
    gte: Option<f64>,
    /// Less than (numeric).
    #[serde(default)]
    lt: Option<f64>,
    /// Less than or equal (numeric).
    #[serde(default)]
    lte: Option<f64>,
}

impl ConditionConfig {
    /// The condition in a few words (`qty gte 100`), for pictures of the flow.
    fn label(&self) -> String {
        let text = |v: &Value| match v {
            Value::String(s) => format!("\"{s}\""),
            v => v.to_string(),
        };
        let mut ops = Vec::new();
        ops.extend(self.equals.as_ref().map(|v| format!("equals {}", text(v))));
        ops.extend(self.not_equals.as_ref().map(|v| format!("not_equals {}", text(v))));
        ops.extend(self.exists.map(|b| if b { "exists".to_string() } else { "does not exist".to_string() }));
        ops.extend(self.matches.as_ref().map(|p| format!("matches /{p}/")));
        for (name, bound) in [("gt", self.gt), ("gte", self.gte), ("lt", self.lt), ("lte", self.lte)] {
            ops.extend(bound.map(|b| format!("{name} {b}")));
        }
        format!("{} {}", self.var, ops.join(", "))
    }
}

/// The operators of a test on one value, as written.
const OPERATORS: &[&str] = &["equals", "not_equals", "exists", "matches", "gt", "gte", "lt", "lte"];

/// A numeric comparison.
type CompareFn = fn(f64, f64) -> bool;

#[derive(Debug)]
enum Test {
    Equals(JsonTemplate),
    NotEquals(JsonTemplate),
    Exists(bool),
    Matches(Regex),
    Compare(CompareFn, f64),
}

#[derive(Debug)]
enum Condition {
    On(VarRef, Test),
    Expression(Expression),
}

#[derive(Debug)]
struct Case {
    condition: Condition,
    jump: Jump,
}

pub struct Branch;

impl StepType for Branch {
    fn name(&self) -> &str {
        "branch"
    }
    fn description(&self) -> &str {
        "Go to the first case whose condition holds (an expression, or equals, not_equals, exists, matches, gt/gte/lt/lte)"
    }
    fn config_schema(&self) -> Value {
        schema_of::<Config>()
    }
    fn build(&self, config: &Value, cx: &mut BuildContext<'_>) -> Option<Box<dyn Step>> {
        let cfg: Config = cx.config(config)?;
        if cfg.cases.is_empty() {
            cx.error("invalid-value", "/cases", "a branch needs at least one case", None);
            return None;
        }
        let mut cases = Vec::new();
        let mut ok = true;
        for (i, case) in cfg.cases.iter().enumerate() {
            let rel = format!("/cases/{i}");
            let c = match &case.when {
                WhenConfig::Test(c) => c,
                WhenConfig::Expression(text) => {
                    let jump = cx.labeled_target(&format!("{rel}/next"), &case.next, text.trim());
                    let at = format!("{rel}/when");
                    match (cx.condition(&at, text), jump) {
                        (Some(e), Some(jump)) => cases.push(Case { condition: Condition::Expression(e), jump }),
                        _ => ok = false,
                    }
                    continue;
                }
            };
            let jump = cx.labeled_target(&format!("{rel}/next"), &case.next, c.label());
            let var = match VarRef::parse(&c.var) {
                Ok(v) => {
                    cx.use_var(&format!("{rel}/when/var"), &v);
                    Some(v)
                }
                Err(e) => {
                    cx.error(
                        "bad-template",
                        &format!("{rel}/when/var"),
                        e,
                        Some("write a variable name or dotted path, without braces".into()),
                    );
                    None
                }
            };
            let mut tests = Vec::new();
            if let Some(v) = &c.equals {
                tests.push(cx.json_template(&format!("{rel}/when/equals"), v).map(Test::Equals));
            }
            if let Some(v) = &c.not_equals {
                tests.push(cx.json_template(&format!("{rel}/when/not_equals"), v).map(Test::NotEquals));
            }
            if let Some(b) = c.exists {
                tests.push(Some(Test::Exists(b)));
            }
            if let Some(p) = &c.matches {
                tests.push(cx.regex(&format!("{rel}/when/matches"), p).map(Test::Matches));
            }
            let cmp: [(Option<f64>, CompareFn); 4] =
                [(c.gt, |a, b| a > b), (c.gte, |a, b| a >= b), (c.lt, |a, b| a < b), (c.lte, |a, b| a <= b)];
            for (bound, op) in cmp {
                if let Some(b) = bound {
                    tests.push(Some(Test::Compare(op, b)));
                }
            }
            // An operator dropped for a problem of its own (`"gt": "3"`) was reported already.
            let written = config
                .pointer(&format!("/cases/{i}/when"))
                .and_then(Value::as_object)
                .map_or(0, |o| OPERATORS.iter().filter(|k| o.contains_key(**k)).count());
            if tests.is_empty() && written > 0 {
                ok = false;
                continue;
            }
            if tests.len() != 1 {
                cx.error(
                    "invalid-value",
                    &format!("{rel}/when"),
                    format!("a condition needs exactly one operator, found {}", tests.len()),
                    Some("use one of equals, not_equals, exists, matches, gt, gte, lt, lte".into()),
                );
                ok = false;
                continue;
            }
            match (var, tests.pop().flatten(), jump) {
                (Some(var), Some(test), Some(jump)) => cases.push(Case { condition: Condition::On(var, test), jump }),
                _ => ok = false,
            }
        }
        ok.then(|| Box::new(BranchStep { cases }) as Box<dyn Step>)
    }
}

#[derive(Debug)]
struct BranchStep {
    cases: Vec<Case>,
}

fn as_number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// JSON equality, with numbers and numeric strings comparing as numbers (answers typed by a
/// person arrive as text).
fn loosely_equal(a: &Value, b: &Value) -> bool {
    if a == b {
        return true;
    }
    match (a, b) {
        (Value::Number(_), Value::String(_)) | (Value::String(_), Value::Number(_)) => {
            matches!((as_number(a), as_number(b)), (Some(x), Some(y)) if x == y)
        }
        _ => false,
    }
}

#[async_trait]
impl Step for BranchStep {
    async fn run(&self, cx: &mut StepContext<'_>) -> Result<Outcome, StepFailure> {
        let mut taken = None;
        {
            let scope = cx.scope();
            for (i, case) in self.cases.iter().enumerate() {
                let (var, test) = match &case.condition {
                    Condition::Expression(e) => {
                        if e.holds(&scope)? {
                            taken = Some(i);
                            break;
                        }
                        continue;
                    }
                    Condition::On(var, test) => (var, test),
                };
                let value = scope.resolve(var).ok().map(|v| v.into_owned());
                let holds = match (test, &value) {
                    (Test::Exists(want), v) => *want == v.as_ref().is_some_and(|v| !v.is_null()),
                    (_, None) => false,
                    (Test::Equals(t), Some(v)) => loosely_equal(v, &t.render(&scope)?),
                    (Test::NotEquals(t), Some(v)) => !loosely_equal(v, &t.render(&scope)?),
                    (Test::Matches(r), Some(v)) => r.is_match(&value_text(v)),
                    (Test::Compare(op, b), Some(v)) => as_number(v).is_some_and(|a| op(a, *b)),
                };
                if holds {
                    taken = Some(i);
                    break;
                }
            }
        }
        cx.record("case", taken.map_or(Value::Null, |i| Value::from(i as u64)));
        Ok(match taken {
            Some(i) => Outcome::Goto(self.cases[i].jump),
            None => Outcome::Next,
        })
    }
}
