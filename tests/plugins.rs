//! WebAssembly step plugins end to end: hand-written WAT components for every failure mode and
//! for the host's HTTP policy, and the two example plugins (C and JavaScript) built from source
//! and run through `tern run` and `tern serve`.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::support::tools;
use crate::support::wasm::{FIRST_CALL, Plugin, header_store};
use crate::support::{Flows, Run, TestApi, fresh_data_dir, repo, tern};

/// A data directory, a plugin directory and flow files for one test.
pub(crate) struct Env {
    data: PathBuf,
    pub(crate) plugins: tempfile::TempDir,
    flows: Flows,
}

impl Env {
    pub(crate) fn new() -> Self {
        Self { data: fresh_data_dir(), plugins: tempfile::tempdir().unwrap(), flows: Flows::new() }
    }

    pub(crate) fn cmd(&self) -> Command {
        let mut c = tern();
        c.env("TERN_DATA_DIR", &self.data).env("TERN_PLUGINS_DIR", self.plugins.path());
        c
    }

    fn install(&self, file: &str, bytes: &[u8]) -> PathBuf {
        let path = self.plugins.path().join(file);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    pub(crate) fn run(&self, args: &[&str], private: bool) -> Run {
        let mut c = self.cmd();
        if private {
            c.env("TERN_ALLOW_PRIVATE_NETWORK", "1");
        }
        Run { output: c.args(args).output().unwrap() }
    }

    /// `tern run FLOW --json` with the messages; the result JSON.
    pub(crate) fn run_flow(&self, flow: &Value, messages: &[&str], private: bool) -> Value {
        let path = self.flows.write("flow", flow);
        let mut args = vec!["run", path.to_str().unwrap(), "--json"];
        for m in messages {
            args.extend(["-m", m]);
        }
        let r = self.run(&args, private);
        assert!(r.code() <= 1, "{}", r.stderr());
        serde_json::from_str(&r.stdout()).unwrap_or_else(|e| panic!("{e}: {} {}", r.stdout(), r.stderr()))
    }
}

fn one_step(step: Value) -> Value {
    json!({"version": 1, "id": "p", "steps": [step, {"id": "say", "type": "send_message", "text": "{{greeting}}"}]})
}

#[test]
fn a_fresh_instance_per_execution_and_outcomes_route_the_flow() {
    let env = Env::new();
    env.install("first.wasm", &Plugin::new(FIRST_CALL).build());
    let flow = json!({"version": 1, "id": "p", "steps": [
        {"id": "a", "type": "wat.test"},
        {"id": "b", "type": "wat.test", "outcomes": {"first": "say_first", "again": "say_again"}},
        {"id": "say_again", "type": "send_message", "text": "state leaked", "next": "end"},
        {"id": "say_first", "type": "send_message", "text": "{{greeting}}, fresh again"}
    ]});
    let r = env.run_flow(&flow, &["go"], false);
    assert_eq!(r["status"], "completed", "{r}");
    assert_eq!(r["replies"][0]["text"], "hi, fresh again", "{r}");
    assert_eq!(r["trace"][0]["detail"]["outcome"], "first");
    assert_eq!(r["variables"]["greeting"], "hi");

    // A variable the step does not declare is refused.
    let sneaky = Plugin::new(r#"(call $ok (global.get $bad_ptr) (global.get $bad_len) (i32.const 0) (i32.const 0))"#)
        .string("bad", r#"{"contact_token":"x"}"#);
    env.install("first.wasm", &sneaky.build());
    let r = env.run_flow(&one_step(json!({"id": "p", "type": "wat.test"})), &["go"], false);
    assert_eq!(r["error"]["code"], "plugin-output", "{r}");
    assert!(r["error"]["message"].as_str().unwrap().contains("`contact_token`"), "{r}");
}

#[test]
fn traps_timeouts_memory_and_big_output_are_step_errors_naming_the_plugin() {
    let env = Env::new();
    let cases = [
        ("(loop $l (br $l)) (unreachable)", "plugin-timeout", "did not finish within its 300 ms"),
        (
            "(loop $l (br_if $l (i32.ne (memory.grow (i32.const 64)) (i32.const -1)))) (unreachable)",
            "plugin-memory",
            "needed more than 64 MiB of memory",
        ),
        ("(unreachable)", "plugin-trap", "aborted without an error value"),
        (
            "(call $ok (i32.const 131072) (i32.const 2000000) (i32.const 0) (i32.const 0))",
            "plugin-output",
            "the limit is 1048576 bytes",
        ),
        (
            "(call $ok (global.get $ok_ptr) (global.get $ok_len) (i32.const 0) (i32.const 0))",
            "plugin-output",
            "not a JSON object",
        ),
    ];
    for (body, code, message) in cases {
        env.install("p.wasm", &Plugin::new(body).build());
        let r = env.run_flow(&one_step(json!({"id": "p", "type": "wat.test", "timeout_ms": 300})), &["go"], false);
        assert_eq!(r["status"], "failed", "{body}: {r}");
        assert_eq!(r["error"]["code"], code, "{body}: {r}");
        let text = r["error"]["message"].as_str().unwrap();
        assert!(text.starts_with("plugin `wat.test`: ") && text.contains(message), "{body}: {text}");
        assert_eq!(r["error"]["step"], "p");
    }
    // The step's on_error catches them.
    env.install("p.wasm", &Plugin::new("(unreachable)").build());
    let flow = json!({"version": 1, "id": "p", "steps": [
        {"id": "p", "type": "wat.test", "on_error": "sorry"},
        {"id": "ok", "type": "send_message", "text": "fine", "next": "end"},
        {"id": "sorry", "type": "send_message", "text": "sorry, that did not work"}
    ]});
    let r = env.run_flow(&flow, &["go"], false);
    assert_eq!(r["status"], "completed", "{r}");
    assert_eq!(r["replies"][0]["text"], "sorry, that did not work");
}

/// A field the plugin's schema does not list is a typo, said at its pointer with the nearest
/// listed field, without the schema having to say `additionalProperties: false`; a schema that
/// says what other fields may be keeps its own rule. A plugin step type no loaded plugin
/// defines says how plugins are installed.
#[test]
fn a_typo_in_a_plugin_steps_config_is_caught_without_additional_properties_false() {
    let env = Env::new();
    let listed = r#"{"type":"object","properties":{"greeting_name":{"type":"string"}}}"#;
    env.install("p.wasm", &Plugin::new(FIRST_CALL).string("schema", listed).build());
    let typo = env.flows.write("typo", &one_step(json!({"id": "p", "type": "wat.test", "greetng_name": "x"})));
    let r = env.run(&["validate", typo.to_str().unwrap()], false);
    assert_eq!(r.code(), 2, "{}", r.stderr());
    assert!(r.stderr().contains("error[unknown-field] at /steps/0/greetng_name"), "{}", r.stderr());
    assert!(r.stderr().contains("did you mean `greeting_name`"), "{}", r.stderr());
    let right = env.flows.write("right", &one_step(json!({"id": "p", "type": "wat.test", "greeting_name": "x"})));
    let r = env.run(&["validate", right.to_str().unwrap()], false);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let open = r#"{"type":"object","properties":{"greeting_name":{"type":"string"}},"additionalProperties":true}"#;
    env.install("p.wasm", &Plugin::new(FIRST_CALL).string("schema", open).build());
    let r = env.run(&["validate", typo.to_str().unwrap()], false);
    assert_eq!(r.code(), 0, "the schema allows other fields: {}", r.stderr());
    let missing = env.flows.write("missing", &one_step(json!({"id": "p", "type": "acme.lookup"})));
    let r = env.run(&["validate", missing.to_str().unwrap()], false);
    assert!(r.stderr().contains("tern plugins install"), "{}", r.stderr());
}

#[test]
fn components_outside_the_world_are_refused_at_load_time() {
    let env = Env::new();
    let flow = env.flows.write("f", &one_step(json!({"id": "p", "type": "wat.test"})));
    let validate = || env.run(&["validate", flow.to_str().unwrap()], false);

    let mut newer = Plugin::new(FIRST_CALL);
    newer.wit = newer.wit.replace("package tern:step@0.1.0;", "package tern:step@0.2.0;");
    newer.version = "0.2.0";
    env.install("p.wasm", &newer.build());
    let r = validate();
    assert_eq!(r.code(), 2);
    assert!(r.stderr().contains("built for tern:step@0.2.0; this Tern supports tern:step@0.1.0"), "{}", r.stderr());

    let mut getenv = Plugin::new(FIRST_CALL);
    getenv.wit = getenv.wit.replace("world step {", "world step {\n    import getenv: func() -> string;");
    getenv.extra_imports = r#"(import "$root" "getenv" (func (param i32)))"#.into();
    env.install("p.wasm", &getenv.build());
    let r = validate();
    assert_eq!(r.code(), 2);
    assert!(r.stderr().contains("imports `getenv`, which Tern does not provide"), "{}", r.stderr());

    env.install("p.wasm", &wat::parse_str("(module)").unwrap());
    let r = validate();
    assert_eq!(r.code(), 2);
    assert!(r.stderr().contains("core WebAssembly module, not a component"), "{}", r.stderr());

    std::fs::write(env.plugins.path().join("p.wasm"), b"not wasm").unwrap();
    let r = validate();
    assert_eq!(r.code(), 2);
    assert!(r.stderr().contains("p.wasm") && r.stderr().contains("magic number"), "{}", r.stderr());
}

/// A plugin that GETs `url` with `Authorization: Bearer plugin-fake` and `X-Test: 1`, naming
/// `integration` when it is not empty; the outcome is `ok` or the host's error message.
fn fetcher(url: &str, integration: &str) -> Vec<u8> {
    let body = format!(
        "{} {} (call $get (global.get $url_ptr) (global.get $url_len) (i32.const 2) (global.get $int_ptr) (global.get $int_len))",
        header_store(0, "h_auth", "v_auth"),
        header_store(1, "h_test", "v_test"),
    );
    Plugin::new(&body)
        .string("url", url)
        .string("int", integration)
        .string("h_auth", "Authorization")
        .string("v_auth", "Bearer plugin-fake")
        .string("h_test", "X-Test")
        .string("v_test", "1")
        .build()
}

#[test]
fn http_fetch_follows_the_outbound_policy_and_injects_the_token() {
    let env = Env::new();
    let api = TestApi::start();
    let out = env
        .cmd()
        .args(["secrets", "set", "API_KEY", "--from-env", "KEYVAL"])
        .env("KEYVAL", "tok_static_0123456789")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r = env.run(
        &["integrations", "add", "api", "--kind", "static", "--static-secret", "API_KEY", "--api-origin", &api.url()],
        false,
    );
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let step = json!({"id": "p", "type": "wat.test", "integration": "api"});
    let outcome = |r: &Value| r["trace"][0]["detail"]["outcome"].as_str().unwrap_or_default().to_string();

    // The plugin's own Authorization is removed; the API sees only the injected token.
    env.install("p.wasm", &fetcher(&format!("{}/anything", api.url()), "api"));
    let r = env.run_flow(&one_step(step.clone()), &["go"], true);
    assert_eq!(outcome(&r), "ok", "{r}");
    let seen = api.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].header("authorization"), Some("Bearer tok_static_0123456789"));
    assert_eq!(seen[0].header("x-test"), Some("1"));
    assert_eq!(r["trace"][0]["detail"]["requests"][0]["status"], 200, "{r}");
    assert!(!r.to_string().contains("tok_static_0123456789"), "the token never reaches the run's output");

    // Another origin with the integration's token: denied before connecting.
    env.install("p.wasm", &fetcher(&format!("{}/anything", api.other_origin_url()), "api"));
    let r = env.run_flow(&one_step(step.clone()), &["go"], true);
    assert!(outcome(&r).contains("may not be sent to http://localhost"), "{r}");
    assert_eq!(api.requests().len(), 1);

    // A private address without --allow-private-network: the SSRF guard says no.
    env.install("p.wasm", &fetcher(&format!("{}/anything", api.url()), "api"));
    let r = env.run_flow(&one_step(step.clone()), &["go"], false);
    assert!(outcome(&r).contains("was denied"), "{r}");
    assert_eq!(api.requests().len(), 1);

    // An integration the step does not name.
    let r = env.run_flow(&one_step(json!({"id": "p", "type": "wat.test"})), &["go"], true);
    assert!(outcome(&r).contains("is not named in this step's configuration"), "{r}");

    // No integration: only origins the operator allowed.
    env.install("p.wasm", &fetcher(&format!("{}/anything", api.url()), ""));
    let r = env.run_flow(&one_step(json!({"id": "p", "type": "wat.test"})), &["go"], true);
    assert!(outcome(&r).contains("is not an origin this plugin may call"), "{r}");
    std::fs::write(env.plugins.path().join("p.allow"), format!("# test API\n{}\n", api.url())).unwrap();
    let r = env.run_flow(&one_step(json!({"id": "p", "type": "wat.test"})), &["go"], true);
    assert_eq!(outcome(&r), "ok", "{r}");
    let seen = api.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].header("authorization"), None, "no credential at all without an integration");
}

