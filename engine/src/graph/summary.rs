//! What a step does, in a few short lines for its box: the message it sends or the question
//! it asks, the request it makes (method and URL), the variables it sets and where an answer
//! goes. Read from the step's own fields as written, whatever its type, so that plugin steps
//! with the same field names get the same lines.

use serde_json::Value;

use super::{MAX_SUMMARY_CHARS, short_to};

fn short(text: &str) -> String {
    short_to(text, MAX_SUMMARY_CHARS)
}

/// The lines that say what a step does, from its own fields (`text`, `request.method` and
/// `request.url`, `variables`, `save_as`, `integration`, the `flow` a `call_flow` runs and the
/// `outputs` it takes back); empty when it has none of them.
pub fn step_summary(config: &Value) -> Vec<String> {
    let mut lines = Vec::new();
    let text = |field: &str| config.get(field).and_then(Value::as_str).filter(|s| !s.trim().is_empty());
    if let Some(message) = text("text") {
        lines.push(short(&format!("“{}”", message.trim())));
    }
    if let Some(request) = config.get("request") {
        let method = request.get("method").and_then(Value::as_str).unwrap_or("GET").to_ascii_uppercase();
        if let Some(url) = request.get("url").and_then(Value::as_str) {
            lines.push(short(&format!("{method} {url}")));
        }
    }
    if let Some(integration) = text("integration") {
        lines.push(short(&format!("with the token of {integration}")));
    }
    if let Some(variables) = config.get("variables").and_then(Value::as_object).filter(|v| !v.is_empty()) {
        let names: Vec<&str> = variables.keys().map(String::as_str).collect();
        lines.push(short(&format!("sets {}", names.join(", "))));
    }
    if let Some(answer) = text("save_as") {
        lines.push(short(&format!("answer → {answer}")));
    }
    if let Some(flow) = text("flow") {
        lines.push(short(&format!("runs flow {flow}")));
    }
    if let Some(outputs) = config.get("outputs").and_then(Value::as_object).filter(|v| !v.is_empty()) {
        let names: Vec<&str> = outputs.keys().map(String::as_str).collect();
        lines.push(short(&format!("sets {}", names.join(", "))));
    }
    lines
}
