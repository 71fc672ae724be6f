//! `tern validate`: examples are valid; each file in flows/invalid reports exactly the expected
//! diagnostics (snapshots next to the files, checked in process on the library; the command
//! itself on the whole directory).

use crate::support::{Flows, fresh_data_dir, repo, run, tern};

#[test]
fn examples_are_valid() {
    let examples = repo().join("flows/examples");
    let r = run([std::ffi::OsStr::new("validate"), examples.as_os_str()]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert!(r.stderr().contains("0 error(s)"), "{}", r.stderr());
    let count = std::fs::read_dir(&examples).unwrap().count();
    assert!(count >= 3, "at least three examples");
}

#[test]
fn invalid_flows_report_expected_diagnostics() {
    let dir = repo().join("flows/invalid");
    let with_extension = |ext: &str| -> Vec<String> {
        let mut stems: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == ext))
            .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
            .collect();
        stems.sort();
        stems
    };
    // Exactly one snapshot per invalid flow: a flow without its snapshot, or a snapshot whose
    // flow was deleted (whose mistake is no longer checked), fails here.
    let (flows, snapshots) = (with_extension("json"), with_extension("snap"));
    assert_eq!(flows, snapshots, "flows/invalid: every NAME.json has its NAME.snap and no snapshot is left over");
    let files: Vec<_> = flows.iter().map(|name| dir.join(format!("{name}.json"))).collect();
    // In process, on the library `tern validate` uses (the built-in steps, no store); the
    // report is laid out as `tern validate NAME.json` prints it (see
    // `every_file_is_reported_in_one_pass` for the command itself).
    let registry = tern_steps::registry();
    let opts = tern_engine::LoadOptions::new(&registry);
    for file in files {
        let name = file.file_stem().unwrap().to_string_lossy().into_owned();
        // As `tern validate` loads it: the file alone, then the checks across the set (its
        // calls to other flows).
        let loaded = tern_engine::flow_set::load_files(std::slice::from_ref(&file), &opts).unwrap();
        let diags = match loaded.into_iter().next().unwrap().outcome {
            tern_engine::flow_set::FileOutcome::Loaded { flow, .. } => flow.flow.warnings.clone(),
            tern_engine::flow_set::FileOutcome::Invalid(diags) => diags,
            other => panic!("{name}: {other:?}"),
        };
        let errors = diags.iter().filter(|d| d.is_error()).count();
        assert!(errors > 0, "{name} must fail validation");
        let mut report: String = diags.iter().map(|d| format!("{name}.json:{d}\n")).collect();
        report.push_str(&format!("checked 1 file(s): {errors} error(s), {} warning(s)\n", diags.len() - errors));
        insta::with_settings!({ snapshot_path => dir.clone(), prepend_module_to_snapshot => false, omit_expression => true }, {
            insta::assert_snapshot!(name, report);
        });
    }
}

#[test]
fn every_file_is_reported_in_one_pass() {
    let dir = repo().join("flows/invalid");
    let r = run([std::ffi::OsStr::new("validate"), dir.as_os_str()]);
    assert_eq!(r.code(), 2);
    let stderr = r.stderr();
    for code in [
        "unknown-field",
        "unknown-step-type",
        "dangling-target",
        "duplicate-id",
        "unreachable-step",
        "endless-loop",
        "undefined-variable",
        "bad-json-path",
        "syntax",
        "duplicate-key",
        "invalid-type",
        "missing-field",
        "unknown-placeholder",
    ] {
        assert!(stderr.contains(&format!("error[{code}]")), "missing {code} in:\n{stderr}");
    }
}

/// `tern validate --json` on one file of flows/invalid, which must fail validation.
fn validate_invalid_json(name: &str) -> crate::support::Run {
    let file = repo().join("flows/invalid").join(name);
    let r = run([std::ffi::OsStr::new("validate"), std::ffi::OsStr::new("--json"), file.as_os_str()]);
    assert_eq!(r.code(), 2, "{}", r.stderr());
    r
}

