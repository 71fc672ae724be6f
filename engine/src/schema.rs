//! The JSON Schema of the flow format, assembled from the flow types and the step types in a
//! registry (built-in steps and plugins alike), so editors can validate and complete flows.

use serde_json::{Map, Value, json};

pub use crate::checked::schema_of;
use crate::flow::{FlowConfig, StepHeader};
use crate::step::Registry;

/// The JSON Schema of a flow document whose steps may use every type in `registry`.
pub fn flow_schema(registry: &Registry) -> Value {
    let mut root = schema_of::<FlowConfig>();
    let header = schema_of::<StepHeader>();
    let mut defs = take_defs(&mut root);
    let header_props = header.get("properties").cloned().unwrap_or_else(|| json!({}));
    let mut variants = Vec::new();
    for step_type in registry.iter() {
        let mut config = step_type.config_schema();
        defs.extend(take_defs(&mut config));
        let mut props: Map<String, Value> = header_props.as_object().cloned().unwrap_or_default();
        props.insert("type".into(), json!({ "const": step_type.name(), "description": step_type.description() }));
        if let Some(own) = config.get("properties").and_then(Value::as_object) {
            props.extend(own.clone());
        }
        let mut required = vec![json!("id"), json!("type")];
        if let Some(req) = config.get("required").and_then(Value::as_array) {
            required.extend(req.iter().cloned());
        }
        variants.push(json!({
            "title": step_type.name(),
            "description": step_type.description(),
            "type": "object",
            "properties": props,
            "required": required,
            "additionalProperties": false,
        }));
    }
    if let Some(steps) = root.pointer_mut("/properties/steps") {
        steps["items"] = json!({ "oneOf": variants });
    }
    if let Some(obj) = root.as_object_mut() {
        obj.insert("$id".into(), json!("https://tern.dev/schema/flow-v1.json"));
        obj.insert("title".into(), json!("Tern flow (version 1)"));
        if !defs.is_empty() {
            obj.insert("$defs".into(), Value::Object(defs));
        }
    }
    root
}

fn take_defs(schema: &mut Value) -> Map<String, Value> {
    schema
        .as_object_mut()
        .and_then(|o| o.remove("$defs"))
        .and_then(|d| match d {
            Value::Object(m) => Some(m),
            _ => None,
        })
        .unwrap_or_default()
}
