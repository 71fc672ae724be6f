use serde_json::{Value, json};

use super::*;
use crate::template::Template;
use crate::template::tests::Vars;

fn vars() -> Vars {
    Vars(json!({
        "n": 3,
        "price": 1.5,
        "name": "  Ada LOVELACE ",
        "csv": "a,b,,c",
        "deals": [
            {"name": "A", "amount": 120.5, "owner": "bo"},
            {"name": "B", "amount": 80},
            {"name": "C", "amount": 300}
        ],
        "message": {"text": "Order 42 please"},
        "contact": {"id": "c1", "country": "FR"},
        "when": "2026-12-07T10:00:00Z"
    }))
}

fn eval(source: &str) -> Value {
    let e = Expression::parse(source).unwrap_or_else(|err| panic!("{source}: {err}"));
    e.eval(&vars()).unwrap_or_else(|err| panic!("{source}: {err}"))
}

fn eval_err(source: &str, scope: &Vars) -> String {
    let e = Expression::parse(source).unwrap_or_else(|err| panic!("{source}: {err}"));
    e.eval(scope).expect_err(source).to_string()
}

fn parse_err(source: &str) -> ExprError {
    Expression::parse(source).expect_err(source)
}

#[test]
fn numbers_follow_json_not_cel_integer_rules() {
    assert_eq!(eval("n + 1"), json!(4));
    assert_eq!(eval("n * 1.5"), json!(4.5));
    assert_eq!(eval("price * 2"), json!(3), "a whole result is a whole number");
    assert_eq!(eval("7 / 2"), json!(3.5));
    assert_eq!(eval("6 / 2"), json!(3));
    assert_eq!(eval("n % 2"), json!(1));
    assert_eq!(eval("-n"), json!(-3));
    assert_eq!(eval("n == 3.0"), json!(true));
    assert!(eval_err("n / 0", &vars()).contains("divides by zero"));
    assert!(eval_err("9223372036854775807 * 9223372036854775807 * 1e308 * 10", &vars()).contains("too large"));
}

#[test]
fn text_functions() {
    assert_eq!(eval("name.trim().lower()"), json!("ada lovelace"));
    assert_eq!(eval("name.trim().upper()"), json!("ADA LOVELACE"));
    assert_eq!(eval("csv.split(',')"), json!(["a", "b", "", "c"]));
    assert_eq!(eval("csv.split(',').filter(s, s != '').join(' / ')"), json!("a / b / c"));
    assert_eq!(eval("csv.replace(',', ';')"), json!("a;b;;c"));
    assert_eq!(eval("'total: ' + string(n)"), json!("total: 3"));
    assert_eq!(eval("message.text.matches('[0-9]+')"), json!(true));
    assert_eq!(eval("price.formatNumber(2)"), json!("1.50"));
    assert_eq!(eval("[1, 'a', 2.5, null].join()"), json!("1a2.5"));
}

#[test]
fn lists_and_macros() {
    assert_eq!(eval("deals.filter(d, d.amount > 100).map(d, d.name)"), json!(["A", "C"]));
    assert_eq!(eval("deals.map(d, d.amount).sum()"), json!(500.5));
    assert_eq!(eval("deals.size()"), json!(3));
    assert_eq!(eval("size(deals)"), json!(3));
    assert_eq!(eval("deals.first().name"), json!("A"));
    assert_eq!(eval("deals.last().name"), json!("C"));
    assert_eq!(eval("[].first()"), Value::Null);
    assert_eq!(eval("deals.map(d, d.amount).sort()"), json!([80, 120.5, 300]));
    assert_eq!(eval("deals.sortBy(d, -d.amount).map(d, d.name)"), json!(["C", "A", "B"]));
    assert_eq!(eval("deals.exists(d, d.name == 'B')"), json!(true));
    assert_eq!(eval("deals.all(d, d.amount > 50)"), json!(true));
    assert_eq!(eval("math.greatest(deals.map(d, d.amount))"), json!(300));
    assert_eq!(
        eval("{'count': deals.size(), 'names': deals.map(d, d.name)}"),
        json!({"count": 3, "names": ["A", "B", "C"]})
    );
}

#[test]
fn missing_values_read_as_null_and_optional_fields_have_defaults() {
    assert_eq!(eval("nothing == null"), json!(true));
    assert_eq!(eval("deals.map(d, d.?owner.orValue('nobody'))"), json!(["bo", "nobody", "nobody"]));
    assert_eq!(eval("has(deals[0].owner) && !has(deals[1].owner)"), json!(true));
    let err = eval_err("deals[1].owner", &vars());
    assert!(err.contains("`owner`, which is not there"), "{err}");
    let err = eval_err("nothing.field", &vars());
    assert!(err.contains("reads a field of something that is null"), "{err}");
    let err = eval_err("deals[7]", &vars());
    assert!(err.contains("index 7 is outside the list"), "{err}");
}

