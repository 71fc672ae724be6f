//! Load-time checks of an expression's tree: its depth, the functions it calls and their
//! arguments, the names it reads, and the types wherever they are known. It also rewrites the
//! tree for Tern's run-time rules: arithmetic goes through JSON-number operators and every
//! macro's list through the iteration budget (see `functions`).

use cel::IdedExpr;
use cel::common::ast::{CallExpr, ComprehensionExpr, EntryExpr, Expr, LiteralValue, operators};

use super::{ExprError, MAX_DEPTH, MAX_LOOPS};
use crate::diagnostics::nearest;
use crate::template::{Root, VarRef};

/// What a value is, as far as the checks can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A number (JSON has one number type).
    Number,
    /// A text.
    Text,
    /// `true` or `false`.
    Bool,
    /// A list.
    List,
    /// An object (a map).
    Object,
    /// `null`.
    Null,
    /// A point in time (`timestamp('2026-12-07T10:00:00Z')`).
    Time,
    /// A duration (`duration('90m')`).
    Duration,
    /// Not known before the run (a variable, a list item).
    Any,
}

impl Kind {
    /// The kind in a flow designer's words, with its article.
    pub fn words(self) -> &'static str {
        match self {
            Kind::Number => "a number",
            Kind::Text => "a text",
            Kind::Bool => "true/false",
            Kind::List => "a list",
            Kind::Object => "an object",
            Kind::Null => "null",
            Kind::Time => "a time",
            Kind::Duration => "a duration",
            Kind::Any => "a value",
        }
    }

    fn is(self, wanted: &[Kind]) -> bool {
        self == Kind::Any || wanted.contains(&self)
    }
}

/// A function expressions may call.
#[derive(Debug)]
pub struct Function {
    /// Its name as written.
    pub name: &'static str,
    /// What it is called on (`text.lower()`), or `None` for a global function (`size(x)`).
    pub on: Option<&'static [Kind]>,
    /// The kinds of its arguments, in order; the last `optional` of them may be left out.
    pub args: &'static [&'static [Kind]],
    /// How many of the last arguments may be left out.
    pub optional: usize,
    /// What it returns.
    pub returns: Kind,
    /// A few words for the docs and hints.
    pub doc: &'static str,
}

const T: &[Kind] = &[Kind::Text];
const N: &[Kind] = &[Kind::Number];
const L: &[Kind] = &[Kind::List];
const A: &[Kind] = &[
    Kind::Any,
    Kind::Number,
    Kind::Text,
    Kind::Bool,
    Kind::List,
    Kind::Object,
    Kind::Null,
    Kind::Time,
    Kind::Duration,
];
const SIZED: &[Kind] = &[Kind::Text, Kind::List, Kind::Object];
const TIME: &[Kind] = &[Kind::Time];
const TIME_OR_TEXT: &[Kind] = &[Kind::Time, Kind::Text];
const TIME_OR_TEXT_OR_NUMBER: &[Kind] = &[Kind::Time, Kind::Text, Kind::Number];

const fn f(
    name: &'static str,
    on: Option<&'static [Kind]>,
    args: &'static [&'static [Kind]],
    optional: usize,
    returns: Kind,
    doc: &'static str,
) -> Function {
    Function { name, on, args, optional, returns, doc }
}

