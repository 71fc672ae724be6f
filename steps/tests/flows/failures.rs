//! Failures that still answer the contact, against a real API on loopback: the flow-level
//! `on_error`, the default error reply and the error flow. (What `tern run` and `tern serve`
//! print and accept for them: tests/failures.rs.)

use serde_json::{Value, json};
use testkit::TestApi;
use testkit::fixtures::lookup_flow;
use testkit::service::Service;

/// An error flow that says `text`.
fn error_flow(text: &str) -> Value {
    json!({"version": 1, "id": "on-error", "trigger": {"type": "error"}, "steps": [
        {"id": "tell", "type": "send_message", "text": text}
    ]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caught_error_answers_with_the_error_path() {
    let api = TestApi::start();
    let c = Service::builder().flow(&lookup_flow(&api, Some("sorry"), None)).start().converse(&["hi"]).await;
    assert_eq!(c.json()["status"], "completed", "{:#}", c.json());
    assert_eq!(c.replies(), ["The CRM is not answering."]);
    let lookup = c.step("lookup");
    assert_eq!(lookup["status"], "error_handled");
    assert_eq!(lookup["error"]["code"], "http-status");
    assert!(lookup["error"]["message"].as_str().unwrap().contains("404"), "{lookup}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow_level_on_error_catches_steps_without_their_own() {
    let api = TestApi::start();
    let out = Service::builder().flow(&lookup_flow(&api, None, Some("sorry"))).start().converse(&["hi"]).await.json();
    assert_eq!(out["status"], "completed");
    assert_eq!(out["replies"][0]["text"], "The CRM is not answering.");
    assert_eq!(out["trace"][0]["status"], "error_handled");
    assert_eq!(out["trace"][0]["error"]["code"], "http-status");
    assert_eq!(out["trace"][1]["step"], "sorry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow_level_on_error_is_taken_once() {
    // The fallback itself fails: the run fails instead of looping back to the fallback.
    let api = TestApi::start();
    let mut flow = lookup_flow(&api, None, Some("retry"));
    flow["steps"].as_array_mut().unwrap().push(json!({"id": "retry", "type": "http_request",
        "request": {"method": "POST", "url": format!("{}/contacts.info", api.url()), "body": {"id": "again"}}}));
    let c = Service::builder().flow(&flow).start().converse(&["hi"]).await;
    c.failed_at("retry", "http-status");
    let out = c.json();
    assert_eq!(out["status"], "failed");
    assert_eq!(out["error"]["step"], "retry");
    let steps: Vec<&str> = out["trace"].as_array().unwrap().iter().map(|t| t["step"].as_str().unwrap()).collect();
    assert_eq!(steps, ["lookup", "retry"]);
    assert_eq!(api.requests().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_error_reply_answers_an_uncaught_failure() {
    let api = TestApi::start();
    let service = Service::builder()
        .flow(&lookup_flow(&api, None, None))
        .error_reply("Sorry, something went wrong on our side.")
        .start();
    let c = service.converse(&["hi"]).await;
    c.failed_at("lookup", "http-status");
    assert_eq!(c.replies(), ["Sorry, something went wrong on our side."]);
    assert!(c.answers[0].error_flow.is_none(), "{:?}", c.answers);
    // Without a default reply and without an error flow the contact gets nothing.
    let c = Service::builder().flow(&lookup_flow(&api, None, None)).start().converse(&["hi"]).await;
    c.failed_at("lookup", "http-status");
    assert!(c.replies().is_empty(), "{:?}", c.replies());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_flow_gets_the_failure_as_variables() {
    let api = TestApi::start();
    let handler = error_flow("{{error.flow}}/{{error.step}} failed [{{error.code}}] for {{message.text}}");
    let service = Service::builder().flow(&lookup_flow(&api, None, None)).flow(&handler).error_reply("unused").start();
    let c = service.converse(&["hi"]).await;
    c.failed_at("lookup", "http-status");
    assert_eq!(c.replies(), ["crm/lookup failed [http-status] for hi"], "the error flow answered, so no default reply");
    let out = c.json();
    assert_eq!(out["error"]["code"], "http-status");
    assert_eq!(out["error_flow"]["flow_id"], "on-error");
    assert_eq!(out["error_flow"]["status"], "completed");
    assert!(out["error_flow"]["run_id"].as_str().is_some_and(|id| id != out["run_id"]), "{out}");
    assert_eq!(out["replies"][0]["text"], "crm/lookup failed [http-status] for hi");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_error_flow_falls_back_to_the_default_reply() {
    let api = TestApi::start();
    let handler = json!({"version": 1, "id": "broken-handler", "trigger": {"type": "error"}, "steps": [
        {"id": "notify", "type": "http_request", "request": {"method": "POST",
         "url": format!("{}/contacts.info", api.url()), "body": {"id": "{{error.code}}"}}}
    ]});
    let service =
        Service::builder().flow(&lookup_flow(&api, None, None)).flow(&handler).error_reply("We are on it.").start();
    let c = service.converse(&["hi"]).await;
    c.failed_at("lookup", "http-status");
    assert_eq!(c.replies(), ["We are on it."]);
    let seen = api.requests();
    assert_eq!(seen.len(), 2, "the flow's request and the error flow's");
    assert_eq!(seen[1].json(), json!({"id": "http-status"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_flow_that_asks_is_resumed_by_the_next_message() {
    let api = TestApi::start();
    let handler = json!({"version": 1, "id": "on-error", "trigger": {"type": "error"}, "steps": [
        {"id": "ask", "type": "ask", "text": "Something broke. Shall a colleague call you back?", "save_as": "callback"},
        {"id": "ok", "type": "send_message", "text": "Noted: {{callback}}."}
    ]});
    let service = Service::builder().flow(&lookup_flow(&api, None, None)).flow(&handler).start();
    let c = service.converse(&["lookup", "yes"]).await;
    let (first, second) = (&c.answers[0], &c.answers[1]);
    assert_eq!(first.status.as_str(), "failed");
    let error_flow = first.error_flow.as_ref().expect("the error flow ran");
    assert_eq!(error_flow.status.as_str(), "paused", "{first:?}");
    assert_eq!(first.replies[0].text, "Something broke. Shall a colleague call you back?");
    // The contact's answer resumes the error flow, not a new run of a flow.
    assert_eq!(second.run_id.as_ref().map(|r| r.as_str()), Some(error_flow.run_id.as_str()), "{second:?}");
    assert_eq!(second.flow_id.as_deref(), Some("on-error"));
    assert_eq!(second.status.as_str(), "completed");
    assert_eq!(second.replies.iter().map(|r| r.text.as_str()).collect::<Vec<_>>(), ["Noted: yes."]);
}