#[test]
fn times_and_zones() {
    assert_eq!(eval("timestamp(when).formatTime('%d/%m/%Y %H:%M', 'Europe/Paris')"), json!("07/12/2026 11:00"));
    assert_eq!(eval("when.formatTime('%H:%M')"), json!("10:00"));
    assert_eq!(eval("timestamp(when).getHours('America/New_York')"), json!(5));
    assert_eq!(eval("timestamp(when) + duration('90m')"), json!("2026-12-07T11:30:00+00:00"));
    assert!(eval_err("when.formatTime('%H', 'Mars/Olympus')", &vars()).contains("not a time zone"));
    assert!(eval_err("when.formatTime('%Q')", &vars()).contains("not a valid layout"));
}

#[test]
fn conditions_must_give_booleans() {
    let e = Expression::parse("contact.country == 'FR' && n >= 3").unwrap();
    assert_eq!(e.kind(), Kind::Bool);
    assert!(e.holds(&vars()).unwrap());
    let e = Expression::parse("deals.first()").unwrap();
    let err = e.holds(&vars()).unwrap_err().to_string();
    assert!(err.contains("must give true or false"), "{err}");
}

#[test]
fn what_an_expression_reads_is_known_at_load() {
    let e = Expression::parse("order.lines.filter(l, l.qty > 0).size() > 0 && message.text.contains('x')").unwrap();
    let refs: Vec<&str> = e.refs().iter().map(|r| r.raw.as_str()).collect();
    assert_eq!(refs, ["order.lines", "message.text"]);
    let t = Template::parse("Total: {{ n * 2 }} for {{ deals.map(d, d.name).join(', ') }}").unwrap();
    assert_eq!(t.render(&vars()).unwrap(), "Total: 6 for A, B, C");
    let names: Vec<&str> = t.vars().map(|v| v.raw.as_str()).collect();
    assert_eq!(names, ["n", "deals"], "the macro's own `d` is not a flow variable");
    let t = Template::parse("{{ deals.map(d, d.amount) }}").unwrap();
    assert_eq!(t.render_value(&vars()).unwrap(), json!([120.5, 80, 300]), "one expression keeps its JSON type");
}

#[test]
fn syntax_errors_say_what_and_where() {
    let err = parse_err("n +").to_string();
    assert!(err.contains("ends too early") && err.contains("character"), "{err}");
    assert!(parse_err("'abc").to_string().contains("quote is never closed"));
    let err = parse_err("n n").to_string();
    assert!(err.contains("unexpected `n`") && err.contains("character 3"), "{err}");
    assert!(matches!(parse_err(""), ExprError::Syntax { .. }));
}

#[test]
fn functions_are_checked_at_load() {
    let err = parse_err("name.lowr()").to_string();
    assert!(err.contains("no function `lowr`") && err.contains("did you mean `lower`"), "{err}");
    assert!(parse_err("name.replace('a')").to_string().contains("takes 2 argument(s), not 1"));
    assert!(parse_err("lower(name)").to_string().contains("write `x.lower(…)`"));
    assert!(parse_err("lists.range(1000000)").to_string().contains("no function `range`"));
    assert!(parse_err("name.matches(pattern)").to_string().contains("quoted pattern"));
    assert!(parse_err("name.matches('(')").to_string().contains("invalid regular expression"));
}

#[test]
fn types_are_checked_where_known() {
    for (source, words) in [
        ("'a' - 1", "cannot combine a text and a number"),
        ("'total: ' + 3", "string(x)"),
        ("deals.size() > 'x'", "compares a number with a text"),
        ("'1' == 1", "never equal"),
        ("!'yes'", "one side is a text"),
        ("(1 > 2) + 1", "cannot combine true/false and a number"),
        ("'abc'.sum()", "is called on a list, not on a text"),
        ("3.lower()", "not on a number"),
        ("'abc'.field", "before it is a text"),
        ("[1, 2]['a']", "indexed by a number"),
        ("1 ? 2 : 3", "before `?` must be true/false"),
        ("(3).map(x, x)", "goes over a list"),
    ] {
        let err = parse_err(source);
        assert!(matches!(err, ExprError::Type { .. }), "{source}: {err:?}");
        assert!(err.to_string().contains(words), "{source}: {err}");
    }
    // Unknown types pass the checks and are checked when the expression runs.
    let err = eval_err("name - 1", &vars());
    assert!(err.contains("cannot subtract a text and a number"), "{err}");
}

