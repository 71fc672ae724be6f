//! Writing a plugin as its author does: `tern plugins new` in each language, an edit, `tern
//! plugins build`, `tern plugins test` with the scaffold's fixture (recorded HTTP, no network),
//! `install`, and a flow through `tern serve`; the Python guest's example against a real OAuth
//! server; and the sandbox holding for Python (no WASI, no undeclared origin).

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::plugins::{Env, crm_example_through_an_integration, serve};
use crate::support::wasm::{FIRST_CALL, Plugin, header_store};
use crate::support::{Run, repo, tools};

/// `tern ARGS` in `cwd` with `path` first on `PATH` (where a toolchain is).
fn run_in(env: &Env, cwd: &Path, path: Option<&Path>, args: &[&str]) -> Run {
    let mut cmd = env.cmd();
    cmd.current_dir(cwd);
    if let Some(dir) = path {
        let joined = std::env::join_paths(
            std::iter::once(dir.to_path_buf())
                .chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
        )
        .unwrap();
        cmd.env("PATH", joined);
    }
    Run { output: cmd.args(args).output().unwrap() }
}

/// The lines of a Python step that are its author's code: not blank, not a comment.
fn python_code_lines(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .count()
}

/// A WAT plugin that GETs `url` (naming `integration` unless empty) and returns `ok` or the
/// host's error as its outcome.
fn fetcher(url: &str, integration: &str) -> Vec<u8> {
    let body = format!(
        "{} (call $get (global.get $url_ptr) (global.get $url_len) (i32.const 1) (global.get $int_ptr) (global.get $int_len))",
        header_store(0, "h", "v"),
    );
    Plugin::new(&body).string("url", url).string("int", integration).string("h", "X-Test").string("v", "1").build()
}

