//! Expressions inside placeholders: `{{ deals.filter(d, d.amount > 100).size() }}`,
//! `{{ message.text.trim().lower() }}`, `{{ total * 1.2 }}`, and branch conditions such as
//! `"when": "order.total > 100 && contact.country == 'FR'"`.
//!
//! ## The language: CEL
//!
//! Expressions are written in CEL, the Common Expression Language (<https://cel.dev>, the
//! language of Kubernetes validation rules and Google Cloud IAM conditions), evaluated by the
//! `cel` crate. It was chosen over JMESPath (`jmespath`, unmaintained since 2022; no arithmetic
//! or string functions without extensions) and jq (`jaq`, alive and fast, but `.deals |
//! map(select(.amount > 100)) | length` reads as a program, and it is Turing-complete, so a
//! bound on work must interrupt it): CEL reads like the JavaScript or Python a flow designer
//! already knows (`deals.filter(d, d.amount > 100).map(d, d.name)`), it has no loops or
//! recursion of its own (only the `all`/`exists`/`map`/`filter` macros over a given list), no
//! I/O and no side effects, and the crate is maintained (releases through 2026).
//!
//! ## Tern's rules on top of CEL
//!
//! - **Numbers are JSON numbers.** Variables come from JSON, which has one number type, so
//!   `qty * 1.5` and `count + 1` work whatever the JSON held; a result that is whole stays
//!   whole, and `7 / 2` is `3.5` (CEL alone would refuse `int * double` and make `7 / 2` 3).
//! - **A text that holds a number counts as one** where a number is compared or computed with
//!   (`qty >= 100`, `qty == 150`, `qty * 2` when `qty` is the contact's answer `"150"`), as in
//!   the `branch` test form; `+` with a text joins texts, so write `double(qty) + 1`.
//! - **What an expression can read**: flow variables, `message`, `contact`, `conversation`
//!   and `event`, never `secrets` or `integration` (an expression could transform a secret into
//!   a form the reply masking no longer recognises). A variable that is not set yet reads as
//!   `null`; write `name != null ? name : 'there'`, or `deal.?owner.orValue('nobody')` for a
//!   field that may be missing.
//! - **Checked when the flow loads** ([`Expression::parse`], no I/O): syntax, the functions
//!   and how many arguments each takes, the types wherever they are known (literals, the
//!   results of functions, `message`/`contact`), `matches` only with a literal pattern; the
//!   variables an expression reads join the flow's `undefined-variable` checks.
//! - **Bounded when it runs**: see the `MAX_*` constants. The text is at most
//!   [`MAX_EXPRESSION_BYTES`], nests at most [`MAX_DEPTH`] deep with at most [`MAX_LOOPS`]
//!   macros inside each other; one evaluation iterates at most [`MAX_ITERATIONS`] list items in
//!   all, produces at most [`MAX_PRODUCED_BYTES`] of new text, and its result is at most
//!   [`crate::template::MAX_RENDERED_BYTES`] as JSON; a backstop stops it after [`MAX_TIME`].
//!
//! Functions beyond CEL's standard ones (`size`, `contains`, `startsWith`, `endsWith`,
//! `matches`, `int`, `double`, `string`, `timestamp`, `duration`, `getHours(zone)`, …): `lower`,
//! `upper`, `trim`, `replace`, `split`, `join`, `sum`, `first`, `last`, `sort`, `sortBy`,
//! `reverse`, `distinct`, `flatten`, `slice`, `formatNumber(decimals)`,
//! `formatTime(layout, zone)` and `math.greatest`/`least`/`round`/`ceil`/`floor`/`abs`. The
//! list with arities is [`check::FUNCTIONS`].

mod check;
mod convert;
mod functions;
mod parse;

use std::borrow::Cow;

use serde_json::Value;

use crate::template::{RenderError, Scope, VarRef};

pub use check::{FUNCTIONS, Function, Kind};