#[test]
fn secrets_and_integrations_cannot_be_read() {
    for source in ["secrets.API_KEY.upper()", "integration.zoho.api_domain + '/x'"] {
        assert!(matches!(parse_err(source), ExprError::NotAllowed { .. }), "{source}");
    }
}

#[test]
fn size_and_nesting_are_bounded_at_load() {
    assert!(matches!(parse_err(&"n + ".repeat(300)), ExprError::TooLong { .. }));
    let deep = format!("{}1{}", "(".repeat(40), ")".repeat(40));
    assert!(matches!(parse_err(&deep), ExprError::TooDeep { .. }));
    let chain = format!("n{}", " + n".repeat(40));
    assert!(matches!(parse_err(&chain), ExprError::TooDeep { .. }), "a long left-deep chain is deep too");
    let loops = "deals.map(a, deals.map(b, deals.map(c, deals.map(d, 1))))";
    assert!(parse_err(loops).to_string().contains("inside each other"));
    assert!(Expression::parse("deals.map(a, deals.map(b, deals.map(c, 1)))").is_ok());
}

#[test]
fn work_is_bounded_at_run_time() {
    let items: Vec<Value> = (0..1000).map(Value::from).collect();
    let big = "x".repeat(512 * 1024);
    let scope = Vars(json!({"items": items, "big": big, "small": "y".repeat(100 * 1024)}));
    let err = eval_err("items.map(a, items.map(b, b).size()).sum()", &scope);
    assert!(err.contains("more than 100000 list items"), "{err}");
    let err = eval_err("items.map(a, big + big).size()", &scope);
    assert!(err.contains("more than 16 MiB of text"), "{err}");
    let err = eval_err("items.map(a, small)", &scope);
    assert!(err.contains("larger than 1048576 bytes"), "{err}");
    let err = eval_err("items.map(a, small).join()", &scope);
    assert!(err.contains("more than 16 MiB of text"), "{err}");
    let err = eval_err("big.replace('x', big)", &scope);
    assert!(err.contains("more than 16 MiB of text"), "{err}");
    // Within the bounds the same shapes work.
    assert_eq!(Expression::parse("items.map(a, a * 2).sum()").unwrap().eval(&scope).unwrap(), json!(999_000));
}

#[test]
fn with_one_side_unknown_the_known_side_is_named() {
    for (source, words) in [
        ("n * 'price'", "`*` works on numbers (and times and durations); one side is a text"),
        ("n + true", "`+` adds numbers, texts, lists or a duration to a time; one side is true/false"),
        ("n + {'a': 1}", "one side is an object"),
    ] {
        let err = parse_err(source).to_string();
        assert!(err.contains(words), "{source}: {err}");
    }
    assert!(Expression::parse("n + 1").is_ok() && Expression::parse("name + '!'").is_ok());
}

#[test]
fn a_text_that_holds_a_number_counts_as_one_beside_a_number() {
    let scope = Vars(json!({"qty": "150", "word": "many", "n": 3, "message": {"text": "7"}}));
    let yes = |s: &str| Expression::parse(s).unwrap().eval(&scope).unwrap();
    assert_eq!(yes("qty >= 100"), json!(true));
    assert_eq!(yes("qty == 150 && 150 == qty && qty != 151"), json!(true));
    assert_eq!(yes("qty * 2"), json!(300));
    assert_eq!(yes("qty + '!'"), json!("150!"), "`+` with a text joins texts");
    assert_eq!(yes("message.text > 10"), json!(false), "message.text is a text that may hold a number");
    assert_eq!(yes("'10' < '9'"), json!(true), "two texts compare as texts");
    let err = eval_err("word > 3", &scope);
    assert!(err.contains("the text `many`") && err.contains("does not hold a number"), "{err}");
    let err = eval_err("qty + 1", &scope);
    assert!(err.contains("`+` joins texts") && err.contains("double(t)"), "{err}");
    assert!(matches!(parse_err("'abc' > 3"), ExprError::Type { .. }), "a quoted literal never holds a number later");
}

#[test]
fn namespaced_and_literal_and_familiar_names() {
    assert_eq!(eval("math.round(2.5) + math.floor(price) + math.abs(-2)"), json!(6));
    for (template, value) in
        [("{{ 0 }}", json!(0)), ("{{ true }}", json!(true)), ("{{ null }}", Value::Null), ("{{ 2.5 }}", json!(2.5))]
    {
        assert_eq!(Template::parse(template).unwrap().render_value(&vars()).unwrap(), value, "{template}");
    }
    for (source, hint) in
        [("name.length()", "write `x.size()`"), ("name.toUpperCase()", "write `x.upper()`"), ("now()", "no clock")]
    {
        let err = parse_err(source).to_string();
        assert!(err.contains(hint), "{source}: {err}");
    }
    assert_eq!(eval("timestamp(0)"), json!("1970-01-01T00:00:00+00:00"));
}