/// `tern plugins test` answers the plugin's calls from the fixture's recording (no network: the
/// host in the URL does not exist), checks every expectation and says each difference; a call
/// nobody recorded, a recorded answer nobody asked for and a fixture with a wrong field fail
/// with words.
#[test]
fn plugins_test_replays_recorded_answers_and_checks_the_expectations() {
    let env = Env::new();
    let dir = tempfile::tempdir().unwrap();
    let wasm = dir.path().join("p.wasm");
    std::fs::write(&wasm, fetcher("https://crm.invalid/contacts/42", "crm")).unwrap();
    let fixture = |value: &Value| {
        let path = dir.path().join("fixture.json");
        std::fs::write(&path, value.to_string()).unwrap();
        path
    };
    let crm = json!({"crm": ["https://crm.invalid"]});
    let recorded = json!({"request": {"url": "https://crm.invalid/contacts/42", "integration": "crm"},
                          "response": {"status": 200, "json": {"id": 42}}});
    let f = fixture(
        &json!({"config": {"integration": "crm"}, "integrations": crm, "http": [recorded], "expect": {"outcome": "ok"}}),
    );
    let r = env.run(&["plugins", "test", wasm.to_str().unwrap(), "--fixture", f.to_str().unwrap()], false);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    let out: Value = serde_json::from_str(r.stdout().split("\nPASS").next().unwrap()).unwrap();
    assert_eq!(out["calls"][0]["fixture"], "/http/0", "{out}");
    assert_eq!(out["calls"][0]["integration"], "crm", "{out}");
    assert!(r.stdout().contains("PASS"), "{}", r.stdout());

    // Nothing recorded for the call: the plugin gets a `failed` error that says what to add.
    let f = fixture(&json!({"config": {"integration": "crm"}, "integrations": crm, "expect": {"outcome": "ok"}}));
    let r = env.run(&["plugins", "test", wasm.to_str().unwrap(), "--fixture", f.to_str().unwrap()], false);
    assert_eq!(r.code(), 1, "{}", r.stderr());
    assert!(
        r.stdout().contains("no recorded answer is left for GET https://crm.invalid/contacts/42"),
        "{}",
        r.stdout()
    );
    assert!(r.stderr().contains("the outcome is") && r.stderr().contains("FAIL"), "{}", r.stderr());

    // A recorded answer nobody asked for, and a variable that was not set: both are said.
    let extra = json!({"request": {"url": "https://crm.invalid/other"}});
    let f = fixture(&json!({"config": {"integration": "crm"}, "integrations": crm, "http": [recorded, extra],
                            "expect": {"outcome": "ok", "variables": {"contact": {"id": 42}}}}));
    let r = env.run(&["plugins", "test", wasm.to_str().unwrap(), "--fixture", f.to_str().unwrap()], false);
    assert_eq!(r.code(), 1);
    assert!(r.stderr().contains("/http/1 (GET https://crm.invalid/other) was never requested"), "{}", r.stderr());
    assert!(r.stderr().contains("variable `contact` was not set"), "{}", r.stderr());
    assert!(r.stderr().contains("2 difference(s)"), "{}", r.stderr());

    // The integration and origin rules hold under replay: a step that names no integration
    // cannot use one, recorded or not.
    let f = fixture(&json!({"http": [recorded], "expect": {"outcome": "ok"}}));
    let r = env.run(&["plugins", "test", wasm.to_str().unwrap(), "--fixture", f.to_str().unwrap()], false);
    assert_eq!(r.code(), 1);
    assert!(r.stdout().contains("is not named in this step's configuration"), "{}", r.stdout());

    // The integration's API origins hold under replay: a fixture that does not give them, or a
    // call elsewhere, is refused before any recorded answer is used.
    let f = fixture(&json!({"config": {"integration": "crm"}, "http": [recorded], "expect": {"outcome": "ok"}}));
    let r = env.run(&["plugins", "test", wasm.to_str().unwrap(), "--fixture", f.to_str().unwrap()], false);
    assert_eq!(r.code(), 1);
    assert!(r.stdout().contains("does not give integration `crm`'s API origins"), "{}", r.stdout());
    let f = fixture(&json!({"config": {"integration": "crm"}, "integrations": {"crm": ["https://api.crm.invalid"]},
                            "http": [recorded], "expect": {"outcome": "ok"}}));
    let r = env.run(&["plugins", "test", wasm.to_str().unwrap(), "--fixture", f.to_str().unwrap()], false);
    assert_eq!(r.code(), 1);
    assert!(r.stdout().contains("may not be sent to https://crm.invalid"), "{}", r.stdout());

    // A fixture with a mistake is refused at its field.
    let f = fixture(&json!({"http": [{"request": {"url": "https://crm.invalid/", "methd": "GET"}}]}));
    let r = env.run(&["plugins", "test", wasm.to_str().unwrap(), "--fixture", f.to_str().unwrap()], false);
    assert_eq!(r.code(), 2);
    assert!(r.stderr().contains("at /http/0/request/methd: unknown field `methd`"), "{}", r.stderr());
    // And a config that does not fit the plugin's schema, at the fixture's /config.
    let plain = dir.path().join("plain.wasm");
    std::fs::write(&plain, Plugin::new(FIRST_CALL).build()).unwrap();
    let f = fixture(&json!({"config": {"timeout_ms": "soon"}}));
    let r = env.run(&["plugins", "test", plain.to_str().unwrap(), "--fixture", f.to_str().unwrap()], false);
    assert_eq!(r.code(), 2);
    assert!(r.stderr().contains("fixture.json /config/timeout_ms: error[bad-timeout]"), "{}", r.stderr());
}

/// A language the machine can build, with what its build needs on `PATH`.
struct Lang {
    flag: &'static str,
    source: &'static str,
    /// The edit an author makes: the upper-case expression, and what it becomes.
    edit: (&'static str, &'static str),
    path: Option<PathBuf>,
}

fn languages() -> Vec<Lang> {
    let mut out = Vec::new();
    if tools::available("scaffolds (JavaScript)", &[&tools::NODE]) {
        out.push(Lang {
            flag: "js",
            source: "plugin.js",
            edit: ("config.text.toUpperCase()", "config.text.toUpperCase() + \"!\""),
            path: None,
        });
    }
    if let Some(bin) = tools::componentize_py("scaffolds (Python)") {
        out.push(Lang {
            flag: "python",
            source: "plugin.py",
            edit: ("config[\"text\"].upper()", "config[\"text\"].upper() + \"!\""),
            path: Some(bin),
        });
    }
    if tools::available("scaffolds (C)", &[&tools::CLANG_WASI]) {
        out.push(Lang {
            flag: "c",
            source: "plugin.c",
            edit: (
                "tern_set(s, save_as, loud);",
                "tern_set(s, save_as, strcat(strcpy(malloc(strlen(loud) + 2), loud), \"!\"));",
            ),
            path: None,
        });
    }
    out
}

