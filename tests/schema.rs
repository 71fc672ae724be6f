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
    let mut names: Vec<&str> = variants.iter().map(|v| v["properties"]["type"]["const"].as_str().unwrap()).collect();
    names.sort_unstable();
    // Exactly the built-in step types, however many there are: a new step that `tern schema`
    // leaves out (or lists twice) fails here without this test naming it.
    let builtins = tern_steps::builtins();
    let mut want: Vec<&str> = builtins.iter().map(|s| s.name()).collect();
    want.sort_unstable();
    assert_eq!(names, want, "`tern schema` lists the built-in step types");
    // Every variant forbids unknown fields, like the loader.
    assert!(variants.iter().all(|v| v["additionalProperties"] == false));
}
