//! Expressions in flows, through the conversation service: a CRM answer filtered, summed,
//! sorted and looped over; a branch on an expression; a run-time failure of an expression that
//! the step's `on_error` catches with the expression and the reason in its words.

use serde_json::json;
use testkit::scripted::{Scripted, json_answer};
use testkit::service::Service;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crm_answer_is_filtered_summed_sorted_and_looped_over_by_expressions() {
    let api = Scripted::start(vec![(
        "/deals",
        vec![json_answer(json!({"data": [
            {"title": "roof", "status": "open", "amount": 1200.5},
            {"title": "porch", "status": "won", "amount": 800},
            {"title": "garage", "status": "open", "amount": 4000}
        ]}))],
    )]);
    let flow = json!({"version": 1, "id": "deals", "steps": [
        {"id": "fetch", "type": "fetch_variables", "request": {"url": format!("{}/deals", api.url())},
         "variables": {"deals": "$.data[*]",
                       "titles": {"path": "$.data[*]", "transform": "value.map(d, d.title).join(', ')"}}},
        {"id": "sum", "type": "set_variables", "variables": {
            "open": "{{ deals.filter(d, d.status == 'open') }}",
            "total": "{{ deals.filter(d, d.status == 'open').map(d, d.amount).sum() }}"}},
        {"id": "any", "type": "branch", "cases": [{"when": "open.size() == 0", "next": "none"}]},
        {"id": "each", "type": "for_each", "items": "{{ open.sortBy(d, -d.amount) }}", "item_as": "deal",
         "index_as": "i", "body": "line"},
        {"id": "total", "type": "send_message", "text": "{{ open.size() }} open, {{ total.formatNumber(2) }} EUR", "next": "end"},
        {"id": "line", "type": "send_message", "text": "{{ i + 1 }}. {{ deal.title.upper() }}: {{ deal.amount }}", "next": "each"},
        {"id": "none", "type": "send_message", "text": "nothing open"}
    ]});
    let c = Service::builder().flow(&flow).start().converse(&["deals?"]).await;
    assert_eq!(c.json()["status"], "completed", "{:#}", c.json());
    assert_eq!(c.replies(), ["1. GARAGE: 4000", "2. ROOF: 1200.5", "2 open, 5200.50 EUR"]);
    let vars = &c.json()["variables"];
    assert_eq!(vars["total"], json!(5200.5), "one expression keeps its JSON type");
    assert_eq!(vars["open"].as_array().map(Vec::len), Some(2));
    assert_eq!(vars["titles"], json!("roof, porch, garage"), "a mapping's transform");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_branch_takes_the_first_expression_that_holds() {
    let flow = json!({"version": 1, "id": "route", "variables": {"vip": ["ada@example.com"]}, "steps": [
        {"id": "route", "type": "branch", "cases": [
            {"when": "message.text.trim().lower() in vip", "next": "vip"},
            {"when": "message.text.matches('^[0-9]+$') && int(message.text) > 100", "next": "big"}]},
        {"id": "other", "type": "send_message", "text": "other", "next": "end"},
        {"id": "vip", "type": "send_message", "text": "vip", "next": "end"},
        {"id": "big", "type": "send_message", "text": "big order"}
    ]});
    let service = Service::builder().flow(&flow).start();
    for (text, reply) in [(" ADA@example.com ", "vip"), ("250", "big order"), ("50", "other"), ("hello", "other")] {
        let c = service.converse(&[text]).await;
        assert_eq!(c.replies(), [reply], "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expression_that_fails_at_run_time_fails_its_step_with_the_reason() {
    let flow = json!({"version": 1, "id": "split", "variables": {"people": 0, "bill": 90}, "steps": [
        {"id": "share", "type": "set_variables", "variables": {"each": "{{ bill / people }}"}, "on_error": "sorry"},
        {"id": "say", "type": "send_message", "text": "{{ each }} each", "next": "end"},
        {"id": "sorry", "type": "send_message", "text": "cannot split"}
    ]});
    let c = Service::builder().flow(&flow).start().converse(&["split"]).await;
    assert_eq!(c.replies(), ["cannot split"]);
    let caught = c.trace().into_iter().find(|t| t.step.as_str() == "share").map(|t| serde_json::to_value(t).unwrap());
    let text = caught.map(|t| t.to_string()).unwrap_or_default();
    assert!(text.contains("bill / people") && text.contains("divides by zero"), "{text}");

    let flow = json!({"version": 1, "id": "split", "variables": {"people": 0, "bill": 90}, "steps": [
        {"id": "share", "type": "set_variables", "variables": {"each": "{{ bill / people }}"}}
    ]});
    let c = Service::builder().flow(&flow).start().converse(&["split"]).await;
    let message = c.failed_at("share", "template");
    assert!(message.contains("`{{bill / people}}` divides by zero"), "{message}");
}