#[test]
fn validate_json_output() {
    let report = validate_invalid_json("dangling-target.json").json();
    let d = &report[0]["diagnostics"][0];
    assert_eq!(d["code"], "dangling-target");
    assert!(d["pointer"].as_str().unwrap().ends_with("/next"));
    assert!(d["line"].as_u64().unwrap() > 1);
}

#[test]
fn sixteen_mistakes_are_reported_in_one_run() {
    let r = validate_invalid_json("sixteen-mistakes.json");
    let report = r.json();
    let diags = report[0]["diagnostics"].as_array().unwrap();
    assert_eq!(diags.len(), 16, "{diags:#?}");
    // No Rust type names, and no false errors caused by the steps that could not be parsed.
    let text = r.stdout();
    for rust in ["u32", "u64", "f64", "a sequence", "a map", "struct "] {
        assert!(!text.contains(rust), "`{rust}` in {text}");
    }
    assert!(!diags.iter().any(|d| d["message"].as_str().unwrap().contains("`rating`")), "{diags:#?}");
    assert!(!diags.iter().any(|d| d["message"].as_str().unwrap().contains("`eta`")), "{diags:#?}");
    // Each duplicate names both places.
    let dup = diags.iter().find(|d| d["code"] == "duplicate-key").unwrap();
    assert_eq!(dup["pointer"], "/variables/greeting");
    assert!(dup["message"].as_str().unwrap().contains("first written at 7:"), "{dup}");
}

/// A data directory with one registered integration, `crm`.
fn data_dir_with_crm() -> std::path::PathBuf {
    let dir = fresh_data_dir();
    let ok = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = tern();
        cmd.env("TERN_DATA_DIR", &dir).args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    ok(&["secrets", "set", "CRM_KEY", "--from-env", "KEYVAL"], &[("KEYVAL", "k_0123456789")]);
    ok(
        &[
            "integrations",
            "add",
            "crm",
            "--kind",
            "static",
            "--static-secret",
            "CRM_KEY",
            "--api-origin",
            "https://crm.example.com",
        ],
        &[],
    );
    dir
}

