//! The official JSONPath Compliance Test Suite (RFC 9535), run through the response mapping
//! that flows use (`tern_engine::mapping`): every case, no exclusions.
//!
//! A mapping answers a query the way a flow needs it, so each case's expected node list is
//! read back into that shape: an invalid selector must be refused when the flow loads; a
//! singular query (names and indexes only) yields its one node, or "not found" when the node
//! list is empty; any other query yields the node list as an array, or "not found" when its
//! leading names and indexes are missing (and then the suite must expect no nodes). Where the
//! suite allows several results (`results`, for objects whose member order is not defined),
//! any of them passes.

use serde_json::Value;
use tern_engine::mapping::ResponsePath;

/// How the mapping's answer to one case differs from what the suite expects; `None` when it
/// does not.
fn mismatch(case: &Value) -> Option<String> {
    let Some(selector) = case["selector"].as_str() else { return Some("a case without a selector".into()) };
    let parsed = ResponsePath::parse(selector);
    if case.get("invalid_selector").is_some() {
        return parsed.is_ok().then(|| "accepted, but the selector is invalid".into());
    }
    let path = match parsed {
        Ok(p) => p,
        Err(e) => return Some(format!("refused a valid selector: {e}")),
    };
    let allowed: Vec<&Value> = match (case.get("result"), case.get("results")) {
        (Some(one), _) => vec![one],
        (None, Some(Value::Array(many))) => many.iter().collect(),
        _ => return Some("a case without result(s)".into()),
    };
    let singular = matches!(path, ResponsePath::JsonPath { singular: true, .. });
    let got = path.select(&case["document"]);
    let as_node_list = match got {
        Ok(v) if singular => Value::Array(vec![v]),
        Ok(v) => v,
        Err(_) => Value::Array(vec![]),
    };
    if allowed.contains(&&as_node_list) {
        None
    } else {
        Some(format!(
            "got {as_node_list}, expected {}",
            allowed.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(" or ")
        ))
    }
}

#[test]
fn every_case_of_the_official_suite_passes_through_the_mapping() {
    let Some(cts) = testkit::tools::jsonpath_cts("every_case_of_the_official_suite_passes_through_the_mapping") else {
        return;
    };
    let suite: Value = serde_json::from_str(&std::fs::read_to_string(cts).unwrap()).unwrap();
    let cases = suite["tests"].as_array().unwrap();
    assert!(cases.len() > 600, "the suite has {} cases; is it the whole cts.json?", cases.len());
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|case| mismatch(case).map(|why| format!("{} `{}`: {why}", case["name"], case["selector"])))
        .collect();
    assert!(failures.is_empty(), "{} of {} cases fail:\n{}", failures.len(), cases.len(), failures.join("\n"));
}
