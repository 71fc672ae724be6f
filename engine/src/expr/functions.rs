//! Running a checked expression: the functions Tern adds to CEL, JSON-number arithmetic, and
//! the per-evaluation budget.
//!
//! The budget lives in a thread-local: an evaluation is synchronous and runs on one thread from
//! start to end, and the functions CEL calls have no other way to reach per-evaluation state.

use std::cell::Cell;
use std::sync::Arc;
use std::time::Instant;

use cel::extractors::{Arguments, This};
use cel::{Context, ExecutionError, Value};
use chrono::{DateTime, FixedOffset, TimeDelta};

use super::check::ITERATE;
use super::convert::{ValueError, explain, from_json, kind_words, number, to_json};
use super::{MAX_ITERATIONS, MAX_PRODUCED_BYTES, MAX_TIME};

struct Budget {
    iterations: Cell<u64>,
    produced: Cell<usize>,
    deadline: Cell<Option<Instant>>,
}

thread_local! {
    static BUDGET: Budget = const {
        Budget { iterations: Cell::new(0), produced: Cell::new(0), deadline: Cell::new(None) }
    };
    static BASE: Context<'static, 'static> = base_context();
}

type Result<T> = std::result::Result<T, ExecutionError>;

/// A failure whose message is already in the designer's words.
fn fail(message: impl Into<String>) -> ExecutionError {
    ExecutionError::FunctionError { function: String::new(), message: message.into() }
}

fn check_time() -> Result<()> {
    BUDGET.with(|b| match b.deadline.get() {
        Some(deadline) if Instant::now() > deadline => Err(fail(format!(
            "took longer than {} ms and was stopped; make it do less (filter the list first)",
            MAX_TIME.as_millis()
        ))),
        _ => Ok(()),
    })
}

/// Counts `n` items a macro is about to visit.
fn charge_items(n: usize) -> Result<()> {
    check_time()?;
    BUDGET.with(|b| {
        let used = b.iterations.get().saturating_add(n as u64);
        b.iterations.set(used);
        if used > MAX_ITERATIONS {
            return Err(fail(format!(
                "goes over more than {MAX_ITERATIONS} list items in all; filter or slice the list first"
            )));
        }
        Ok(())
    })
}

/// Counts `n` bytes of new text (or list items) about to be produced.
fn charge_bytes(n: usize) -> Result<()> {
    check_time()?;
    BUDGET.with(|b| {
        let used = b.produced.get().saturating_add(n);
        b.produced.set(used);
        if used > MAX_PRODUCED_BYTES {
            return Err(fail(format!(
                "produces more than {} MiB of text; work on less of it",
                MAX_PRODUCED_BYTES / (1024 * 1024)
            )));
        }
        Ok(())
    })
}