#[test]
fn plugins_install_list_and_clash_with_built_in_steps() {
    let env = Env::new();
    let scratch = tempfile::tempdir().unwrap();
    let file = scratch.path().join("downloaded.wasm");
    std::fs::write(&file, Plugin::new(FIRST_CALL).build()).unwrap();
    let r =
        env.run(&["plugins", "install", file.to_str().unwrap(), "--allow-origin", "https://api.example.com"], false);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert!(r.stdout().contains("installed wat.test 0.0.1"), "{}", r.stdout());
    assert!(env.plugins.path().join("wat.test.wasm").exists());
    let r = env.run(&["plugins", "list", "--json"], false);
    let list: Value = serde_json::from_str(&r.stdout()).unwrap();
    assert_eq!(list[0]["type"], "wat.test");
    assert_eq!(list[0]["allowed_origins"], json!(["https://api.example.com"]));
    let r = env.run(&["plugins", "install", file.to_str().unwrap()], false);
    assert_eq!(r.code(), 2);
    assert!(r.stderr().contains("--replace"), "{}", r.stderr());
    // The text list shows the step type, the version, the start of the SHA-256 and the origins;
    // `install --sha256` installs only the file with that checksum.
    let sha = list[0]["sha256"].as_str().unwrap().to_string();
    let text = env.run(&["plugins", "list"], false).stdout();
    assert!(
        text.contains("wat.test") && text.contains(&sha[..12]) && text.contains("https://api.example.com"),
        "{text}"
    );
    let wrong = "0".repeat(64);
    let r = env.run(&["plugins", "install", file.to_str().unwrap(), "--replace", "--sha256", &wrong], false);
    assert_ne!(r.code(), 0);
    assert!(r.stderr().contains("not the plugin you meant") && r.stderr().contains(&sha), "{}", r.stderr());
    let r = env.run(&["plugins", "install", file.to_str().unwrap(), "--replace", "--sha256", &sha], false);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let left: Vec<_> =
        std::fs::read_dir(env.plugins.path()).unwrap().filter_map(|e| e.ok()).map(|e| e.file_name()).collect();
    assert!(left.iter().all(|n| !n.to_string_lossy().ends_with(".staging")), "nothing staged is left: {left:?}");

    // `tern schema` includes the plugin's step type.
    let schema = env.run(&["schema"], false).stdout();
    assert!(schema.contains("\"wat.test\"") && schema.contains("timeout_ms"), "the plugin is in the schema");

    // `check` loads, describes and runs a component once.
    let r = env.run(&["plugins", "check", file.to_str().unwrap(), "--step-config", r#"{"x": 1}"#], false);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert!(r.stdout().contains("\"type\": \"wat.test\"") && r.stdout().contains("world version OK"), "{}", r.stdout());
    assert!(
        r.stdout().contains("\"outcome\": \"first\"") && r.stdout().contains("\"greeting\": \"hi\""),
        "{}",
        r.stdout()
    );
    std::fs::write(&file, Plugin::new("(unreachable)").build()).unwrap();
    let r = env.run(&["plugins", "check", file.to_str().unwrap()], false);
    assert_eq!(r.code(), 1, "a failing sample run fails the check");
    assert!(r.stdout().contains("plugin-trap"), "{}", r.stdout());

    let mut clash = Plugin::new(FIRST_CALL);
    clash.name = "send_message".into();
    std::fs::write(&file, clash.build()).unwrap();
    let r = env.run(&["plugins", "install", file.to_str().unwrap()], false);
    assert_eq!(r.code(), 2);
    assert!(r.stderr().contains("is a built-in step"), "{}", r.stderr());
}

/// Builds the C example from source into `dir/name-parts.wasm`.
fn build_c_example(dir: &Path) -> PathBuf {
    let out = dir.join("name-parts.wasm");
    let work = tempfile::tempdir().unwrap();
    tern_plugin_build::build_c(
        &repo().join("plugins/examples/c-name-parts"),
        &repo().join("plugins/wit"),
        work.path(),
        &out,
    )
    .expect("the C example builds (needs clang-19, lld-19, wasi-libc, libclang-rt-19-dev-wasm32)");
    out
}

/// Builds the JavaScript example from source (componentize-qjs from npm) into `dir`.
fn build_js_example(dir: &Path) -> PathBuf {
    build_js(&repo().join("plugins/examples/js-crm-lookup"), &dir.join("crm-lookup.wasm"))
}

/// Builds `src/plugin.js`, which imports the helper library as `../../sdk/js/tern-step.js`,
/// into `out` the way the examples' `npm run build` does.
fn build_js(src: &Path, out_file: &Path) -> PathBuf {
    let out = Command::new(tools::componentize_qjs())
        .args(["--wit"])
        .arg(repo().join("plugins/wit"))
        .args(["--world", "step", "--js", "plugin.js", "--module-root", "../..", "--sync", "--stub-wasi", "-o"])
        .arg(out_file)
        .current_dir(src)
        .output()
        .unwrap();
    assert!(out.status.success(), "componentize-qjs: {}", String::from_utf8_lossy(&out.stderr));
    out_file.to_path_buf()
}

/// The lines of a step's source that are its author's code: not blank, not a comment.
fn code_lines(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with("//"))
        .count()
}

/// With the JavaScript helper library a step is its logic: the upper-case step and the CRM
/// lookup are at most 30 lines of their author's code each (the README counts them), and an
/// exception the step throws reaches the step's error with its message and where it was
/// thrown, not as a bare trap.
#[test]
fn a_javascript_step_with_the_helper_library_is_short_and_its_exceptions_have_words() {
    if !tools::available("a_javascript_step_with_the_helper_library", &[&tools::NODE]) {
        return;
    }
    let examples = repo().join("plugins/examples");
    for (name, most) in [("js-shout", 30), ("js-crm-lookup", 30)] {
        let n = code_lines(&examples.join(name).join("plugin.js"));
        assert!(n <= most, "{name}: {n} lines of code");
    }
    let env = Env::new();
    build_js(&examples.join("js-shout"), &env.plugins.path().join("shout.wasm"));
    let flow = one_step(json!({"id": "p", "type": "text.shout", "text": "{{message.text}}", "save_as": "greeting"}));
    let r = env.run_flow(&flow, &["hello grâce"], false);
    assert_eq!(r["replies"][0]["text"], "HELLO GRÂCE", "{r}");

    // A step that throws, built the same way from a copy of the library.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("sdk/js")).unwrap();
    std::fs::copy(repo().join("plugins/sdk/js/tern-step.js"), dir.path().join("sdk/js/tern-step.js")).unwrap();
    let src = dir.path().join("examples/boom");
    std::fs::create_dir_all(&src).unwrap();
    let thrower = std::fs::read_to_string(examples.join("js-shout/plugin.js"))
        .unwrap()
        .replace("config.text.toUpperCase()", "config.missing.field")
        .replace("text.shout", "text.boom");
    std::fs::write(src.join("plugin.js"), thrower).unwrap();
    let boom = build_js(&src, &dir.path().join("boom.wasm"));
    let r =
        env.run(&["plugins", "check", boom.to_str().unwrap(), "--step-config", r#"{"text":"x","save_as":"y"}"#], false);
    assert_ne!(r.code(), 0);
    assert!(r.stdout().contains("TypeError") && r.stdout().contains("plugin.js"), "{}{}", r.stdout(), r.stderr());
    assert!(!r.stdout().contains("unreachable"), "{}", r.stdout());
}

fn example_flow(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(repo().join(format!("plugins/examples/{name}/flow.json"))).unwrap())
        .unwrap()
}

/// `tern serve` with a plugin directory; returns the server and its base URL.
pub(crate) fn serve(env: &Env, flows: &Path) -> (crate::serve::Server, String) {
    let mut cmd = env.cmd();
    cmd.env("TERN_ALLOW_PRIVATE_NETWORK", "1").env("TERN_ADMIN_TOKEN", crate::serve::ADMIN).args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--flows",
        flows.to_str().unwrap(),
    ]);
    let server = crate::serve::Server::spawn(cmd);
    let url = server.url.clone();
    (server, url)
}