/// Every function an expression may call (CEL's standard ones Tern offers, and Tern's own).
pub static FUNCTIONS: &[Function] = &[
    f("size", Some(SIZED), &[], 0, Kind::Number, "characters of a text, items of a list or object"),
    f("size", None, &[SIZED], 0, Kind::Number, "size(x): the same as x.size()"),
    f("contains", Some(T), &[T], 0, Kind::Bool, "text.contains('x')"),
    f("startsWith", Some(T), &[T], 0, Kind::Bool, "text.startsWith('x')"),
    f("endsWith", Some(T), &[T], 0, Kind::Bool, "text.endsWith('x')"),
    f("matches", Some(T), &[T], 0, Kind::Bool, "text.matches('^[0-9]+$'), a literal regular expression"),
    f("lower", Some(T), &[], 0, Kind::Text, "text in lower case"),
    f("upper", Some(T), &[], 0, Kind::Text, "text in upper case"),
    f("trim", Some(T), &[], 0, Kind::Text, "text without leading and trailing white space"),
    f("replace", Some(T), &[T, T], 0, Kind::Text, "text.replace('old', 'new'), every occurrence"),
    f("split", Some(T), &[T], 0, Kind::List, "text.split(','), a list of texts"),
    f("join", Some(L), &[T], 1, Kind::Text, "list.join(', ')"),
    f("sum", Some(L), &[], 0, Kind::Number, "the sum of a list of numbers"),
    f("first", Some(L), &[], 0, Kind::Any, "the first item, or null for an empty list"),
    f("last", Some(L), &[], 0, Kind::Any, "the last item, or null for an empty list"),
    f("sort", Some(L), &[], 0, Kind::List, "numbers or texts in ascending order"),
    f("reverse", Some(L), &[], 0, Kind::List, "the items in reverse order"),
    f("distinct", Some(L), &[], 0, Kind::List, "the items without repeats"),
    f("flatten", Some(L), &[N], 1, Kind::List, "lists inside the list spliced in"),
    f("slice", Some(L), &[N, N], 0, Kind::List, "list.slice(from, to), to excluded"),
    f("formatNumber", Some(N), &[N], 0, Kind::Text, "number.formatNumber(2): fixed decimals"),
    f("formatTime", Some(TIME_OR_TEXT), &[T, T], 1, Kind::Text, "time.formatTime('%d/%m/%Y %H:%M', 'Europe/Paris')"),
    f("int", None, &[A], 0, Kind::Number, "a whole number from a number or a text"),
    f("double", None, &[A], 0, Kind::Number, "a number from a number or a text"),
    f("string", None, &[A], 0, Kind::Text, "the text of a value"),
    f("bool", None, &[A], 0, Kind::Bool, "true/false from 'true'/'false'"),
    f(
        "timestamp",
        None,
        &[TIME_OR_TEXT_OR_NUMBER],
        0,
        Kind::Time,
        "timestamp('2026-12-07T10:00:00Z'), or seconds since 1970",
    ),
    f("duration", None, &[T], 0, Kind::Duration, "duration('1h30m')"),
    f("getFullYear", Some(TIME), &[T], 1, Kind::Number, "year, optionally in a time zone"),
    f("getMonth", Some(TIME), &[T], 1, Kind::Number, "month, 0 for January"),
    f("getDayOfMonth", Some(TIME), &[T], 1, Kind::Number, "day of the month, 0 for the first"),
    f("getDate", Some(TIME), &[T], 1, Kind::Number, "day of the month, 1 for the first"),
    f("getDayOfWeek", Some(TIME), &[T], 1, Kind::Number, "day of the week, 0 for Sunday"),
    f("getDayOfYear", Some(TIME), &[T], 1, Kind::Number, "day of the year, 0 for 1 January"),
    f("getHours", Some(TIME), &[T], 1, Kind::Number, "hour, optionally in a time zone"),
    f("getMinutes", Some(TIME), &[T], 1, Kind::Number, "minutes"),
    f("getSeconds", Some(TIME), &[T], 1, Kind::Number, "seconds"),
    f("orValue", Some(A), &[A], 0, Kind::Any, "x.?field.orValue(default)"),
    f("hasValue", Some(A), &[], 0, Kind::Bool, "x.?field.hasValue()"),
    f("math.greatest", None, &[A], 0, Kind::Number, "the largest of a list of numbers"),
    f("math.least", None, &[A], 0, Kind::Number, "the smallest of a list of numbers"),
    f("math.round", None, &[N], 0, Kind::Number, "rounded to the nearest whole number"),
    f("math.ceil", None, &[N], 0, Kind::Number, "rounded up"),
    f("math.floor", None, &[N], 0, Kind::Number, "rounded down"),
    f("math.abs", None, &[N], 0, Kind::Number, "without its sign"),
];

