//! `for_each` at the compiler and executor seams: passes, collected values, failures by
//! policy, bounds, a pause per item through serialized snapshots, nested loops, and the
//! compiler's checks of the body.

use serde_json::{Value, json};

use super::{codes, errors, replies, rt, start};
use crate::support::{compiled, engine, flow, input};
use tern_engine::{RunLimits, RunSnapshot, RunStatus};

/// Three contacts, as a CRM search answers.
fn contacts() -> Value {
    json!([{"id": 7, "name": "Ada"}, {"id": 9, "name": "Grace", "fail": true}, {"id": 12, "name": "Linus"}])
}

/// A loop over `contacts` whose body greets each one, failing for a contact with `fail`.
fn greeting_loop(policy: &str) -> Value {
    let mut each = json!({
        "id": "each", "type": "for_each", "items": "{{contacts}}", "item_as": "person", "index_as": "n",
        "body": "check", "collect": {"as": "greeted", "value": "{{person.name}}"}, "on_item_error": policy
    });
    if policy == "collect" {
        each["errors_as"] = json!("failures");
    }
    json!({
        "version": 1, "id": "t", "variables": {"contacts": contacts()},
        "steps": [
            each,
            {"id": "done", "type": "send_message", "text": "greeted {{greeted}}", "next": "end"},
            {"id": "check", "type": "branch", "cases": [{"when": {"var": "person.fail", "exists": true}, "next": "boom"}]},
            {"id": "hello", "type": "send_message", "text": "{{n}}: hello {{person.name}}", "next": "each"},
            {"id": "boom", "type": "fail", "code": "crm-down", "next": "each"}
        ]
    })
}

#[test]
fn a_loop_runs_its_body_per_item_and_collects() {
    let mut f = greeting_loop("skip");
    f["variables"]["contacts"] = json!([{"name": "Ada"}, {"name": "Linus"}]);
    let r = start(&engine(RunLimits::default()), &compiled(&f), "go");
    assert_eq!(r.status, RunStatus::Completed, "{:?}", r.error);
    assert_eq!(replies(&r), ["0: hello Ada", "1: hello Linus", "greeted [\"Ada\",\"Linus\"]"]);
    assert_eq!(r.variables["greeted"], json!(["Ada", "Linus"]));
}

#[test]
fn an_empty_list_runs_no_pass_and_collects_nothing() {
    let mut f = greeting_loop("stop");
    f["variables"]["contacts"] = json!([]);
    let r = start(&engine(RunLimits::default()), &compiled(&f), "go");
    assert_eq!(r.status, RunStatus::Completed, "{:?}", r.error);
    assert_eq!(replies(&r), ["greeted []"]);
}