#[test]
fn format_number_rounds_halves_up_as_written() {
    for (n, d, text) in [
        (0.125, 2, "0.13"),
        (2.675, 2, "2.68"),
        (-0.001, 2, "0.00"),
        (-1.5, 0, "-2"),
        (9.995, 2, "10.00"),
        (1234.5, 0, "1235"),
        (7.0, 3, "7.000"),
        (1e21, 1, "1000000000000000000000.0"),
    ] {
        let scope = Vars(json!({"n": n}));
        let got = Expression::parse(&format!("n.formatNumber({d})")).unwrap().eval(&scope).unwrap();
        assert_eq!(got, json!(text), "{n} with {d}");
    }
}

#[test]
fn habits_of_other_languages_get_a_hint() {
    for (source, hint) in [
        ("n = 3", "compare with `==`"),
        ("n === 3", "compare with `==` and `!=`"),
        ("n > 1 and n < 5", "`&&`"),
        ("{{ n > 1 }}", "without `{{ }}`"),
        ("{'a': {'b': 1", "write `} }`"),
    ] {
        let err = parse_err(source).to_string();
        assert!(err.contains(hint), "{source}: {err}");
    }
}

#[test]
fn values_holding_a_secret_are_not_transformed() {
    crate::secrets::known::remember_str("expr-test-secret-6f1c2a");
    let scope =
        Vars(json!({"k": "expr-test-secret-6f1c2a", "wrapped": {"h": ["Bearer expr-test-secret-6f1c2a"]}, "n": 1}));
    for source in ["k.upper()", "wrapped.h[0].size()", "k.startsWith('expr')"] {
        let err = eval_err(source, &scope);
        assert!(err.contains("holds a secret's value"), "{source}: {err}");
    }
    assert_eq!(Expression::parse("n + 1").unwrap().eval(&scope).unwrap(), json!(2), "other values still work");
    let transform = Expression::parse_with_locals("value.upper()", &["value"]).unwrap();
    let err = transform.eval_with_locals(&vars(), &[("value", &json!("expr-test-secret-6f1c2a"))]).unwrap_err();
    assert!(err.to_string().contains("holds a secret"), "{err}");
}

#[test]
fn deep_values_and_copies_are_bounded() {
    let mut deep = json!(1);
    for _ in 0..100 {
        deep = json!([deep]);
    }
    let list: Vec<i64> = (0..50_000).collect();
    let scope = Vars(json!({"deep": deep, "xs": list, "a": list, "n": 1}));
    let err = eval_err("deep.size()", &scope);
    assert!(err.contains("nested more than 64 levels"), "{err}");
    let wrap = format!("{}n{}", "[".repeat(30), "]".repeat(30));
    let mut value = json!(1);
    for _ in 0..3 {
        value = Expression::parse(&wrap).unwrap().eval(&Vars(json!({"n": value}))).unwrap_or(json!(null));
    }
    assert_eq!(value, Value::Null, "a result nested too deeply is refused before it is stored");
    let many = format!("[{}].flatten().size()", vec!["a"; 400].join(","));
    // Whichever bound stops it first (the copies, or in a debug build the time backstop).
    let stopped = |err: String| err.contains("more than 16 MiB") || err.contains("was stopped");
    assert!(stopped(eval_err(&many, &scope)), "flatten copies count");
    let reversed = format!("[{}].map(l, l.reverse().size()).sum()", vec!["a"; 400].join(","));
    assert!(stopped(eval_err(&reversed, &scope)), "reverse copies count");
    assert_eq!(Expression::parse("xs.distinct().size()").unwrap().eval(&scope).unwrap(), json!(50_000));
    assert_eq!(eval("[1, 1.0, 2, 'a', 'a', [1], [1]].distinct()"), json!([1, 2, "a", [1]]));
    assert_eq!(eval("[[1, [2]], [3]].flatten()"), json!([1, [2], 3]));
    assert_eq!(eval("[[1, [2]], [3]].flatten(2)"), json!([1, 2, 3]));
    assert_eq!(eval("csv.split(',').filter(s, s.matches('^[a-c]$')).size()"), json!(3));
}

#[test]
fn run_time_errors_never_quote_whole_values_or_rust_types() {
    let scope = Vars(json!({"n": 5, "o": {"a": 1}, "xs": vec!["x".repeat(100); 10_000]}));
    for source in ["n.lower()", "o.sum()", "xs.lower()"] {
        let err = eval_err(source, &scope);
        assert!(err.len() < 500 && !err.contains("Arc<") && !err.contains("Int(5)"), "{source}: {err}");
    }
}