/// Each language from its scaffold: `new`, then the scaffold's fixture passes out of the box;
/// an edit, and the old fixture fails with the difference; the fixture updated, it passes;
/// `install`; and a flow using the three steps through `tern serve`.
#[test]
fn a_scaffold_in_each_language_builds_tests_installs_and_serves() {
    let env = Env::new();
    let work = tempfile::tempdir().unwrap();
    let langs = languages();
    let mut steps = Vec::new();
    for lang in &langs {
        let name = format!("acme.loud-{}", lang.flag);
        let folder = work.path().join(format!("acme-loud-{}", lang.flag));
        let r = run_in(&env, work.path(), None, &["plugins", "new", &name, "--lang", lang.flag]);
        assert_eq!(r.code(), 0, "{}", r.stderr());
        assert!(r.stdout().contains("fixture.json") && r.stdout().contains(lang.source), "{}", r.stdout());
        if lang.flag == "js" {
            // `npm install`: the componentize-qjs these tests installed, linked in.
            let modules = tools::componentize_qjs().parent().unwrap().parent().unwrap().to_path_buf();
            std::os::unix::fs::symlink(&modules, folder.join("node_modules")).unwrap();
        }
        let wasm = format!("acme-loud-{}.wasm", lang.flag);
        let build = |what: &str| {
            let r = run_in(&env, &folder, lang.path.as_deref(), &["plugins", "build", "."]);
            assert_eq!(r.code(), 0, "{what}: {}{}", r.stdout(), r.stderr());
            assert!(r.stdout().contains(&wasm) && r.stdout().contains("tern plugins test"), "{}", r.stdout());
        };
        let test = || run_in(&env, &folder, None, &["plugins", "test", &wasm, "--fixture", "fixture.json"]);
        build(lang.flag);
        let r = test();
        assert_eq!(r.code(), 0, "{}: the scaffold's fixture passes: {}{}", lang.flag, r.stdout(), r.stderr());
        assert!(r.stdout().contains("\"loud\": \"HELLO\""), "{}", r.stdout());

        let source = folder.join(lang.source);
        let text = std::fs::read_to_string(&source).unwrap();
        assert!(text.contains(lang.edit.0), "{}: {text}", lang.flag);
        std::fs::write(&source, text.replace(lang.edit.0, lang.edit.1)).unwrap();
        build("edited");
        let r = test();
        assert_eq!(r.code(), 1, "{}: {}", lang.flag, r.stdout());
        assert!(r.stderr().contains("variable `loud` is \"HELLO!\"; the fixture expects \"HELLO\""), "{}", r.stderr());
        let fixture = folder.join("fixture.json");
        let updated = std::fs::read_to_string(&fixture).unwrap().replace("\"HELLO\"", "\"HELLO!\"");
        std::fs::write(&fixture, updated).unwrap();
        let r = test();
        assert_eq!(r.code(), 0, "{}: {}{}", lang.flag, r.stdout(), r.stderr());

        let r = run_in(&env, &folder, None, &["plugins", "install", &wasm]);
        assert_eq!(r.code(), 0, "{}", r.stderr());
        let var = format!("loud_{}", lang.flag);
        steps.push(
            json!({"id": format!("step_{}", lang.flag), "type": name, "text": "{{message.text}}", "save_as": var}),
        );
    }
    if steps.is_empty() {
        return;
    }
    let r = run_in(&env, work.path(), None, &["plugins", "list"]);
    for lang in &langs {
        assert!(r.stdout().contains(&format!("acme.loud-{}", lang.flag)), "{}", r.stdout());
    }
    let text: Vec<String> = langs.iter().map(|l| format!("{{{{loud_{}}}}}", l.flag)).collect();
    steps.push(json!({"id": "say", "type": "send_message", "text": text.join(" ")}));
    let flows = tempfile::tempdir().unwrap();
    let flow = json!({"version": 1, "id": "loud", "trigger": {"type": "message", "match": {"keywords": ["hi"]}}, "steps": steps});
    std::fs::write(flows.path().join("loud.json"), flow.to_string()).unwrap();
    let (_server, url) = serve(&env, flows.path());
    crate::serve::rt().block_on(async {
        let client = reqwest::Client::new();
        let (_, r) = crate::serve::post(&client, &url, "loud-1", json!({"text": "hi"})).await;
        let want: Vec<&str> = langs.iter().map(|_| "HI!").collect();
        assert_eq!(r["replies"][0]["text"], want.join(" "), "{r}");
    });
}