/// Why an evaluation failed; the message is in the designer's words.
#[derive(Debug, thiserror::Error)]
pub(super) enum EvalError {
    /// A root it reads cannot be read (its name, and why).
    #[error("`{name}`: {error}")]
    Input {
        /// The root's name.
        name: String,
        /// Why.
        error: ValueError,
    },
    /// The result cannot be stored.
    #[error("{0}")]
    Result(#[from] ValueError),
    /// CEL stopped with an error (a bound, a missing field, a division by zero).
    #[error("{}", explain(.0))]
    Run(ExecutionError),
}

/// Evaluates `ast` with `bound` as its root names.
pub(super) fn evaluate(
    ast: &cel::IdedExpr,
    bound: &[(&str, std::borrow::Cow<'_, serde_json::Value>)],
) -> std::result::Result<serde_json::Value, EvalError> {
    BUDGET.with(|b| {
        b.iterations.set(0);
        b.produced.set(0);
        b.deadline.set(Instant::now().checked_add(MAX_TIME));
    });
    let result = BASE.with(|base| {
        let mut ctx = base.new_inner_scope();
        for (name, value) in bound {
            match from_json(value) {
                Ok(v) => ctx.add_variable_from_value(*name, v),
                Err(error) => return Err(EvalError::Input { name: name.to_string(), error }),
            }
        }
        ctx.resolve(ast).map_err(EvalError::Run)
    });
    BUDGET.with(|b| b.deadline.set(None));
    Ok(to_json(&result?)?)
}

fn base_context() -> Context<'static, 'static> {
    let mut ctx = Context::with_env(super::parse::ENV.clone());
    // Names the standard environment already declares cannot be added; `check` allows only
    // names that exist, so a clash would show up as "no such overload" in the tests.
    let _ = ctx.add_function(ITERATE, iterate);
    let _ = ctx.add_function("@add", |a: Value, b: Value| arithmetic('+', &a, &b));
    let _ = ctx.add_function("@sub", |a: Value, b: Value| arithmetic('-', &a, &b));
    let _ = ctx.add_function("@mul", |a: Value, b: Value| arithmetic('*', &a, &b));
    let _ = ctx.add_function("@div", |a: Value, b: Value| arithmetic('/', &a, &b));
    let _ = ctx.add_function("@mod", |a: Value, b: Value| arithmetic('%', &a, &b));
    let _ = ctx.add_function("@eq", |a: Value, b: Value| equal(&a, &b));
    let _ = ctx.add_function("@ne", |a: Value, b: Value| !equal(&a, &b));
    let _ = ctx.add_function("@lt", |a: Value, b: Value| compare(&a, &b).map(|o| o.is_lt()));
    let _ = ctx.add_function("@le", |a: Value, b: Value| compare(&a, &b).map(|o| o.is_le()));
    let _ = ctx.add_function("@gt", |a: Value, b: Value| compare(&a, &b).map(|o| o.is_gt()));
    let _ = ctx.add_function("@ge", |a: Value, b: Value| compare(&a, &b).map(|o| o.is_ge()));
    let _ = ctx.add_function("lower", |This(s): This<Arc<String>>| text(s.to_lowercase()));
    let _ = ctx.add_function("upper", |This(s): This<Arc<String>>| text(s.to_uppercase()));
    let _ = ctx.add_function("trim", |This(s): This<Arc<String>>| text(s.trim().to_string()));
    let _ = ctx.add_function("replace", replace);
    let _ = ctx.add_function("split", split);
    let _ = ctx.add_function("join", join);
    let _ = ctx.add_function("sum", sum);
    let _ = ctx.add_function("@sort", sort);
    let _ = ctx.add_function("@sortByKeys", sort_by_keys);
    let _ = ctx.add_function("@flatten", flatten);
    let _ = ctx.add_function("@reverse", |This(l): This<Arc<Vec<Value>>>| -> Result<Value> {
        charge_bytes(l.len())?;
        Ok(Value::List(Arc::new(l.iter().rev().cloned().collect())))
    });
    let _ = ctx.add_function("@distinct", distinct);
    let _ = ctx.add_function("@matches", matches);
    let _ = ctx.add_function("first", |This(l): This<Arc<Vec<Value>>>| l.first().cloned().unwrap_or(Value::Null));
    let _ = ctx.add_function("last", |This(l): This<Arc<Vec<Value>>>| l.last().cloned().unwrap_or(Value::Null));
    let _ = ctx.add_function("formatNumber", format_number);
    let _ = ctx.add_function("formatTime", format_time);
    ctx
}

fn text(s: String) -> Result<Value> {
    charge_bytes(s.len())?;
    Ok(Value::String(Arc::new(s)))
}

fn iterate(range: Value) -> Result<Value> {
    let n = match &range {
        Value::List(l) => l.len(),
        Value::Map(m) => m.map.len(),
        other => {
            return Err(fail(format!(
                "`map`, `filter`, `all` and `exists` go over a list; this is {}",
                kind_words(other)
            )));
        }
    };
    charge_items(n)?;
    Ok(range)
}

fn replace(This(s): This<Arc<String>>, old: Arc<String>, new: Arc<String>) -> Result<Value> {
    if old.is_empty() {
        return Err(fail("`replace` needs a text to look for; the first argument is empty"));
    }
    let count = s.matches(old.as_str()).count();
    let len = (s.len() - count * old.len()).saturating_add(count.saturating_mul(new.len()));
    charge_bytes(len)?;
    Ok(Value::String(Arc::new(s.replace(old.as_str(), &new))))
}

fn split(This(s): This<Arc<String>>, sep: Arc<String>) -> Result<Value> {
    let parts: Vec<Value> = if sep.is_empty() {
        s.chars().map(|c| Value::String(Arc::new(c.to_string()))).collect()
    } else {
        s.split(sep.as_str()).map(|p| Value::String(Arc::new(p.to_string()))).collect()
    };
    charge_bytes(s.len() + parts.len())?;
    Ok(Value::List(Arc::new(parts)))
}

fn join(This(list): This<Arc<Vec<Value>>>, Arguments(args): Arguments) -> Result<Value> {
    let sep = match args.first() {
        None => String::new(),
        Some(Value::String(s)) => s.to_string(),
        Some(other) => {
            return Err(fail(format!("`join` takes a text to put between items, not {}", kind_words(other))));
        }
    };
    let mut parts = Vec::with_capacity(list.len());
    let mut len = sep.len().saturating_mul(list.len());
    for item in list.iter() {
        let part = match item {
            Value::String(s) => s.to_string(),
            Value::Int(_) | Value::UInt(_) | Value::Float(_) | Value::Bool(_) => {
                to_json(item).map_err(|e| fail(e.to_string()))?.to_string()
            }
            Value::Null => String::new(),
            other => {
                return Err(fail(format!("`join` joins texts and numbers; an item is {}", kind_words(other))));
            }
        };
        len = len.saturating_add(part.len());
        parts.push(part);
    }
    charge_bytes(len)?;
    Ok(Value::String(Arc::new(parts.join(&sep))))
}

fn sum(This(list): This<Arc<Vec<Value>>>) -> Result<Value> {
    list.iter().try_fold(Value::Int(0), |acc, item| match item {
        Value::Int(_) | Value::UInt(_) | Value::Float(_) => arithmetic('+', &acc, item),
        other => Err(fail(format!("`sum` adds numbers; an item is {}", kind_words(other)))),
    })
}

/// Numbers (whole or not, together), texts, booleans or times, in ascending order.
fn sort(This(list): This<Arc<Vec<Value>>>) -> Result<Value> {
    one_kind("sort", &list)?;
    charge_bytes(list.len())?;
    let mut items = list.as_ref().clone();
    items.sort_by(order);
    Ok(Value::List(Arc::new(items)))
}

/// `list.sortBy(x, key)`: the items in the order of their keys (the macro computes the keys).
fn sort_by_keys(This(list): This<Arc<Vec<Value>>>, keys: Arc<Vec<Value>>) -> Result<Value> {
    one_kind("sortBy", &keys)?;
    let mut pairs: Vec<(&Value, &Value)> = keys.iter().zip(list.iter()).collect();
    pairs.sort_by(|a, b| order(a.0, b.0));
    Ok(Value::List(Arc::new(pairs.into_iter().map(|(_, v)| v.clone()).collect())))
}

/// Lists inside the list spliced in, `depth` levels (1 when not given); every item copied
/// counts against the budget.
fn flatten(This(list): This<Arc<Vec<Value>>>, Arguments(args): Arguments) -> Result<Value> {
    let depth = match args.first() {
        None => 1,
        Some(v) => match number(v) {
            Some(Number::Int(d)) if (0..=super::MAX_VALUE_DEPTH as i64).contains(&d) => d as usize,
            _ => return Err(fail(format!("`flatten` takes a depth from 0 to {}", super::MAX_VALUE_DEPTH))),
        },
    };
    fn into(items: &[Value], depth: usize, out: &mut Vec<Value>) -> Result<()> {
        charge_bytes(items.len())?;
        for item in items {
            match item {
                Value::List(inner) if depth > 0 => into(inner, depth - 1, out)?,
                other => out.push(other.clone()),
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    into(&list, depth, &mut out)?;
    Ok(Value::List(Arc::new(out)))
}

/// The items without repeats, first occurrences kept; items are the same when their JSON is
/// (so `1` and `1.0` are), found through a set: linear, not quadratic.
fn distinct(This(list): This<Arc<Vec<Value>>>) -> Result<Value> {
    charge_bytes(list.len())?;
    let mut seen = std::collections::HashSet::with_capacity(list.len());
    let mut out = Vec::new();
    for item in list.iter() {
        let key = to_json(item).map_err(|e| fail(e.to_string()))?.to_string();
        charge_bytes(key.len())?;
        if seen.insert(key) {
            out.push(item.clone());
        }
    }
    Ok(Value::List(Arc::new(out)))
}

thread_local! {
    /// Patterns compiled by `matches`, at most [`MAX_PATTERNS`] (emptied when full): a pattern
    /// is a literal of the flow, so a loop compiles it once.
    static PATTERNS: std::cell::RefCell<std::collections::HashMap<String, regex::Regex>> = Default::default();
}

/// The most compiled `matches` patterns kept per thread.
const MAX_PATTERNS: usize = 64;

/// `text.matches(pattern)`: whether the regular expression finds a match in the text.
fn matches(This(text): This<Arc<String>>, pattern: Arc<String>) -> Result<Value> {
    check_time()?;
    PATTERNS.with(|cache| {
        let mut cache = cache.borrow_mut();
        if !cache.contains_key(pattern.as_str()) {
            let re = regex::RegexBuilder::new(&pattern)
                .size_limit(1 << 20)
                .build()
                .map_err(|e| fail(format!("`matches`: invalid regular expression: {e}")))?;
            if cache.len() >= MAX_PATTERNS {
                cache.clear();
            }
            cache.insert(pattern.to_string(), re);
        }
        Ok(Value::Bool(cache.get(pattern.as_str()).is_some_and(|re| re.is_match(&text))))
    })
}

/// Refuses a list whose items cannot be ordered together.
fn one_kind(function: &str, list: &[Value]) -> Result<()> {
    let rank = |v: &Value| match v {
        Value::Int(_) | Value::UInt(_) | Value::Float(_) => 0,
        Value::String(_) => 1,
        Value::Bool(_) => 2,
        Value::Timestamp(_) => 3,
        Value::Duration(_) => 4,
        _ => 5,
    };
    let first = list.first().map(rank).unwrap_or(0);
    match list.iter().find(|v| rank(v) != first || rank(v) == 5) {
        Some(odd) => Err(fail(format!(
            "`{function}` orders numbers, texts or times of one kind; an item is {} (sort objects with `sortBy(x, x.field)`)",
            kind_words(odd)
        ))),
        None => Ok(()),
    }
}

/// Ascending order of two values of one kind ([`one_kind`]).
fn order(a: &Value, b: &Value) -> std::cmp::Ordering {
    match (number(a), number(b)) {
        (Some(x), Some(y)) => x.as_f64().total_cmp(&y.as_f64()),
        _ => match (a, b) {
            (Value::String(x), Value::String(y)) => x.cmp(y),
            (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
            (Value::Timestamp(x), Value::Timestamp(y)) => x.cmp(y),
            (Value::Duration(x), Value::Duration(y)) => x.cmp(y),
            _ => std::cmp::Ordering::Equal,
        },
    }
}

fn format_number(This(n): This<Value>, decimals: Value) -> Result<Value> {
    let value =
        number(&n).ok_or_else(|| fail(format!("`formatNumber` is called on a number, not {}", kind_words(&n))))?;
    let decimals = match number(&decimals) {
        Some(Number::Int(d)) if (0..=10).contains(&d) => d as usize,
        _ => return Err(fail("`formatNumber` takes the number of decimals, from 0 to 10")),
    };
    text(round_half_up(value.as_f64(), decimals))
}

/// `value` with `decimals` decimals, halves rounded away from zero on the number as JSON
/// wrote it (`2.675` → `2.68`, `0.125` → `0.13`), not on its nearest binary fraction.
fn round_half_up(value: f64, decimals: usize) -> String {
    // Rust prints the shortest text that reads back as the same f64, without an exponent.
    let shortest = format!("{}", value.abs());
    let (whole, fraction) = shortest.split_once('.').unwrap_or((&shortest, ""));
    let mut digits: Vec<u8> =
        whole.bytes().chain(fraction.bytes().chain(std::iter::repeat(b'0')).take(decimals)).map(|b| b - b'0').collect();
    if fraction.as_bytes().get(decimals).is_some_and(|d| *d >= b'5') {
        let mut i = digits.len();
        loop {
            if i == 0 {
                digits.insert(0, 1);
                break;
            }
            i -= 1;
            if digits[i] == 9 {
                digits[i] = 0;
            } else {
                digits[i] += 1;
                break;
            }
        }
    }
    let text: String = digits.iter().map(|d| char::from(b'0' + d)).collect();
    let (int_part, dec_part) = text.split_at(text.len() - decimals);
    let zero = digits.iter().all(|d| *d == 0);
    let sign = if value < 0.0 && !zero { "-" } else { "" };
    if decimals == 0 { format!("{sign}{int_part}") } else { format!("{sign}{int_part}.{dec_part}") }
}

fn format_time(This(t): This<Value>, Arguments(args): Arguments) -> Result<Value> {
    use chrono::format::{Item, StrftimeItems};
    let time = match &t {
        Value::Timestamp(ts) => *ts,
        Value::String(s) => DateTime::parse_from_rfc3339(s)
            .map_err(|_| fail(format!("`formatTime` needs a time such as 2026-12-07T10:00:00Z; got `{s}`")))?,
        other => return Err(fail(format!("`formatTime` is called on a time, not {}", kind_words(other)))),
    };
    let layout = match args.first() {
        Some(Value::String(s)) => s.clone(),
        _ => return Err(fail("`formatTime` takes a layout such as '%d/%m/%Y %H:%M'")),
    };
    let items: Vec<Item<'_>> = StrftimeItems::new(&layout).collect();
    if items.iter().any(|i| matches!(i, Item::Error)) {
        return Err(fail(format!(
            "`formatTime`: `{layout}` is not a valid layout (see strftime: %Y %m %d %H %M %S %A %B %Z)"
        )));
    }
    let mut out = String::new();
    let written = match args.get(1) {
        None => std::fmt::write(&mut out, format_args!("{}", time.format_with_items(items.iter()))),
        Some(Value::String(zone)) => {
            let tz: chrono_tz::Tz = zone.parse().map_err(|_| {
                fail(format!("`formatTime`: `{zone}` is not a time zone; write one such as 'Europe/Paris' or 'UTC'"))
            })?;
            std::fmt::write(&mut out, format_args!("{}", time.with_timezone(&tz).format_with_items(items.iter())))
        }
        Some(other) => return Err(fail(format!("`formatTime` takes a time zone name, not {}", kind_words(other)))),
    };
    written.map_err(|_| fail(format!("`formatTime`: `{layout}` cannot format this time")))?;
    text(out)
}

/// A JSON number, whole or not.
#[derive(Clone, Copy)]
pub(super) enum Number {
    Int(i64),
    Float(f64),
}

impl Number {
    pub(super) fn as_f64(self) -> f64 {
        match self {
            Number::Int(i) => i as f64,
            Number::Float(f) => f,
        }
    }
}

/// A number, or a text that holds one when `other` is a number (`"150"` typed by a contact).
fn number_beside(value: &Value, other: &Value) -> Option<Number> {
    number(value).or_else(|| match (value, number(other)) {
        (Value::String(s), Some(_)) => text_number(s),
        _ => None,
    })
}

/// The number a text holds (`" 150 "`, `"2.5"`), if it holds one and nothing else.
fn text_number(text: &str) -> Option<Number> {
    let t = text.trim();
    if let Ok(i) = t.parse::<i64>() {
        return Some(Number::Int(i));
    }
    t.parse::<f64>().ok().filter(|f| f.is_finite()).map(Number::Float)
}

fn numbers_cmp(x: Number, y: Number) -> Option<std::cmp::Ordering> {
    match (x, y) {
        (Number::Int(a), Number::Int(b)) => Some(a.cmp(&b)),
        _ => x.as_f64().partial_cmp(&y.as_f64()),
    }
}

/// `==`: CEL's equality, with a number equal to a text that holds it.
fn equal(a: &Value, b: &Value) -> bool {
    match (number_beside(a, b), number_beside(b, a)) {
        (Some(x), Some(y)) => numbers_cmp(x, y) == Some(std::cmp::Ordering::Equal),
        _ => a == b,
    }
}

/// `< <= > >=`: numbers (and a text that holds a number beside one), texts, times, durations,
/// booleans.
fn compare(a: &Value, b: &Value) -> Result<std::cmp::Ordering> {
    let unordered = || fail(format!("cannot compare {} with {}", kind_words(a), kind_words(b)));
    if let (Some(x), Some(y)) = (number_beside(a, b), number_beside(b, a)) {
        return numbers_cmp(x, y).ok_or_else(unordered);
    }
    match (a, b) {
        (Value::String(x), Value::String(y)) => Ok(x.cmp(y)),
        (Value::Timestamp(x), Value::Timestamp(y)) => Ok(x.cmp(y)),
        (Value::Duration(x), Value::Duration(y)) => Ok(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Ok(x.cmp(y)),
        _ => Err(match (a, b) {
            (Value::String(s), _) | (_, Value::String(s)) if number(a).or(number(b)).is_some() => {
                fail(format!("cannot compare the text `{}` with a number: it does not hold a number", cut(s)))
            }
            _ => unordered(),
        }),
    }
}

/// A text cut to 40 characters for a message.
fn cut(s: &str) -> String {
    match s.char_indices().nth(40) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// `+ - * / %` with JSON-number rules (whole numbers stay whole while the result is whole; a
/// division that is not exact gives a fraction), plus CEL's text, list and time arithmetic.
fn arithmetic(op: char, a: &Value, b: &Value) -> Result<Value> {
    if let (Some(x), Some(y)) = (number(a), number(b)) {
        return numbers(op, x, y);
    }
    // `- * / %` read a text beside a number as the number it holds; `+` joins texts instead.
    if op != '+'
        && let (Some(x), Some(y)) = (number_beside(a, b), number_beside(b, a))
    {
        return numbers(op, x, y);
    }
    match (op, a, b) {
        ('+', Value::String(x), Value::String(y)) => {
            charge_bytes(x.len() + y.len())?;
            Ok(Value::String(Arc::new(format!("{x}{y}"))))
        }
        ('+', Value::List(x), Value::List(y)) => {
            charge_bytes(x.len() + y.len())?;
            Ok(Value::List(Arc::new(x.iter().chain(y.iter()).cloned().collect())))
        }
        ('+', Value::Timestamp(t), Value::Duration(d)) | ('+', Value::Duration(d), Value::Timestamp(t)) => {
            time(t.checked_add_signed(*d))
        }
        ('-', Value::Timestamp(t), Value::Duration(d)) => time(t.checked_sub_signed(*d)),
        ('-', Value::Timestamp(x), Value::Timestamp(y)) => Ok(Value::Duration(x.signed_duration_since(*y))),
        ('+', Value::Duration(x), Value::Duration(y)) => duration(x.checked_add(y)),
        ('-', Value::Duration(x), Value::Duration(y)) => duration(x.checked_sub(y)),
        ('+', Value::String(_), _) | ('+', _, Value::String(_)) if number(a).or(number(b)).is_some() => Err(fail(
            "cannot add a text and a number; `+` joins texts: write `string(n)` to join, or `double(t)` to add numbers",
        )),
        _ => {
            let verb = match op {
                '+' => "add",
                '-' => "subtract",
                '*' => "multiply",
                '/' => "divide",
                _ => "take the remainder of",
            };
            Err(fail(format!("cannot {verb} {} and {}", kind_words(a), kind_words(b))))
        }
    }
}

fn time(t: Option<DateTime<FixedOffset>>) -> Result<Value> {
    t.map(Value::Timestamp).ok_or_else(|| fail("the time is out of range"))
}

fn duration(d: Option<TimeDelta>) -> Result<Value> {
    d.map(Value::Duration).ok_or_else(|| fail("the duration is out of range"))
}

fn numbers(op: char, x: Number, y: Number) -> Result<Value> {
    if matches!(op, '/' | '%') && y.as_f64() == 0.0 {
        return Err(fail(if op == '/' { "divides by zero" } else { "takes a remainder of a division by zero" }));
    }
    if let (Number::Int(a), Number::Int(b)) = (x, y) {
        let whole = match op {
            '+' => a.checked_add(b),
            '-' => a.checked_sub(b),
            '*' => a.checked_mul(b),
            '%' => a.checked_rem(b),
            _ => a.checked_rem(b).filter(|r| *r == 0).and_then(|_| a.checked_div(b)),
        };
        if let Some(w) = whole {
            return Ok(Value::Int(w));
        }
    }
    let (a, b) = (x.as_f64(), y.as_f64());
    let r = match op {
        '+' => a + b,
        '-' => a - b,
        '*' => a * b,
        '/' => a / b,
        _ => a % b,
    };
    if !r.is_finite() {
        return Err(fail("the result is too large for a number"));
    }
    Ok(Value::Float(r))
}