/// Function namespaces (`math.round`): a call on one of these names is a global function.
const NAMESPACES: &[&str] = &["math"];

/// The flow roots an expression may read besides variables.
const ROOTS: &[(&str, Root)] = &[
    ("message", Root::Message),
    ("contact", Root::Contact),
    ("conversation", Root::Conversation),
    ("event", Root::Event),
];

/// The run-time operator each arithmetic or comparison operator becomes (`functions`
/// implements them: JSON numbers, and texts that hold numbers).
pub(super) const OPERATORS: &[(&str, &str)] = &[
    (operators::ADD, "@add"),
    (operators::SUBSTRACT, "@sub"),
    (operators::MULTIPLY, "@mul"),
    (operators::DIVIDE, "@div"),
    (operators::MODULO, "@mod"),
    (operators::EQUALS, "@eq"),
    (operators::NOT_EQUALS, "@ne"),
    (operators::LESS, "@lt"),
    (operators::LESS_EQUALS, "@le"),
    (operators::GREATER, "@gt"),
    (operators::GREATER_EQUALS, "@ge"),
];

/// Names people bring from JavaScript or Python, and what to write instead.
const FAMILIAR: &[(&str, &str)] = &[
    ("length", "write `x.size()`"),
    ("lenght", "write `x.size()`"),
    ("len", "write `x.size()`"),
    ("count", "write `x.size()`"),
    ("toUpperCase", "write `x.upper()`"),
    ("toLowerCase", "write `x.lower()`"),
    ("toUpper", "write `x.upper()`"),
    ("toLower", "write `x.lower()`"),
    ("includes", "write `x.contains(y)`, or `y in list`"),
    ("indexOf", "write `x.contains(y)`, or `y in list`"),
    ("strip", "write `x.trim()`"),
    ("round", "write `math.round(x)`"),
    ("max", "write `math.greatest(list)`"),
    ("min", "write `math.least(list)`"),
    ("now", "expressions have no clock; take the time from the message, an API answer or a variable"),
];

/// Standard functions that run as Tern's own, for JSON numbers (`sort` of `[80, 120.5]`).
/// Also those that copy or search, so that their work counts against the evaluation's budget
/// (`flatten`, `reverse`, `distinct`) and a pattern is compiled once (`matches`).
const OVERRIDES: &[(&str, &str)] = &[
    ("sort", "@sort"),
    ("flatten", "@flatten"),
    ("reverse", "@reverse"),
    ("distinct", "@distinct"),
    ("matches", "@matches"),
];

/// The run-time function that charges a macro's list to the iteration budget.
pub(super) const ITERATE: &str = "@iterate";

/// A checked, rewritten tree.
pub(super) struct Checked {
    pub ast: IdedExpr,
    pub refs: Vec<VarRef>,
    pub kind: Kind,
}

struct Checker<'s> {
    source: &'s str,
    /// Names bound by the macros around the node (`d` in `deals.map(d, …)`, `@result`).
    locals: Vec<String>,
    loops: usize,
    refs: Vec<VarRef>,
}

/// Checks `ast`; `locals` are names the caller binds itself (`value` in a mapping's
/// `transform`), read as values of any kind and not recorded as flow references.
pub(super) fn check(source: &str, mut ast: IdedExpr, locals: &[&str]) -> Result<Checked, ExprError> {
    let depth = depth(&ast);
    if depth > MAX_DEPTH {
        return Err(ExprError::TooDeep {
            expression: source.into(),
            what: format!("{depth} levels; the limit is {MAX_DEPTH}"),
        });
    }
    let locals = locals.iter().map(|l| l.to_string()).collect();
    let mut checker = Checker { source, locals, loops: 0, refs: Vec::new() };
    let kind = checker.expr(&mut ast)?;
    Ok(Checked { ast, refs: checker.refs, kind })
}

