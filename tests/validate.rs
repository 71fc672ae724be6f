//! `tern validate`: examples are valid; each file in flows/invalid reports exactly the expected
//! diagnostics (snapshots next to the files).

use crate::support::{repo, run};

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
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 9, "one invalid example per kind of mistake");
    for file in files {
        let name = file.file_stem().unwrap().to_string_lossy().into_owned();
        let r =
            crate::support::tern().current_dir(&dir).arg("validate").arg(file.file_name().unwrap()).output().unwrap();
        assert_eq!(r.status.code(), Some(2), "{name} must fail validation");
        let stderr = String::from_utf8_lossy(&r.stderr).into_owned();
        insta::with_settings!({ snapshot_path => dir.clone(), prepend_module_to_snapshot => false, omit_expression => true }, {
            insta::assert_snapshot!(name, stderr);
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
    ] {
        assert!(stderr.contains(&format!("error[{code}]")), "missing {code} in:\n{stderr}");
    }
}

#[test]
fn validate_json_output() {
    let file = repo().join("flows/invalid/dangling-target.json");
    let r = run([std::ffi::OsStr::new("validate"), std::ffi::OsStr::new("--json"), file.as_os_str()]);
    assert_eq!(r.code(), 2);
    let report = r.json();
    let d = &report[0]["diagnostics"][0];
    assert_eq!(d["code"], "dangling-target");
    assert!(d["pointer"].as_str().unwrap().ends_with("/next"));
    assert!(d["line"].as_u64().unwrap() > 1);
}
