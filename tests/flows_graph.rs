//! `tern flows graph`: every example flow is drawn in every format, naming every step; `-o`
//! writes a file (its extension picks the format); an invalid flow prints its diagnostics.

use serde_json::{Value, json};

use crate::support::{Flows, repo, run};

fn examples() -> Vec<std::path::PathBuf> {
    // The server's own listing: flow files, not the flow tests beside them.
    let files = tern_engine::flow_set::flow_files(&[repo().join("flows/examples")]).unwrap();
    assert!(!files.is_empty());
    files
}

fn step_ids(file: &std::path::Path) -> Vec<String> {
    let flow: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    flow["steps"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap().to_string()).collect()
}

#[test]
fn every_example_is_drawn_in_every_format() {
    for file in examples() {
        let ids = step_ids(&file);
        for (format, first) in [("svg", "<?xml"), ("dot", "digraph "), ("mermaid", "flowchart TD")] {
            let r = run([
                std::ffi::OsStr::new("flows"),
                "graph".as_ref(),
                file.as_os_str(),
                "--format".as_ref(),
                format.as_ref(),
            ]);
            let what = format!("{} as {format}", file.display());
            assert_eq!(r.code(), 0, "{what}: {}", r.stderr());
            let out = r.stdout();
            assert!(out.starts_with(first), "{what}: {out}");
            for id in &ids {
                assert!(out.contains(id.as_str()), "{what} does not name step `{id}`:\n{out}");
            }
        }
    }
}

#[test]
fn svg_is_the_default_and_output_files_take_the_format_of_their_extension() {
    let file = repo().join("flows/examples/branch-order-size.json");
    let r = run([std::ffi::OsStr::new("flows"), "graph".as_ref(), file.as_os_str()]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert!(r.stdout().starts_with("<?xml") && r.stdout().contains("<svg"), "{}", r.stdout());

    let dir = tempfile::tempdir().unwrap();
    for (name, first) in [("f.dot", "digraph "), ("f.mmd", "flowchart TD"), ("f.svg", "<?xml")] {
        let out = dir.path().join(name);
        let r =
            run([std::ffi::OsStr::new("flows"), "graph".as_ref(), file.as_os_str(), "-o".as_ref(), out.as_os_str()]);
        assert_eq!(r.code(), 0, "{}", r.stderr());
        assert_eq!(r.stdout(), "", "nothing on standard output with -o");
        let text = std::fs::read_to_string(&out).unwrap();
        assert!(text.starts_with(first), "{name}: {text}");
    }
    // --format wins over the extension.
    let out = dir.path().join("g.dot");
    let r = run([
        std::ffi::OsStr::new("flows"),
        "graph".as_ref(),
        file.as_os_str(),
        "--format".as_ref(),
        "mermaid".as_ref(),
        "-o".as_ref(),
        out.as_os_str(),
    ]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert!(std::fs::read_to_string(&out).unwrap().starts_with("flowchart TD"));
}

#[test]
fn an_invalid_flow_prints_its_diagnostics_and_exits_2() {
    let flows = Flows::new();
    let file = flows.write(
        "bad",
        &json!({"version": 1, "id": "bad", "steps": [
            {"id": "a", "type": "send_message", "text": "hi", "next": "nowhere"}
        ]}),
    );
    let r =
        run([std::ffi::OsStr::new("flows"), "graph".as_ref(), file.as_os_str(), "--format".as_ref(), "dot".as_ref()]);
    assert_eq!(r.code(), 2, "{}", r.stderr());
    assert_eq!(r.stdout(), "", "no picture of an invalid flow");
    assert!(r.stderr().contains("error[dangling-target] at /steps/0/next"), "{}", r.stderr());
    assert!(r.stderr().contains("run `tern validate"), "{}", r.stderr());
}

#[test]
fn hostile_descriptions_are_escaped_in_every_format() {
    let flows = Flows::new();
    let file = flows.write(
        "hostile",
        &json!({"version": 1, "id": "hostile", "steps": [
            {"id": "a", "type": "send_message", "text": "hi", "description": "<script>\"x\" & y</script>"}
        ]}),
    );
    let graph = |format: &str| {
        let r = run([
            std::ffi::OsStr::new("flows"),
            "graph".as_ref(),
            file.as_os_str(),
            "--format".as_ref(),
            format.as_ref(),
        ]);
        assert_eq!(r.code(), 0, "{}", r.stderr());
        r.stdout()
    };
    assert!(graph("svg").contains("&lt;script&gt;&quot;x&quot; &amp; y&lt;/script&gt;"));
    assert!(graph("dot").contains(r#"<script>\"x\" &amp; y</script>"#));
    assert!(graph("mermaid").contains("#60;script#62;#34;x#34; #38; y#60;/script#62;"));
}