#[test]
fn the_c_example_splits_names_in_tern_run_and_tern_serve() {
    if !tools::available("the_c_example_splits_names_in_tern_run_and_tern_serve", &[&tools::CLANG_WASI]) {
        return;
    }
    let env = Env::new();
    build_c_example(env.plugins.path());
    let flow = example_flow("c-name-parts");
    let r = env.run_flow(&flow, &["hello", "   ", "grace   brewster hopper"], false);
    let replies: Vec<&str> = r["replies"].as_array().unwrap().iter().map(|x| x["text"].as_str().unwrap()).collect();
    assert_eq!(
        replies,
        ["What is your full name?", "What is your full name?", "Nice to meet you, grace! (brewster hopper)"],
        "{r}"
    );
    // Names are spelt as written, never re-cased.
    let r = env.run_flow(&flow, &["hello", "Ada  de la Cruz"], false);
    assert_eq!(r["variables"]["first_name"], "Ada", "{r}");
    assert_eq!(r["variables"]["last_name"], "de la Cruz", "{r}");

    // Without `first_as`/`last_as` the step sets the defaults its schema states, and
    // `tern validate` knows those variables.
    let mut defaults = flow.clone();
    defaults["steps"][1] = json!({"id": "split", "type": "text.name-parts", "name": "{{full_name}}"});
    let path = env.flows.write("defaults", &defaults);
    let r = env.run(&["validate", path.to_str().unwrap()], false);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert!(r.stderr().contains("0 error(s), 0 warning(s)"), "{}", r.stderr());
    let r = env.run_flow(&defaults, &["hello", "grace hopper"], false);
    assert_eq!(r["status"], "completed", "{r}");
    assert_eq!(r["replies"][1]["text"], "Nice to meet you, grace! (hopper)", "{r}");

    // The plugin's JSON Schema checks the step in `tern validate`.
    let mut broken = flow.clone();
    broken["steps"][1] = json!({"id": "split", "type": "text.name-parts", "nam": "{{full_name}}"});
    let path = env.flows.write("broken", &broken);
    let r = env.run(&["validate", path.to_str().unwrap()], false);
    assert_eq!(r.code(), 2);
    assert!(r.stderr().contains("error[plugin-config] at /steps/1"), "{}", r.stderr());
    assert!(r.stderr().contains("\"name\" is a required property"), "{}", r.stderr());

    // The same flow through the conversation server.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("names.json"), flow.to_string()).unwrap();
    let (_server, url) = serve(&env, dir.path());
    let rt = crate::serve::rt();
    rt.block_on(async {
        let client = reqwest::Client::new();
        let (_, r) = crate::serve::post(&client, &url, "names-1", json!({"text": "hello"})).await;
        assert_eq!(r["replies"][0]["text"], "What is your full name?", "{r}");
        let (_, r) = crate::serve::post(&client, &url, "names-1", json!({"text": "ada lovelace"})).await;
        assert_eq!(r["replies"][0]["text"], "Nice to meet you, ada! (lovelace)", "{r}");
    });
}