/// The longest expression, in bytes.
pub const MAX_EXPRESSION_BYTES: usize = 1024;
/// The deepest an expression may nest (parentheses, calls, operators and each macro count).
pub const MAX_DEPTH: usize = 32;
/// The most `all`/`exists`/`exists_one`/`map`/`filter`/`sortBy` macros inside each other.
pub const MAX_LOOPS: usize = 3;
/// The most list or object items one evaluation may iterate over, in all its macros.
pub const MAX_ITERATIONS: u64 = 100_000;
/// The most bytes of new text (and list items) one evaluation may produce with `+`, `join`,
/// `replace`, `lower`, `upper`, `formatTime`, … together.
pub const MAX_PRODUCED_BYTES: usize = 16 * 1024 * 1024;
/// The deepest a value an expression reads or gives may nest (lists and objects inside each
/// other): a flow can build deeper values step by step, which an expression neither reads nor
/// returns.
pub const MAX_VALUE_DEPTH: usize = 64;
/// How long one evaluation may run before it is stopped (a backstop: the bounds above keep
/// real expressions far below it).
pub const MAX_TIME: std::time::Duration = std::time::Duration::from_secs(1);

/// Why an expression cannot be used, found when the flow loads. Messages are in the flow
/// designer's words and say where in the expression (`at character N`, counted from 1).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ExprError {
    /// Longer than [`MAX_EXPRESSION_BYTES`].
    #[error(
        "the expression is {len} bytes long; the limit is {MAX_EXPRESSION_BYTES} (split it over several `set_variables` entries)"
    )]
    TooLong {
        /// Its length.
        len: usize,
    },
    /// Nested deeper than [`MAX_DEPTH`], or more than [`MAX_LOOPS`] macros inside each other.
    #[error("`{expression}` nests too deeply ({what}); split it over several `set_variables` entries")]
    TooDeep {
        /// The expression.
        expression: String,
        /// What is too deep, with its limit.
        what: String,
    },
    /// Not CEL syntax.
    #[error("`{expression}` is not a valid expression: {message} at character {at}")]
    Syntax {
        /// The expression.
        expression: String,
        /// What the parser expected or found, reworded.
        message: String,
        /// Where, counted in characters from 1.
        at: usize,
    },
    /// A function Tern does not offer, or offered with other arguments.
    #[error("`{expression}`: {message}")]
    Function {
        /// The expression.
        expression: String,
        /// Which function and what to write instead.
        message: String,
    },
    /// A name the expression may not read (`secrets`, `integration`) or a construct it may not
    /// use (message types, bytes).
    #[error("`{expression}`: {message}")]
    NotAllowed {
        /// The expression.
        expression: String,
        /// What and why.
        message: String,
    },
    /// Values of types that do not go together (`'a' - 1`, `name.size() > 'x'`).
    #[error("`{expression}`: {message}")]
    Type {
        /// The expression.
        expression: String,
        /// Which operation, the types it got, and what would work.
        message: String,
    },
}

/// A checked expression, ready to evaluate.
#[derive(Clone, Debug)]
pub struct Expression {
    source: String,
    ast: cel::IdedExpr,
    /// The flow values it reads (roots with the field path written after them).
    refs: Vec<VarRef>,
    /// The root names to bind when evaluating (distinct).
    roots: Vec<VarRef>,
    kind: Kind,
}

impl PartialEq for Expression {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Expression {
    /// Parses and checks an expression (no I/O). The text is used as written, trimmed.
    ///
    /// # Errors
    /// [`ExprError`], the first problem found.
    pub fn parse(source: &str) -> Result<Self, ExprError> {
        Self::parse_with_locals(source, &[])
    }