fn depth(e: &IdedExpr) -> usize {
    1 + children(e).into_iter().map(depth).max().unwrap_or(0)
}

fn children(e: &IdedExpr) -> Vec<&IdedExpr> {
    match &e.expr {
        Expr::Call(c) => c.target.iter().map(|t| t.as_ref()).chain(c.args.iter()).collect(),
        Expr::Select(s) => vec![&s.operand],
        Expr::List(l) => l.elements.iter().collect(),
        Expr::Map(m) => m
            .entries
            .iter()
            .flat_map(|entry| match &entry.expr {
                EntryExpr::MapEntry(me) => vec![&me.key, &me.value],
                EntryExpr::StructField(sf) => vec![&sf.value],
            })
            .collect(),
        Expr::Comprehension(c) => vec![&c.iter_range, &c.accu_init, &c.loop_cond, &c.loop_step, &c.result],
        Expr::Struct(s) => s
            .entries
            .iter()
            .map(|entry| match &entry.expr {
                EntryExpr::MapEntry(me) => &me.value,
                EntryExpr::StructField(sf) => &sf.value,
            })
            .collect(),
        _ => Vec::new(),
    }
}

impl Checker<'_> {
    fn type_error(&self, message: String) -> ExprError {
        ExprError::Type { expression: self.source.into(), message }
    }

    fn not_allowed(&self, message: String) -> ExprError {
        ExprError::NotAllowed { expression: self.source.into(), message }
    }

    fn expr(&mut self, e: &mut IdedExpr) -> Result<Kind, ExprError> {
        // A chain of field selections on a flow root is one reference (`order.lines`).
        if let Some(kind) = self.reference(e)? {
            return Ok(kind);
        }
        match &mut e.expr {
            Expr::Literal(l) => Ok(match l {
                LiteralValue::Boolean(_) => Kind::Bool,
                LiteralValue::Int(_) | LiteralValue::UInt(_) | LiteralValue::Double(_) => Kind::Number,
                LiteralValue::String(_) => Kind::Text,
                LiteralValue::Null => Kind::Null,
                LiteralValue::Bytes(_) => {
                    return Err(self.not_allowed("bytes literals (`b'…'`) have no JSON form; write a text".into()));
                }
            }),
            Expr::Ident(name) => {
                // Only locals reach here: `reference` handled every other name.
                let _ = name;
                Ok(Kind::Any)
            }
            Expr::Select(s) => {
                let kind = self.expr(&mut s.operand)?;
                if !kind.is(&[Kind::Object]) {
                    return Err(self.type_error(format!(
                        "`.{}` reads a field, but what comes before it is {}",
                        s.field,
                        kind.words()
                    )));
                }
                Ok(if s.test { Kind::Bool } else { Kind::Any })
            }
            Expr::List(l) => {
                for item in &mut l.elements {
                    self.expr(item)?;
                }
                Ok(Kind::List)
            }
            Expr::Map(m) => {
                for entry in &mut m.entries {
                    match &mut entry.expr {
                        EntryExpr::MapEntry(me) => {
                            let key = self.expr(&mut me.key)?;
                            if !key.is(&[Kind::Text]) {
                                return Err(
                                    self.type_error(format!("an object's keys are texts; this key is {}", key.words()))
                                );
                            }
                            self.expr(&mut me.value)?;
                        }
                        EntryExpr::StructField(_) => {
                            return Err(self.not_allowed(
                                "message types are not available; write an object `{'key': value}`".into(),
                            ));
                        }
                    }
                }
                Ok(Kind::Object)
            }
            Expr::Struct(s) => Err(self.not_allowed(format!(
                "`{}{{…}}` builds a message type, which expressions do not have; write an object `{{'key': value}}`",
                s.type_name
            ))),
            Expr::Comprehension(c) => self.comprehension(c),
            Expr::Call(_) => self.call(e),
            Expr::Unspecified => Err(self.not_allowed("an empty expression".into())),
        }
    }

    /// When `e` is a flow root or fields of one (`message.text`, `order.lines`), records the
    /// reference and returns its kind. Locals and non-references give `None`.
    fn reference(&mut self, e: &IdedExpr) -> Result<Option<Kind>, ExprError> {
        let mut path = Vec::new();
        let mut node = e;
        loop {
            match &node.expr {
                Expr::Select(s) if !s.test => {
                    path.push(s.field.clone());
                    node = &s.operand;
                }
                Expr::Ident(name) => {
                    if self.locals.iter().any(|l| l == name) {
                        return Ok(None);
                    }
                    path.push(name.clone());
                    path.reverse();
                    return self.root(path).map(Some);
                }
                _ => return Ok(None),
            }
        }
    }

    fn root(&mut self, path: Vec<String>) -> Result<Kind, ExprError> {
        let name = path[0].as_str();
        if name == "secrets" || name == "integration" {
            return Err(self.not_allowed(format!(
                "expressions cannot read `{name}`; use `{{{{{name}.…}}}}` on its own in a request field, where Tern keeps it out of replies"
            )));
        }
        let raw = path.join(".");
        let var = VarRef::parse(&raw).map_err(|message| self.not_allowed(message))?;
        let kind = match ROOTS.iter().find(|(n, _)| *n == name) {
            Some((_, Root::Message)) if path.len() == 2 && path[1] == "text" => Kind::Text,
            Some(_) if path.len() == 1 => Kind::Object,
            _ => Kind::Any,
        };
        self.refs.push(var);
        Ok(kind)
    }

    fn comprehension(&mut self, c: &mut ComprehensionExpr) -> Result<Kind, ExprError> {
        let range = self.expr(&mut c.iter_range)?;
        if !range.is(&[Kind::List, Kind::Object]) {
            return Err(self
                .type_error(format!("a macro such as `map` or `filter` goes over a list; this is {}", range.words())));
        }
        self.loops += 1;
        if self.loops > MAX_LOOPS {
            return Err(ExprError::TooDeep {
                expression: self.source.into(),
                what: format!("more than {MAX_LOOPS} of `map`, `filter`, `all`, `exists` inside each other"),
            });
        }
        let accu = self.expr(&mut c.accu_init)?;
        self.locals.push(c.accu_var.clone());
        self.locals.push(c.iter_var.clone());
        if let Some(second) = &c.iter_var2 {
            self.locals.push(second.clone());
        }
        let pushed = 2 + usize::from(c.iter_var2.is_some());
        let result = (|| {
            self.expr(&mut c.loop_cond)?;
            self.expr(&mut c.loop_step)?;
            let result = self.expr(&mut c.result)?;
            // The result is usually the accumulator, whose kind is the initial value's.
            Ok(match &c.result.expr {
                Expr::Ident(n) if *n == c.accu_var => accu,
                _ => result,
            })
        })();
        self.locals.truncate(self.locals.len() - pushed);
        self.loops -= 1;
        // Every item the macro visits counts against the run-time budget.
        let range = std::mem::take(&mut c.iter_range);
        c.iter_range = IdedExpr {
            id: range.id,
            expr: Expr::Call(CallExpr { func_name: ITERATE.into(), target: None, args: vec![range] }),
        };
        result
    }

    fn call(&mut self, e: &mut IdedExpr) -> Result<Kind, ExprError> {
        let Expr::Call(call) = &mut e.expr else { return Ok(Kind::Any) };
        // Calls the macros generated (`@result + [x]`, `@not_strictly_false`) are left alone.
        let generated = call.func_name.contains('@')
            || call.args.first().is_some_and(|a| matches!(&a.expr, Expr::Ident(n) if n.starts_with('@')));
        // `math.round(x)` parses as a call of `round` on `math`; it is the global `math.round`.
        if let Some(Expr::Ident(ns)) = call.target.as_deref().map(|t| &t.expr)
            && NAMESPACES.contains(&ns.as_str())
            && !self.locals.contains(ns)
        {
            call.func_name = format!("{ns}.{}", call.func_name);
            call.target = None;
        }
        let mut kinds = Vec::with_capacity(call.args.len());
        let target = match call.target.as_mut() {
            Some(t) => Some(self.expr(t)?),
            None => None,
        };
        for a in &mut call.args {
            kinds.push(self.expr(a)?);
        }
        if generated {
            if call.func_name == "@sortByAssociatedKeys" {
                call.func_name = "@sortByKeys".into();
            }
            return Ok(match call.func_name.as_str() {
                operators::NOT_STRICTLY_FALSE => Kind::Bool,
                _ => Kind::Any,
            });
        }
        let name = call.func_name.as_str();
        let op = |k: usize| kinds.get(k).copied().unwrap_or(Kind::Any);
        let kind = match name {
            operators::LOGICAL_AND | operators::LOGICAL_OR | operators::LOGICAL_NOT => {
                for k in &kinds {
                    if !k.is(&[Kind::Bool]) {
                        return Err(self.type_error(format!(
                            "`{}` combines true/false values; one side is {}",
                            symbol(name),
                            k.words()
                        )));
                    }
                }
                Kind::Bool
            }
            operators::CONDITIONAL => {
                if !op(0).is(&[Kind::Bool]) {
                    return Err(self
                        .type_error(format!("the condition before `?` must be true/false; it is {}", op(0).words())));
                }
                if op(1) == op(2) { op(1) } else { Kind::Any }
            }
            operators::EQUALS | operators::NOT_EQUALS => {
                let (a, b) = (op(0), op(1));
                let numeric = matches!((a, b), (Kind::Text, Kind::Number) | (Kind::Number, Kind::Text))
                    && !call.args.iter().any(is_text_literal);
                if a != Kind::Any && b != Kind::Any && a != b && a != Kind::Null && b != Kind::Null && !numeric {
                    return Err(self.type_error(format!(
                        "`{}` compares {} with {}, which are never equal; convert one side (`string(x)`, `int(x)`)",
                        symbol(name),
                        a.words(),
                        b.words()
                    )));
                }
                rename(call);
                Kind::Bool
            }
            operators::LESS | operators::LESS_EQUALS | operators::GREATER | operators::GREATER_EQUALS => {
                let (a, b) = (op(0), op(1));
                let ordered = [Kind::Number, Kind::Text, Kind::Time, Kind::Duration];
                for k in [a, b] {
                    if !k.is(&ordered) {
                        return Err(self.type_error(format!(
                            "`{}` compares numbers, texts or times; one side is {}",
                            symbol(name),
                            k.words()
                        )));
                    }
                }
                // A text compared with a number is read as a number when it holds one (answers
                // typed by people are texts); a quoted literal never changes, so it is refused.
                let numeric = matches!((a, b), (Kind::Text, Kind::Number) | (Kind::Number, Kind::Text))
                    && !call.args.iter().any(is_text_literal);
                if a != Kind::Any && b != Kind::Any && a != b && !numeric {
                    return Err(self.type_error(format!(
                        "`{}` compares {} with {}; convert one side (`int(x)`, `double(x)`, `string(x)`)",
                        symbol(name),
                        a.words(),
                        b.words()
                    )));
                }
                rename(call);
                Kind::Bool
            }
            operators::ADD | operators::SUBSTRACT | operators::MULTIPLY | operators::DIVIDE | operators::MODULO => {
                // A text that is not a quoted literal may hold a number (`qty * 2`).
                let computed_text =
                    |k: usize| kinds.get(k) == Some(&Kind::Text) && !call.args.get(k).is_some_and(is_text_literal);
                let (a, b) = match name {
                    operators::ADD => (op(0), op(1)),
                    _ => (
                        if computed_text(0) { Kind::Any } else { op(0) },
                        if computed_text(1) { Kind::Any } else { op(1) },
                    ),
                };
                let kind = self.arithmetic(name, a, b)?;
                rename(call);
                kind
            }
            operators::NEGATE => {
                if !op(0).is(&[Kind::Number, Kind::Duration]) {
                    return Err(self.type_error(format!("`-` negates a number; this is {}", op(0).words())));
                }
                op(0)
            }
            operators::INDEX | operators::OPT_INDEX => {
                let (on, index) = (op(0), op(1));
                if on == Kind::List && !index.is(&[Kind::Number]) {
                    return Err(self.type_error(format!(
                        "a list is indexed by a number (`items[0]`); this index is {}",
                        index.words()
                    )));
                }
                if on == Kind::Object && !index.is(&[Kind::Text]) {
                    return Err(self.type_error(format!(
                        "an object is indexed by a text (`o['key']`); this index is {}",
                        index.words()
                    )));
                }
                if !on.is(&[Kind::List, Kind::Object]) {
                    return Err(
                        self.type_error(format!("`[…]` reads an item of a list or an object; this is {}", on.words()))
                    );
                }
                Kind::Any
            }
            operators::IN => {
                if !op(1).is(&[Kind::List, Kind::Object]) {
                    return Err(
                        self.type_error(format!("`in` looks into a list or an object; this is {}", op(1).words()))
                    );
                }
                Kind::Bool
            }
            operators::OPT_SELECT => Kind::Any,
            _ => self.function(call, target, &kinds)?,
        };
        Ok(kind)
    }

    fn arithmetic(&self, name: &str, a: Kind, b: Kind) -> Result<Kind, ExprError> {
        use Kind::{Any, Duration, List, Number, Text, Time};
        let sym = symbol(name);
        let result = match (name, a, b) {
            (_, Number, Number) => Some(Number),
            (operators::ADD, Text, Text) => Some(Text),
            (operators::ADD, List, List) => Some(List),
            (operators::ADD, Time, Duration) | (operators::ADD, Duration, Time) => Some(Time),
            (operators::ADD | operators::SUBSTRACT, Duration, Duration) => Some(Duration),
            (operators::SUBSTRACT, Time, Time) => Some(Duration),
            (operators::SUBSTRACT, Time, Duration) => Some(Time),
            (_, Any, Any) => Some(Any),
            (operators::ADD, Any, k) | (operators::ADD, k, Any)
                if matches!(k, Number | Text | List | Time | Duration) =>
            {
                Some(if k == Number { Number } else { Any })
            }
            (_, Any, k) | (_, k, Any) if matches!(k, Number | Time | Duration) => {
                Some(if k == Number { Number } else { Any })
            }
            _ => None,
        };
        result.ok_or_else(|| {
            let hint = match (a, b) {
                (Text, Number) | (Number, Text) if name == operators::ADD => {
                    "; turn the number into text with `string(x)`, or the text into a number with `double(x)`"
                }
                _ => "",
            };
            // With one side unknown, name the side that is known to be wrong.
            let message = match (a, b) {
                (Any, k) | (k, Any) if name == operators::ADD => {
                    format!("`+` adds numbers, texts, lists or a duration to a time; one side is {}", k.words())
                }
                (Any, k) | (k, Any) => {
                    format!("`{sym}` works on numbers (and times and durations); one side is {}", k.words())
                }
                _ => format!("`{sym}` cannot combine {} and {}{hint}", a.words(), b.words()),
            };
            self.type_error(message)
        })
    }

    fn function(&self, call: &mut CallExpr, target: Option<Kind>, kinds: &[Kind]) -> Result<Kind, ExprError> {
        let name = call.func_name.as_str();
        let candidates: Vec<&Function> = FUNCTIONS.iter().filter(|f| f.name == name).collect();
        if candidates.is_empty() {
            let familiar = FAMILIAR.iter().find(|(n, _)| *n == name || n.to_lowercase() == name.to_lowercase());
            let hint = match (familiar, nearest(name, FUNCTIONS.iter().map(|f| f.name))) {
                (Some((_, instead)), _) => format!("; {instead}"),
                (None, Some(n)) => format!("; did you mean `{n}`?"),
                (None, None) => "; the functions are listed in the README under Expressions".into(),
            };
            return Err(ExprError::Function {
                expression: self.source.into(),
                message: format!("there is no function `{name}`{hint}"),
            });
        }
        let Some(func) = candidates.iter().find(|f| f.on.is_some() == target.is_some()) else {
            let how = match target {
                Some(_) => format!("`{name}` is not called on a value; write `{name}(…)`"),
                None => format!("`{name}` is called on a value; write `x.{name}(…)`"),
            };
            return Err(ExprError::Function { expression: self.source.into(), message: how });
        };
        let (min, max) = (func.args.len() - func.optional, func.args.len());
        if kinds.len() < min || kinds.len() > max {
            let count = if min == max { format!("{max}") } else { format!("{min} to {max}") };
            return Err(ExprError::Function {
                expression: self.source.into(),
                message: format!("`{name}` takes {count} argument(s), not {} ({})", kinds.len(), func.doc),
            });
        }
        if let (Some(on), Some(kind)) = (func.on, target)
            && !kind.is(on)
        {
            return Err(self.type_error(format!(
                "`.{name}()` is called on {}, not on {} ({})",
                on.iter().map(|k| k.words()).collect::<Vec<_>>().join(" or "),
                kind.words(),
                func.doc
            )));
        }
        for (i, (kind, wanted)) in kinds.iter().zip(func.args).enumerate() {
            if !kind.is(wanted) {
                return Err(self.type_error(format!(
                    "argument {} of `{name}` must be {}, not {} ({})",
                    i + 1,
                    wanted.iter().map(|k| k.words()).collect::<Vec<_>>().join(" or "),
                    kind.words(),
                    func.doc
                )));
            }
        }
        if name == "matches" {
            match call.args.first().map(|a| &a.expr) {
                Some(Expr::Literal(LiteralValue::String(pattern))) => {
                    let pattern: &str = pattern.inner();
                    if let Err(e) = regex::RegexBuilder::new(pattern).size_limit(1 << 20).build() {
                        return Err(ExprError::Function {
                            expression: self.source.into(),
                            message: format!("`matches` has an invalid regular expression: {e}"),
                        });
                    }
                }
                _ => {
                    return Err(ExprError::Function {
                        expression: self.source.into(),
                        message: "`matches` takes a quoted pattern (`text.matches('^[0-9]+$')`), not a value computed at run time".into(),
                    });
                }
            }
        }
        if let Some((_, ours)) = OVERRIDES.iter().find(|(n, _)| *n == name) {
            call.func_name = (*ours).into();
        }
        Ok(func.returns)
    }
}

/// Gives an operator its run-time implementation ([`OPERATORS`]).
fn rename(call: &mut CallExpr) {
    if let Some((_, to)) = OPERATORS.iter().find(|(from, _)| *from == call.func_name) {
        call.func_name = (*to).into();
    }
}

fn is_text_literal(e: &IdedExpr) -> bool {
    matches!(e.expr, Expr::Literal(LiteralValue::String(_)))
}

/// How an operator is written.
fn symbol(name: &str) -> &str {
    match name {
        operators::LOGICAL_AND => "&&",
        operators::LOGICAL_OR => "||",
        operators::LOGICAL_NOT => "!",
        operators::ADD => "+",
        operators::SUBSTRACT => "-",
        operators::MULTIPLY => "*",
        operators::DIVIDE => "/",
        operators::MODULO => "%",
        operators::EQUALS => "==",
        operators::NOT_EQUALS => "!=",
        operators::LESS => "<",
        operators::LESS_EQUALS => "<=",
        operators::GREATER => ">",
        operators::GREATER_EQUALS => ">=",
        other => other,
    }
}