#[test]
fn a_failing_item_stops_skips_or_is_collected_as_the_loop_says() {
    let e = engine(RunLimits::default());
    let stop = start(&e, &compiled(&greeting_loop("stop")), "go");
    assert_eq!(stop.status, RunStatus::Failed);
    assert_eq!(replies(&stop), ["0: hello Ada"]);
    let error = stop.error.unwrap();
    assert_eq!((error.step.unwrap().as_str(), error.code.as_str()), ("boom", "crm-down"));

    let skip = start(&e, &compiled(&greeting_loop("skip")), "go");
    assert_eq!(skip.status, RunStatus::Completed, "{:?}", skip.error);
    assert_eq!(replies(&skip), ["0: hello Ada", "2: hello Linus", "greeted [\"Ada\",\"Linus\"]"]);

    let collect = start(&e, &compiled(&greeting_loop("collect")), "go");
    assert_eq!(collect.status, RunStatus::Completed, "{:?}", collect.error);
    assert_eq!(collect.variables["greeted"], json!(["Ada", "Linus"]));
    let failures = collect.variables["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0]["index"], 1);
    assert_eq!(failures[0]["item"]["name"], "Grace");
    assert_eq!((failures[0]["step"].as_str(), failures[0]["code"].as_str()), (Some("boom"), Some("crm-down")));
}

#[test]
fn a_list_longer_than_max_items_or_not_a_list_fails_with_words() {
    let e = engine(RunLimits::default());
    let mut f = greeting_loop("stop");
    f["steps"][0]["max_items"] = json!(2);
    let r = start(&e, &compiled(&f), "go");
    let error = r.error.unwrap();
    assert_eq!(error.code, "too-many-items");
    assert!(error.message.contains("3 items") && error.message.contains("`max_items` is 2"), "{}", error.message);
    assert!(r.replies.is_empty(), "no item ran");

    f["variables"]["contacts"] = json!({"name": "Ada"});
    let error = start(&e, &compiled(&f), "go").error.unwrap();
    assert_eq!(error.code, "not-a-list");
    assert!(error.message.contains("must be a list, but it has name"), "{}", error.message);
}

/// "Which of these contacts is yours?" once per item, each answer through a snapshot that
/// went through JSON (a restart between every message).
#[test]
fn a_pass_may_pause_and_the_loop_goes_on_after_a_restart() {
    let f = compiled(&json!({
        "version": 1, "id": "t", "variables": {"contacts": [{"name": "Ada"}, {"name": "Grace"}, {"name": "Linus"}]},
        "steps": [
            {"id": "each", "type": "for_each", "items": "{{contacts}}", "item_as": "c", "body": "q",
             "collect": {"as": "answers", "value": {"name": "{{c.name}}", "said": "{{said}}"}}},
            {"id": "bye", "type": "send_message", "text": "thanks", "next": "end"},
            {"id": "q", "type": "ask", "text": "Is {{c.name}} you?", "save_as": "said", "next": "each"}
        ]
    }));
    let e = engine(RunLimits::default());
    let mut r = start(&e, &f, "go");
    let mut asked = replies(&r);
    for answer in ["no", "yes", "no"] {
        assert_eq!(r.status, RunStatus::Paused, "{:?}", r.error);
        let stored = serde_json::to_string(&r.snapshot.clone().unwrap()).unwrap();
        let restored: RunSnapshot = serde_json::from_str(&stored).unwrap();
        r = rt().block_on(e.resume(&f, restored, input(answer), None));
        asked.extend(replies(&r));
    }
    assert_eq!(r.status, RunStatus::Completed, "{:?}", r.error);
    assert_eq!(asked, ["Is Ada you?", "Is Grace you?", "Is Linus you?", "thanks"]);
    assert_eq!(
        r.variables["answers"],
        json!([{"name": "Ada", "said": "no"}, {"name": "Grace", "said": "yes"}, {"name": "Linus", "said": "no"}])
    );
}

#[test]
fn loops_nest_and_an_inner_failure_is_caught_by_the_innermost_catching_loop() {
    let f = compiled(&json!({
        "version": 1, "id": "t", "variables": {"rows": [[1, 2], [3]]},
        "steps": [
            {"id": "rows", "type": "for_each", "items": "{{rows}}", "item_as": "row", "index_as": "r", "body": "cells",
             "on_item_error": "collect", "errors_as": "bad_rows"},
            {"id": "end_it", "type": "send_message", "text": "rows done", "next": "end"},
            {"id": "cells", "type": "for_each", "items": "{{row}}", "item_as": "cell", "body": "say", "next": "rows",
             "collect": {"as": "seen", "value": "{{cell}}"}},
            {"id": "say", "type": "send_message", "text": "{{r}}/{{cell}}", "next": "check"},
            {"id": "check", "type": "jump_if", "var": "cell", "at_least": 3, "then": "boom"},
            {"id": "back", "type": "set_variables", "variables": {"last": "{{cell}}"}, "next": "cells"},
            {"id": "boom", "type": "fail", "code": "three", "next": "cells"}
        ]
    }));
    let r = start(&engine(RunLimits::default()), &f, "go");
    assert_eq!(r.status, RunStatus::Completed, "{:?}", r.error);
    assert_eq!(replies(&r), ["0/1", "0/2", "1/3", "rows done"]);
    let bad = r.variables["bad_rows"].as_array().unwrap();
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert_eq!((bad[0]["index"].as_u64(), bad[0]["code"].as_str()), (Some(1), Some("three")));
}

#[test]
fn the_compiler_checks_the_body() {
    let d = errors(&flow(json!([
        {"id": "each", "type": "for_each", "items": "{{list}}", "item_as": "x", "body": "say"},
        {"id": "say", "type": "send_message", "text": "{{x}}", "next": "end"}
    ])));
    let found = codes(&d);
    assert!(found.contains(&("body-never-returns", "/steps/0/body")), "{d:#?}");
    assert!(found.iter().any(|(c, _)| *c == "undefined-variable"), "`list` is set by nothing: {d:#?}");
    let never = d.iter().find(|x| x.code == "body-never-returns").unwrap();
    assert!(never.hint.as_deref().is_some_and(|h| h.contains("`next` is `each`")), "{never:?}");

    let d = errors(&flow(json!([
        {"id": "self", "type": "for_each", "items": [1], "item_as": "y", "body": "self", "next": "end"},
        {"id": "bad", "type": "for_each", "items": 3, "item_as": "z", "body": "say", "max_items": 5000,
         "on_item_error": "collect", "next": "end"},
        {"id": "say", "type": "send_message", "text": "{{z}}", "next": "bad"},
        {"id": "odd", "type": "for_each", "items": [1], "item_as": "w", "body": "end", "errors_as": "e", "next": "end"}
    ])));
    let found = codes(&d);
    for expected in [
        ("invalid-value", "/steps/0/body"),
        ("invalid-value", "/steps/1/items"),
        ("invalid-value", "/steps/1/max_items"),
        ("missing-field", "/steps/1/errors_as"),
        ("invalid-value", "/steps/3/body"),
        ("invalid-value", "/steps/3/errors_as"),
    ] {
        assert!(found.contains(&expected), "{expected:?} in {d:#?}");
    }
}

/// A loop that would go on into its own body after the last item (its body right after it and
/// no `next`) is refused; so is `items` that is text rather than a list or one placeholder.
#[test]
fn a_way_out_into_the_body_and_text_items_are_refused() {
    let d = errors(&flow(json!([
        {"id": "each", "type": "for_each", "items": "{{list}}", "item_as": "x", "body": "q"},
        {"id": "q", "type": "ask", "text": "{{x}}?", "save_as": "a", "next": "each"}
    ])));
    assert!(codes(&d).contains(&("loop-exit-in-body", "/steps/0")), "{d:#?}");
    let d = errors(&flow(json!([
        {"id": "each", "type": "for_each", "items": "{{list}}", "item_as": "x", "body": "q", "next": "q"},
        {"id": "q", "type": "ask", "text": "{{x}}?", "save_as": "a", "next": "each"}
    ])));
    assert!(codes(&d).contains(&("loop-exit-in-body", "/steps/0/next")), "{d:#?}");
    for text in ["people", "{{people}} ", "{{a}}{{b}}"] {
        let d = errors(&flow(json!([
            {"id": "each", "type": "for_each", "items": text, "item_as": "x", "body": "say", "next": "end"},
            {"id": "say", "type": "send_message", "text": "{{x}}", "next": "each"}
        ])));
        assert!(codes(&d).contains(&("invalid-value", "/steps/0/items")), "{text}: {d:#?}");
    }
}

/// A body that branches out of the loop ends it there: what was collected so far is kept, and
/// the failure a loop caught names the loop in the trace.
#[test]
fn leaving_early_keeps_what_was_collected() {
    let f = compiled(&json!({
        "version": 1, "id": "t", "variables": {"names": ["Ada", "Grace", "Linus"]},
        "steps": [
            {"id": "each", "type": "for_each", "items": "{{names}}", "item_as": "who", "body": "q",
             "collect": {"as": "seen", "value": "{{who}}"}},
            {"id": "none", "type": "send_message", "text": "nobody", "next": "end"},
            {"id": "q", "type": "ask", "text": "Is {{who}} you?", "save_as": "said"},
            {"id": "yes", "type": "branch", "cases": [{"when": {"var": "said", "equals": "yes"}, "next": "found"}], "next": "each"},
            {"id": "found", "type": "send_message", "text": "found {{who}} after {{seen}}", "next": "end"}
        ]
    }));
    let e = engine(RunLimits::default());
    let mut r = start(&e, &f, "go");
    let mut said = replies(&r);
    for answer in ["no", "yes"] {
        r = rt().block_on(e.resume(&f, r.snapshot.clone().unwrap(), input(answer), None));
        said.extend(replies(&r));
    }
    assert_eq!(r.status, RunStatus::Completed, "{:?}", r.error);
    assert_eq!(said, ["Is Ada you?", "Is Grace you?", "found Grace after [\"Ada\"]"]);

    let caught = start(&e, &compiled(&greeting_loop("skip")), "go");
    let boom = caught.trace.iter().find(|t| t.step.as_str() == "boom").unwrap();
    assert_eq!(boom.detail.get(tern_engine::CAUGHT_BY), Some(&json!("each")), "{boom:?}");
}

/// An inner loop whose body step's `on_error` goes to the outer loop: the outer loop's next pass
/// starts the inner loop anew (with the new outer item), not where it was left.
#[test]
fn an_inner_loop_left_through_on_error_starts_anew() {
    let f = compiled(&json!({
        "version": 1, "id": "t", "variables": {"outer_items": ["1", "2"]},
        "steps": [
            {"id": "outer", "type": "for_each", "items": "{{outer_items}}", "item_as": "o", "body": "inner"},
            {"id": "done", "type": "send_message", "text": "done", "next": "end"},
            {"id": "inner", "type": "for_each", "items": ["{{o}}-a", "{{o}}-b", "{{o}}-c"], "item_as": "i", "body": "say", "next": "outer"},
            {"id": "say", "type": "send_message", "text": "{{i}}", "next": "check"},
            {"id": "check", "type": "branch", "cases": [{"when": {"var": "i", "equals": "1-b"}, "next": "boom"}], "next": "inner"},
            {"id": "boom", "type": "fail", "code": "b", "on_error": "outer"}
        ]
    }));
    let r = start(&engine(RunLimits::default()), &f, "go");
    assert_eq!(r.status, RunStatus::Completed, "{:?}", r.error);
    assert_eq!(replies(&r), ["1-a", "1-b", "2-a", "2-b", "2-c", "done"]);
}

#[test]
fn a_loop_going_on_to_itself_or_naming_its_item_twice_is_refused() {
    let d = errors(&flow(json!([
        {"id": "each", "type": "for_each", "items": "{{list}}", "item_as": "x", "body": "say", "next": "each"},
        {"id": "say", "type": "send_message", "text": "{{x}}", "next": "each"}
    ])));
    assert!(codes(&d).contains(&("loop-exit-in-body", "/steps/0/next")), "{d:#?}");
    let d = errors(&flow(json!([
        {"id": "each", "type": "for_each", "items": "{{list}}", "item_as": "x", "index_as": "x", "body": "say", "next": "end"},
        {"id": "say", "type": "send_message", "text": "{{x}}", "next": "each"}
    ])));
    assert!(codes(&d).contains(&("invalid-value", "/steps/0/index_as")), "{d:#?}");
}

/// A loop is not a busy loop: no `loop-without-pause` warning for the cycle through it.
#[test]
fn a_loop_through_for_each_is_not_reported_as_endless() {
    let f = compiled(&greeting_loop("skip"));
    assert!(f.warnings.iter().all(|w| w.code != "loop-without-pause"), "{:?}", f.warnings);
}
