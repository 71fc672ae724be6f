//! Flow documents that tests of the same behaviour share, in process (steps/tests/flows) and
//! through the `tern` binary (tests/): one copy of each, so that both sides test the same flow.

use serde_json::{Value, json};

use crate::TestApi;

/// The Teamleader lookup against [`TestApi`]: asks for a contact id, looks the contact up with
/// `fetch_variables` and greets them, or says it could not find them (`on_error`).
pub fn teamleader_flow(api: &TestApi) -> Value {
    json!({
        "version": 1, "id": "tl", "trigger": {"type": "message", "match": {"regex": "(?i)^last name"}},
        "steps": [
            {"id": "ask_id", "type": "ask", "text": "What is your Teamleader contact ID?", "save_as": "id"},
            {"id": "lookup", "type": "fetch_variables",
             "request": {"method": "POST", "url": format!("{}/contacts.info", api.url()), "body": {"id": "{{id}}"}},
             "variables": {"last_name": "data.last_name", "first_name": "$.data.first_name",
                           "email": "$.data.emails[0].email"},
             "on_error": "not_found"},
            {"id": "greet", "type": "send_message", "text": "Hello {{first_name}} {{last_name}} <{{email}}>!", "next": "end"},
            {"id": "not_found", "type": "send_message", "text": "I could not find contact {{id}}."}
        ]
    })
}

/// [`teamleader_flow`] without its error path, so that a failing lookup fails the run.
pub fn without_error_path(mut flow: Value) -> Value {
    flow["steps"][1].as_object_mut().expect("the lookup step").remove("on_error");
    flow["steps"].as_array_mut().expect("steps").pop();
    flow
}

/// A lookup that [`TestApi`] answers 404 (`http-status`), then a goodbye; `step_on_error` and
/// `flow_on_error` set the step's and the flow's `on_error` (`"sorry"` adds an apology step).
pub fn lookup_flow(api: &TestApi, step_on_error: Option<&str>, flow_on_error: Option<&str>) -> Value {
    let mut lookup = json!({"id": "lookup", "type": "http_request",
        "request": {"method": "POST", "url": format!("{}/contacts.info", api.url()), "body": {"id": "nobody"}}});
    if let Some(t) = step_on_error {
        lookup["on_error"] = json!(t);
    }
    let mut flow = json!({
        "version": 1, "id": "crm",
        "steps": [lookup, {"id": "done", "type": "send_message", "text": "Found you.", "next": "end"}]
    });
    // The apology exists only when something leads to it (an unreachable step is an error).
    if step_on_error == Some("sorry") || flow_on_error == Some("sorry") {
        let sorry = json!({"id": "sorry", "type": "send_message", "text": "The CRM is not answering.", "next": "end"});
        flow["steps"].as_array_mut().expect("steps").push(sorry);
    }
    if let Some(t) = flow_on_error {
        flow["on_error"] = json!(t);
    }
    flow
}
