//! Replies with choices (issue 23): `send_message` and `ask` with `choices` or `choices_from`,
//! the answer read against them (a payload, a title, a number), `reask`, and what `tern
//! validate` says of them.

use serde_json::{Value, json};
use tern_engine::{Choice, LoadOptions, Severity, load_flow};
use testkit::service::Service;

fn menu(ask: Value) -> Value {
    json!({"version": 1, "id": "menu", "trigger": {"type": "message", "match": {"keywords": ["menu"]}}, "steps": [
        {"id": "contacts", "type": "set_variables", "variables": {"found": [
            {"id": "c-1", "name": "Ann Smith"}, {"id": "c-2", "name": "Bob Jones"}, {"id": "c-3", "name": "Cy Twombly"}
        ]}},
        ask,
        {"id": "done", "type": "send_message", "text": "You chose {{choice}}."}
    ]})
}

fn choices(titles_payloads: &[(&str, &str)]) -> Vec<Choice> {
    titles_payloads.iter().map(|(t, p)| Choice::new(t, p)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ask_with_choices_stores_the_chosen_payload_by_press_number_or_title() {
    let ask = json!({"id": "ask", "type": "ask", "text": "Shall we call you?", "save_as": "choice",
        "choices": [{"title": "Yes, today", "payload": "call-today"}, {"title": "Tomorrow", "payload": "call-tomorrow"}, {"title": "No"}]});
    let service = Service::builder().flow(&menu(ask)).start();
    for (answer, stored) in [
        ("call-today", "call-today"),
        ("2", "call-tomorrow"),
        ("no", "No"),
        ("TOMORROW", "call-tomorrow"),
        ("maybe", "maybe"),
    ] {
        let c = service.converse(&["menu", answer]).await;
        let question = &c.answers[0].replies[0];
        assert_eq!(question.text, "Shall we call you?");
        assert_eq!(
            question.choices,
            choices(&[("Yes, today", "call-today"), ("Tomorrow", "call-tomorrow"), ("No", "No")])
        );
        assert_eq!(c.answers[1].replies[0].text, format!("You chose {stored}."), "{answer}");
        assert!(c.answers[1].replies[0].choices.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reask_sends_the_choices_again_until_one_is_picked() {
    let ask = json!({"id": "ask", "type": "ask", "text": "Which contact are you?", "save_as": "choice",
        "choices_from": {"variable": "found", "title": "{{index}}: {{item.name}}", "payload": "{{item.id}}"},
        "reask": "Please pick one of the contacts, {{contact.name | default: \"friend\"}}."});
    let service = Service::builder().flow(&menu(ask)).start();
    let c = service.converse(&["menu", "someone else", "c-3"]).await;
    let offered = choices(&[("0: Ann Smith", "c-1"), ("1: Bob Jones", "c-2"), ("2: Cy Twombly", "c-3")]);
    assert_eq!(c.answers[0].replies[0].choices, offered);
    assert_eq!(c.answers[1].status.as_str(), "paused");
    assert_eq!(c.answers[1].replies[0].choices, offered, "asked again with the same choices");
    assert_eq!(c.answers[2].replies[0].text, "You chose c-3.");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_message_offers_choices_and_a_press_is_a_message() {
    let flow = json!({"version": 1, "id": "offer", "steps": [
        {"id": "offer", "type": "send_message", "text": "Pick a topic", "choices": [{"title": "Billing"}, {"title": "Orders"}]}
    ]});
    let service = Service::builder().flow(&flow).start();
    let c = service.converse(&["hi"]).await;
    assert_eq!(c.answers[0].replies[0].choices, choices(&[("Billing", "Billing"), ("Orders", "Orders")]));
}

#[test]
fn validate_checks_the_choices_it_can_see() {
    let registry = tern_steps::registry();
    let opts = LoadOptions::new(&registry);
    let eleven: Vec<Value> = (0..11).map(|i| json!({"title": format!("Option {i}")})).collect();
    let flow = json!({"version": 1, "id": "v", "steps": [
        {"id": "many", "type": "send_message", "text": "x", "choices": eleven},
        {"id": "twice", "type": "ask", "text": "x", "save_as": "a", "choices": [{"title": "A", "payload": "p"}, {"title": "B", "payload": "p"}]},
        {"id": "both", "type": "ask", "text": "x", "save_as": "b", "choices": [{"title": "A"}],
         "choices_from": {"variable": "nowhere", "title": "{{item.name}}"}},
        {"id": "long", "type": "send_message", "text": "x", "choices": [{"title": "A title far longer than twenty", "payload": "x".repeat(70)}]},
        {"id": "cased", "type": "send_message", "text": "x", "choices": [{"title": "Yes"}, {"title": "yes"}]}
    ]});
    let diags = match load_flow(&flow.to_string(), &opts) {
        Ok(_) => panic!("the flow has errors"),
        Err(d) => d,
    };
    let found: Vec<(Severity, &str, &str)> = diags.iter().map(|d| (d.severity, d.code, d.pointer.as_str())).collect();
    for expected in [
        (Severity::Error, "too-many-choices", "/steps/0/choices"),
        (Severity::Error, "duplicate-choice", "/steps/1/choices/1"),
        (Severity::Error, "choices-twice", "/steps/2/choices_from"),
        (Severity::Error, "undefined-variable", "/steps/2/choices_from/variable"),
        (Severity::Warning, "long-choice-title", "/steps/3/choices/0/title"),
        (Severity::Warning, "long-choice-payload", "/steps/3/choices/0/payload"),
        (Severity::Warning, "similar-choices", "/steps/4/choices/1"),
    ] {
        assert!(found.contains(&expected), "{expected:?} in {found:#?}");
    }
    assert!(
        !found.iter().any(|(_, code, p)| *code == "undefined-variable" && p.contains("title")),
        "{{{{item}}}} is the item: {found:#?}"
    );
}