    /// [`Expression::parse`] for an expression that may also read `locals`, names the caller
    /// binds itself when evaluating ([`Expression::eval_with_locals`]).
    ///
    /// # Errors
    /// [`ExprError`], the first problem found.
    pub fn parse_with_locals(source: &str, locals: &[&str]) -> Result<Self, ExprError> {
        let source = source.trim();
        let ast = parse::parse(source)?;
        let checked = check::check(source, ast, locals)?;
        let mut roots: Vec<VarRef> = Vec::new();
        for r in &checked.refs {
            if !roots.iter().any(|x| x.root == r.root) {
                roots.push(VarRef {
                    path: Vec::new(),
                    raw: r.raw.split('.').next().unwrap_or_default().into(),
                    ..r.clone()
                });
            }
        }
        Ok(Self { source: source.to_string(), ast: checked.ast, refs: checked.refs, roots, kind: checked.kind })
    }

    /// The expression as written (trimmed).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The flow values it reads, each as the root and the field path written after it
    /// (`order.total` in `order.total > 100`), for the flow's variable checks.
    pub fn refs(&self) -> &[VarRef] {
        &self.refs
    }

    /// What the result is, where the checks could tell ([`Kind::Any`] otherwise).
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Evaluates against a run's values.
    ///
    /// # Errors
    /// [`RenderError::Expression`] with what went wrong in the designer's words (a field that is
    /// not there, a division by zero, a bound exceeded), or an error of the scope.
    pub fn eval(&self, scope: &dyn Scope) -> Result<Value, RenderError> {
        self.eval_with_locals(scope, &[])
    }

    /// [`Expression::eval`] with the locals the expression was parsed with bound to values.
    ///
    /// # Errors
    /// As [`Expression::eval`].
    pub fn eval_with_locals(&self, scope: &dyn Scope, locals: &[(&str, &Value)]) -> Result<Value, RenderError> {
        let mut bound: Vec<(&str, Cow<'_, Value>)> = locals.iter().map(|(n, v)| (*n, Cow::Borrowed(*v))).collect();
        for root in &self.roots {
            let value = match scope.root(root) {
                Ok(v) => v,
                Err(RenderError::Missing { .. }) => Cow::Owned(Value::Null),
                Err(e) => return Err(e),
            };
            bound.push((root.raw.as_str(), value));
        }
        for (name, value) in &bound {
            if holds_secret(value) {
                return Err(self.rejected(format!(
                    "reads `{name}`, which holds a secret's value; expressions cannot transform secrets (the result would escape masking): use `{{{{secrets.NAME}}}}` alone in a request field"
                )));
            }
        }
        let value = functions::evaluate(&self.ast, &bound).map_err(|e| self.rejected(e.to_string()))?;
        scope.charge(&self.source, &value)?;
        Ok(value)
    }

    /// Evaluates a condition: the result must be `true` or `false`.
    ///
    /// # Errors
    /// As [`Expression::eval`], and [`RenderError::Expression`] when the result is not a boolean.
    pub fn holds(&self, scope: &dyn Scope) -> Result<bool, RenderError> {
        match self.eval(scope)? {
            Value::Bool(b) => Ok(b),
            other => Err(self.rejected(format!(
                "must give true or false, but {}; compare it (`x != null`, `x > 0`, `x == 'yes'`)",
                crate::dot_path::describe(&other)
            ))),
        }
    }

    fn rejected(&self, reason: String) -> RenderError {
        RenderError::Expression { expression: self.source.clone(), reason }
    }
}

/// Whether any text in `value` contains a secret value the process knows
/// ([`crate::secrets::known`]). Walks with a stack of its own: a value may be nested deeply.
fn holds_secret(value: &Value) -> bool {
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        match v {
            Value::String(s) => {
                if matches!(crate::secrets::known::mask(s), Cow::Owned(_)) {
                    return true;
                }
            }
            Value::Array(items) => stack.extend(items),
            Value::Object(map) => {
                for (k, v) in map {
                    if matches!(crate::secrets::known::mask(k), Cow::Owned(_)) {
                        return true;
                    }
                    stack.push(v);
                }
            }
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests;
