//! The committed JSON Schema is generated from the same types and must not go stale.

use crate::support::{repo, run};

#[test]
fn committed_schema_is_fresh() {
    let r = run(["schema"]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let committed = std::fs::read_to_string(repo().join("flows/schema/flow.schema.json")).unwrap_or_default();
    assert!(
        committed == r.stdout(),
        "flows/schema/flow.schema.json is stale; regenerate it with `cargo run -- schema > flows/schema/flow.schema.json`"
    );
}

#[test]
fn schema_lists_every_builtin_step() {
    let schema: serde_json::Value = serde_json::from_str(&run(["schema"]).stdout()).unwrap();
    let variants = schema.pointer("/properties/steps/items/oneOf").unwrap().as_array().unwrap();
    let names: Vec<&str> = variants.iter().map(|v| v["properties"]["type"]["const"].as_str().unwrap()).collect();
    for want in ["send_message", "ask", "set_variables", "branch", "http_request", "fetch_variables", "end"] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    // Every variant forbids unknown fields, like the loader.
    assert!(variants.iter().all(|v| v["additionalProperties"] == false));
}