/// The Python example is a CRM lookup that maps two fields in at most 30 lines of its author's
/// code; its fixture passes offline, and the same component calls a real OAuth-protected API
/// through an integration in `tern run` and `tern serve`.
#[test]
fn the_python_example_maps_two_crm_fields_through_an_integration() {
    let Some(bin) = tools::componentize_py("the_python_example_maps_two_crm_fields_through_an_integration") else {
        return;
    };
    let example = repo().join("plugins/examples/py-crm-lookup");
    let n = python_code_lines(&example.join("plugin.py"));
    assert!(n <= 30, "py-crm-lookup: {n} lines of code");
    let env = Env::new();
    let wasm = env.plugins.path().join("crm-contact-name.wasm");
    let r = run_in(
        &env,
        &repo(),
        Some(&bin),
        &["plugins", "build", example.to_str().unwrap(), "-o", wasm.to_str().unwrap()],
    );
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    let fixture = example.join("fixture.json");
    let r = env.run(&["plugins", "test", wasm.to_str().unwrap(), "--fixture", fixture.to_str().unwrap()], false);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());

    crm_example_through_an_integration(&env, "py-crm-lookup");
}

const PYTHON_PROBE: &str = r#"
import os
from tern_step import fetch, step


def run(config, variables, invocation):
    if config["action"] == "open":
        return {"out": open("/etc/hostname").read()}
    if config["action"] == "environ":
        return {"out": os.environ.get("HOME", "none")}
    if config["action"] == "fail":
        return {"out": {}["missing"]}
    return {"out": fetch("https://elsewhere.example/").text()}


WitWorld = step(name="acme.probe", version="0.1.0", description="Tries the sandbox",
                config={"action": {"type": "string"}}, required=["action"],
                output={"out": {"type": "string"}}, run=run)
"#;

/// Python keeps the sandbox: a component that imports WASI is refused at load time with the
/// import's name; the one `tern plugins build` makes has WASI stubbed inside it, so opening a
/// file fails the step (nothing of the host's is read); an origin the operator did not allow is
/// denied with its reason; and an exception reaches the step error with its words.
#[test]
fn a_python_plugin_gets_no_wasi_and_no_undeclared_origin() {
    let Some(bin) = tools::componentize_py("a_python_plugin_gets_no_wasi_and_no_undeclared_origin") else {
        return;
    };
    let env = Env::new();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("plugin.py"), PYTHON_PROBE).unwrap();
    std::fs::write(dir.path().join("tern_step.py"), tern_plugins::scaffold::PY_HELPER).unwrap();

    // Built without stubbing WASI (componentize-py's default): refused, naming the import.
    let raw = dir.path().join("raw.wasm");
    let out = std::process::Command::new(bin.join("componentize-py"))
        .arg("-d")
        .arg(repo().join("plugins/wit"))
        .args(["-w", "step", "componentize", "plugin", "-o"])
        .arg(&raw)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r = env.run(&["plugins", "check", raw.to_str().unwrap(), "--step-config", r#"{"action": "open"}"#], false);
    assert_eq!(r.code(), 2, "{}", r.stdout());
    assert!(r.stderr().contains("wasi:"), "{}", r.stderr());

    let wasm = dir.path().join("probe.wasm");
    let r = run_in(&env, dir.path(), Some(&bin), &["plugins", "build", ".", "-o", wasm.to_str().unwrap()]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    let r = env.run(&["plugins", "check", wasm.to_str().unwrap(), "--step-config", r#"{"action": "open"}"#], false);
    assert_ne!(r.code(), 0);
    let host_name = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    assert!(host_name.trim().is_empty() || !r.stdout().contains(host_name.trim()), "{}", r.stdout());
    assert!(r.stdout().contains("plugin-trap") || r.stdout().contains("plugin-fatal"), "{}", r.stdout());
    let r = env.run(&["plugins", "check", wasm.to_str().unwrap(), "--step-config", r#"{"action": "environ"}"#], false);
    let home = std::env::var("HOME").unwrap_or_default();
    assert!(!r.stdout().contains(&format!("\"out\": \"{home}\"")), "{}", r.stdout());

    let fixture = dir.path().join("fetch.json");
    std::fs::write(
        &fixture,
        json!({"config": {"action": "fetch"},
               "expect": {"error": "plugin-fatal", "error_contains": "is not an origin this plugin may call"}})
        .to_string(),
    )
    .unwrap();
    let r = env.run(&["plugins", "test", wasm.to_str().unwrap(), "--fixture", fixture.to_str().unwrap()], false);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());

    let r = env.run(&["plugins", "check", wasm.to_str().unwrap(), "--step-config", r#"{"action": "fail"}"#], false);
    assert_ne!(r.code(), 0);
    assert!(r.stdout().contains("KeyError") && r.stdout().contains("plugin.py"), "{}", r.stdout());
}
