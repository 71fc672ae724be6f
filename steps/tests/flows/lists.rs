//! Lists end to end through the conversation service (each message a separate activation that
//! resumes from the stored paused run): a CRM search that finds three contacts, a choice among
//! them and a lookup of the chosen one; and a `for_each` that asks once per item.

use serde_json::json;
use testkit::scripted::{Scripted, json_answer};
use testkit::service::Service;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_finds_three_contacts_the_contact_picks_one_and_it_is_looked_up() {
    let api = Scripted::start(vec![
        (
            "/contacts/search",
            vec![json_answer(json!({"data": [
                {"id": "c-1", "name": "Ann Smith", "email": "ann@example.com"},
                {"id": "c-2", "name": "Ann Smith", "email": "ann.smith@example.org"},
                {"id": "c-3", "name": "Anna Smith", "email": "anna@example.net"}
            ]}))],
        ),
        ("/contacts/c-2", vec![json_answer(json!({"data": {"id": "c-2", "open_deals": 4}}))]),
    ]);
    let flow = json!({"version": 1, "id": "identify", "steps": [
        {"id": "search", "type": "fetch_variables",
         "request": {"url": format!("{}/contacts/search", api.url()), "query": {"email": "{{message.text}}"}},
         "variables": {"found": "$.data[*]"}},
        {"id": "which", "type": "ask", "text": "Which of these is you?", "save_as": "chosen",
         "choices_from": {"variable": "found", "title": "{{item.name}} ({{item.email}})", "payload": "{{item.id}}"}},
        {"id": "lookup", "type": "fetch_variables", "request": {"url": format!("{}/contacts/{{{{chosen}}}}", api.url())},
         "variables": {"deals": "data.open_deals"}},
        {"id": "say", "type": "send_message", "text": "{{chosen}} has {{deals}} open deals"}
    ]});
    let c = Service::builder().flow(&flow).start().converse(&["ann@example.com", "2"]).await;
    assert_eq!(c.json()["status"], "completed", "{:#}", c.json());
    let asked = &c.answers[0].replies[0];
    let titles: Vec<&str> = asked.choices.iter().map(|x| x.title.as_str()).collect();
    assert_eq!(
        titles,
        ["Ann Smith (ann@example.com)", "Ann Smith (ann.smith@example.org)", "Anna Smith (anna@example.net)"]
    );
    assert_eq!(c.replies().last().unwrap(), "c-2 has 4 open deals");
    let uris: Vec<String> = api.requests().into_iter().map(|r| r.uri).collect();
    assert_eq!(uris, ["/contacts/search?email=ann%40example.com", "/contacts/c-2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loop_asks_once_per_item_across_messages() {
    let flow = json!({"version": 1, "id": "confirm", "variables": {"deals": [{"title": "Roof"}, {"title": "Porch"}]},
    "steps": [
        {"id": "each", "type": "for_each", "items": "{{deals}}", "item_as": "deal", "index_as": "n", "body": "q",
         "collect": {"as": "kept", "value": {"deal": "{{deal.title}}", "keep": "{{answer}}"}}},
        {"id": "done", "type": "send_message", "text": "kept {{kept}}", "next": "end"},
        {"id": "q", "type": "ask", "text": "{{n}}: keep {{deal.title}}?", "save_as": "answer", "next": "each"}
    ]});
    let c = Service::builder().flow(&flow).start().converse(&["go", "yes", "no"]).await;
    assert_eq!(c.json()["status"], "completed", "{:#}", c.json());
    assert_eq!(
        c.replies(),
        ["0: keep Roof?", "1: keep Porch?", r#"kept [{"deal":"Roof","keep":"yes"},{"deal":"Porch","keep":"no"}]"#]
    );
}