#[test]
fn integrations_are_checked_against_the_store() {
    let dir = data_dir_with_crm();
    let flows = Flows::new();
    let flow = |integration: &str| {
        serde_json::json!({"version": 1, "id": "i", "steps": [
            {"id": "get", "type": "http_request", "integration": integration,
             "request": {"url": "https://crm.example.com/me"}},
            {"id": "login", "type": "oauth_request", "integration": integration, "text": "Log in: {{login_url}}",
             "save_as": "login"}
        ]})
    };
    let bad = flows.write("bad", &flow("crn"));
    let good = flows.write("good", &flow("crm"));
    let validate =
        |path: &std::path::Path| tern().env("TERN_DATA_DIR", &dir).arg("validate").arg(path).output().unwrap();

    let out = validate(&bad);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.matches("error[unknown-integration]").count(), 2, "{stderr}");
    assert!(stderr.contains("integration `crn` does not exist"), "{stderr}");
    assert!(stderr.contains("did you mean `crm`?"), "{stderr}");
    let out = validate(&good);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));

    // `tern run` loads flows with the same check.
    let out = tern().env("TERN_DATA_DIR", &dir).args(["run", bad.to_str().unwrap(), "-m", "hi"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("did you mean `crm`?"));

    // Without a store there is nothing to check against.
    let r = run([std::ffi::OsStr::new("validate"), bad.as_os_str()]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
}

#[test]
fn a_literal_private_host_is_a_warning_unless_private_networks_are_allowed() {
    // Every other command refuses these hosts until --allow-private-network: validate says so
    // first, without failing (the flow is fine for local development).
    let flows = Flows::new();
    let flow = flows.write(
        "local",
        &serde_json::json!({"version": 1, "id": "local", "steps": [
            {"id": "mine", "type": "http_request", "request": {"url": "http://127.0.0.1:9000/orders"}},
            {"id": "lan", "type": "http_request", "request": {"url": "http://192.168.1.5/x"}},
            {"id": "name", "type": "http_request", "request": {"url": "http://localhost:3000/x"}},
            {"id": "public", "type": "http_request", "request": {"url": "https://api.example.com/x"}},
            {"id": "nowhere", "type": "http_request", "request": {"url": "http://0.0.0.0:9000/x"}}
        ]}),
    );
    let out = tern().env("TERN_DATA_DIR", fresh_data_dir()).arg("validate").arg(&flow).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(stderr.matches("warning[private-address]").count(), 4, "{stderr}");
    // An address nothing reaches is not offered the flag.
    let nowhere = stderr.lines().skip_while(|l| !l.contains("/steps/4/")).take(2).collect::<Vec<_>>().join("\n");
    assert!(nowhere.contains("no request can reach it") && !nowhere.contains("--allow-private-network"), "{nowhere}");
    for pointer in ["/steps/0/request/url", "/steps/1/request/url", "/steps/2/request/url"] {
        assert!(stderr.contains(&format!("at {pointer}:")), "{pointer} in {stderr}");
    }
    assert!(stderr.contains("--allow-private-network"), "{stderr}");
    assert!(!stderr.contains("/steps/3/"), "{stderr}");
    let out = tern()
        .env("TERN_DATA_DIR", fresh_data_dir())
        .args(["validate", "--allow-private-network"])
        .arg(&flow)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(stderr.matches("private-address").count(), 1, "only the address nothing reaches: {stderr}");
    assert!(stderr.contains("/steps/4/"), "{stderr}");
}

#[test]
fn a_match_without_keywords_or_regex_is_warned_about() {
    // `"match": {}` or `"keywords": []` (left "to fill in later") takes every message.
    let flows = Flows::new();
    for (name, matcher) in [("empty", serde_json::json!({})), ("none", serde_json::json!({"keywords": []}))] {
        let flow = flows.write(
            name,
            &serde_json::json!({"version": 1, "id": name, "trigger": {"type": "message", "match": matcher},
                "steps": [{"id": "hi", "type": "send_message", "text": "hi"}]}),
        );
        let out = tern().env("TERN_DATA_DIR", fresh_data_dir()).arg("validate").arg(&flow).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        assert!(stderr.contains("warning[matches-everything] at /trigger/match"), "{stderr}");
        assert!(stderr.contains("every message starts this flow"), "{stderr}");
    }
    // Without `match`, every message is meant: no warning.
    let flow = flows.write(
        "all",
        &serde_json::json!({"version": 1, "id": "all", "trigger": {"type": "message"},
            "steps": [{"id": "hi", "type": "send_message", "text": "hi"}]}),
    );
    let out = tern().env("TERN_DATA_DIR", fresh_data_dir()).arg("validate").arg(&flow).output().unwrap();
    assert!(!String::from_utf8_lossy(&out.stderr).contains("matches-everything"));
}

/// A flow file's escape sequences (in a key that becomes a JSON pointer) never reach the
/// terminal through a diagnostic.
#[test]
fn diagnostics_quote_the_file_without_its_control_characters() {
    let flows = crate::support::Flows::new();
    let text = "{\"version\": 1, \"id\": \"esc\", \"steps\": [{\"id\": \"a\", \"type\": \"send_message\", \"text\": \"hi\", \"\\u001b]0;PWNED\\u0007\": 1}]}";
    let path = flows.dir.path().join("esc.json");
    std::fs::write(&path, text).unwrap();
    let r = crate::support::run(["validate", path.to_str().unwrap()]);
    assert_ne!(r.code(), 0, "{}", r.stderr());
    let err = r.stderr();
    assert!(err.contains("PWNED"), "the key is quoted: {err:?}");
    assert!(!err.contains('\u{1b}') && !err.contains('\u{7}'), "{err:?}");
}