#[test]
fn the_javascript_example_calls_the_crm_through_an_integration() {
    if !tools::available("the_javascript_example_calls_the_crm_through_an_integration", &[&tools::NODE]) {
        return;
    }
    let env = Env::new();
    build_js_example(env.plugins.path());
    let not_found = crm_example_through_an_integration(&env, "js-crm-lookup");
    let lookup = not_found["trace"].as_array().unwrap().iter().find(|t| t["step"] == "lookup").unwrap();
    assert_eq!(lookup["detail"]["outcome"], "not_found", "{not_found}");
}

/// Runs the CRM example flow `example` (its plugin installed in `env`) against the OAuth test
/// server through a client-credentials integration, in `tern run` (a known and an unknown
/// contact) and in `tern serve`; returns the unknown contact's run.
pub(crate) fn crm_example_through_an_integration(env: &Env, example: &str) -> Value {
    use crate::support::oauth::{AuthServer, CLIENT_ID, CLIENT_SECRET};
    let auth = AuthServer::start();
    let a = auth.url();
    let r = Run {
        output: env
            .cmd()
            .env("CS", CLIENT_SECRET)
            .args(["integrations", "add", "crm", "--kind", "client-credentials", "--client-id", CLIENT_ID])
            .args(["--client-secret-env", "CS", "--token-url", &format!("{a}/token"), "--api-origin", &a])
            .output()
            .unwrap(),
    };
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let flow: Value = serde_json::from_str(
        &example_flow(example).to_string().replace("https://api.focus.teamleader.eu", &format!("{a}/api")),
    )
    .unwrap();
    let r = env.run_flow(&flow, &["contact", "c1a2"], true);
    assert_eq!(r["replies"][1]["text"], "Erlich Bachman (c1a2)", "{r}");
    let not_found = env.run_flow(&flow, &["contact", "nobody"], true);
    assert_eq!(not_found["replies"][1]["text"], "There is no contact nobody.", "{not_found}");
    let headers = auth.api_auth_headers();
    assert!(headers.len() >= 2 && headers.iter().all(|h| h.starts_with("Bearer ")), "{headers:?}");

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("crm.json"), flow.to_string()).unwrap();
    let (_server, url) = serve(env, dir.path());
    crate::serve::rt().block_on(async {
        let client = reqwest::Client::new();
        let (_, r) = crate::serve::post(&client, &url, "crm-1", json!({"text": "contact"})).await;
        assert_eq!(r["replies"][0]["text"], "Which contact id?", "{r}");
        let (_, r) = crate::serve::post(&client, &url, "crm-1", json!({"text": "c1a2"})).await;
        assert_eq!(r["replies"][0]["text"], "Erlich Bachman (c1a2)", "{r}");
    });
    not_found
}

#[test]
fn what_a_plugin_logs_is_tagged_and_secrets_are_masked() {
    let env = Env::new();
    // Logs its whole configuration at info level.
    let body = "(call $log (i32.const 2) (local.get 11) (local.get 12))
        (call $ok (global.get $vars_ptr) (global.get $vars_len) (global.get $ok_ptr) (global.get $ok_len))";
    env.install("p.wasm", &Plugin::new(body).build());
    let flow = env.flows.write("f", &one_step(json!({"id": "p", "type": "wat.test", "key": "{{secrets.PLUGIN_KEY}}"})));
    let out = env
        .cmd()
        .env("RUST_LOG", "info")
        .env("TERN_SECRET_PLUGIN_KEY", "pk_live_0123456789abcdef")
        .args(["run", flow.to_str().unwrap(), "-m", "go"])
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout, "hi\n");
    assert!(stderr.contains("plugin=\"wat.test\"") && stderr.contains("step=\"p\""), "{stderr}");
    assert!(stderr.contains(r#"{"key":"[redacted]"}"#), "{stderr}");
    assert!(!stderr.contains("pk_live_0123456789abcdef") && !stdout.contains("pk_live"), "{stderr}");
}
