//! The documentation as a test: every fenced block of `README.md` and `plugins/README.md` is
//! listed in [`BLOCKS`] with the test that checks it, and every shell block is run as written,
//! in a copy of the repository, with the `tern` built for these tests on `PATH`.
//!
//! Placeholders are only used where a real secret or provider is needed: `…` in a command
//! becomes a placeholder value, `tern integrations authorize` (which waits for the provider's
//! callback) gets `--no-browser --timeout 1` and must print the provider's authorization URL,
//! the server's `127.0.0.1:8080` becomes a free port, and `cargo run --release --` becomes the
//! `tern` binary these tests built (the README says the two are interchangeable; a release
//! build would take longer than the whole suite), and `cargo run -p tern-plugin-build -- c DIR
//! -o FILE` runs the library function that binary's `main` calls (a nested cargo build would
//! resolve other features and rebuild the tool's dependencies, minutes on a 2-core machine).
//! `cargo install` is checked without installing (see [`install_command`]).
//!
//! A block added to either file without an entry in [`BLOCKS`] fails
//! [`every_block_of_the_readmes_is_checked`]; a block whose first line changes fails the test
//! that looks it up, so the list cannot go stale.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

use crate::support::{Run, TestApi, free_port, repo, tools};

/// How a block is checked: by the named test in this file, or (only for a block that is not a
/// command) as an illustration, with the reason.
enum Check {
    Test(&'static str),
    Illustration(&'static str),
}

/// Every fenced block of the two files, by file and first line.
const BLOCKS: &[(&str, &str, Check)] = &[
    ("README.md", "cargo install --path . --locked", Check::Test("install_command")),
    ("README.md", "cargo run --release -- demo", Check::Test("demo_command")),
    ("README.md", "scripts/test", Check::Test("test_command_is_what_ci_runs")),
    ("README.md", "mkdir -p my-flows", Check::Test("first_flow_walkthrough")),
    ("README.md", "tern validate my-flows/", Check::Test("first_flow_walkthrough")),
    ("README.md", "tern run my-flows/open-ticket.json", Check::Test("first_flow_walkthrough")),
    ("README.md", "tern serve --flows my-flows", Check::Test("first_flow_walkthrough")),
    ("README.md", "{", Check::Test("the_example_flow_is_the_file_in_flows_examples")),
    ("README.md", "error: step `lookup` failed [mapping]", Check::Test("the_mapping_error_is_what_tern_prints")),
    ("README.md", "tern run FLOW --message TEXT…", Check::Test("the_command_synopsis_matches_the_cli")),
    ("README.md", "flows/invalid/unknown-field.json:5:63", Check::Test("the_validate_example_is_what_tern_prints")),
    ("README.md", "tern flows graph flows/examples/", Check::Test("flows_graph_commands")),
    ("README.md", "tern serve --flows flows/examples", Check::Test("conversation_server_commands")),
    ("README.md", "curl -s -X POST http://127.0.0.1:8080", Check::Test("conversation_server_commands")),
    ("README.md", "curl -s -X PUT http://127.0.0.1:8080", Check::Test("conversation_server_commands")),
    ("README.md", "tern runs list --status failed", Check::Test("conversation_server_commands")),
    (
        "README.md",
        "tern openapi > docs/openapi.json",
        Check::Test("openapi_command_regenerates_the_committed_document"),
    ),
    ("README.md", "data_dir = \"/var/lib/tern\"", Check::Test("the_tern_toml_example_is_accepted")),
    (
        "README.md",
        "from standardwebhooks.webhooks import Webhook",
        Check::Test("the_webhook_receiver_example_is_the_tested_receiver"),
    ),
    ("README.md", "export SUPPORT_TOKEN=…", Check::Test("channel_commands")),
    ("README.md", "export TELEGRAM_BOT_TOKEN=…", Check::Test("telegram_commands")),
    ("README.md", "export WHATSAPP_APP_SECRET=…", Check::Test("whatsapp_commands")),
    ("README.md", "export TWILIO_AUTH_TOKEN=…", Check::Test("twilio_commands")),
    ("README.md", "export SLACK_SIGNING_SECRET=…", Check::Test("slack_commands")),
    ("README.md", "tern channels add site --kind web", Check::Test("web_chat_commands")),
    ("README.md", "\"steps\": [", Check::Test("the_choices_example_runs")),
    ("README.md", "{ \"id\": \"order_number\", \"type\": \"ask\"", Check::Test("the_time_examples_validate")),
    ("README.md", "{ \"id\": \"tomorrow\", \"type\": \"wait\"", Check::Test("the_time_examples_validate")),
    ("README.md", "\"variables\": { \"deals\"", Check::Test("the_loop_example_runs")),
    ("README.md", "\"variables\": { \"lines\"", Check::Test("the_expressions_example_runs")),
    ("README.md", "{ \"version\": 1, \"id\": \"identify\"", Check::Test("the_subflow_example_runs")),
    ("README.md", "{ \"id\": \"who\", \"type\": \"call_flow\"", Check::Test("the_subflow_example_runs")),
    (
        "README.md",
        "{ \"integrations\": { \"teamleader\"",
        Check::Test("the_flow_test_example_is_the_file_in_flows_examples"),
    ),
    ("README.md", "tern test flows/examples", Check::Test("flow_test_commands")),
    ("README.md", "export TL_SECRET=…", Check::Test("integration_commands")),
    ("README.md", "tern integrations add zoho", Check::Test("integration_commands")),
    ("README.md", "tern integrations add google", Check::Test("integration_commands")),
    ("README.md", "tern integrations add billing", Check::Test("integration_commands")),
    ("README.md", "export ERP_PASSWORD=…", Check::Test("credential_kind_commands")),
    ("README.md", "export BANK_KEY=…", Check::Test("client_certificate_commands")),
    ("README.md", "tern channels add ops --kind generic", Check::Test("connection_events_commands")),
    ("README.md", "tern api teamleader /contacts.info", Check::Test("integration_commands")),
    ("README.md", "cargo run -p tern-plugin-build", Check::Test("step_plugin_commands")),
    ("README.md", "Cargo.toml        workspace", Check::Test("layouts_name_existing_paths")),
    ("README.md", "cargo install cargo-fuzz --locked", Check::Test("fuzz_commands_name_real_targets")),
    ("plugins/README.md", "plugins/", Check::Test("layouts_name_existing_paths")),
    ("plugins/README.md", "{ \"id\": \"split\"", Check::Illustration("a step inside a flow; the example flows run it")),
    (
        "plugins/README.md",
        "tern plugins check plugins/examples/c-name-parts/name-parts.wasm",
        Check::Test("plugin_guide_commands"),
    ),
    ("plugins/README.md", "#include \"step.h\"", Check::Test("the_c_snippet_builds_with_the_crates_io_tools")),
    ("plugins/README.md", "cargo run -p tern-plugin-build", Check::Test("plugin_guide_commands")),
    ("plugins/README.md", "wit-bindgen c plugins/wit", Check::Test("the_c_snippet_builds_with_the_crates_io_tools")),
    ("plugins/README.md", "import host from", Check::Test("plugin_guide_commands")),
    ("plugins/README.md", "(cd plugins/examples/js-crm-lookup", Check::Test("plugin_guide_commands")),
    ("plugins/README.md", "tern plugins new acme.shout", Check::Test("plugin_scaffold_commands")),
    ("plugins/README.md", "{ \"config\"", Check::Test("the_fixture_example_is_the_python_examples_fixture")),
    ("plugins/README.md", "python3 -m venv ~/.cache/tern-componentize-py", Check::Test("python_plugin_commands")),
];

/// A fenced block: where it starts, its language, its text (with the list indentation removed).
struct Block {
    file: &'static str,
    line: usize,
    lang: String,
    text: String,
}

impl Block {
    fn first_line(&self) -> &str {
        self.text.lines().find(|l| !l.trim().is_empty()).unwrap_or("")
    }

    /// Whether the block is the one `key` names: its first line starts with `key`, or is `key`
    /// itself when the key is one character (`{` names the block whose first line is just `{`).
    fn is(&self, key: &str) -> bool {
        let first = self.first_line();
        if key.chars().count() == 1 { first.trim_end() == key } else { first.starts_with(key) }
    }
}

fn blocks(file: &'static str) -> Vec<Block> {
    let text = std::fs::read_to_string(repo().join(file)).unwrap();
    let mut out = Vec::new();
    let mut open: Option<(usize, String, usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix("```") {
            match open.take() {
                None => open = Some((i + 1, rest.trim().to_string(), line.len() - trimmed.len(), String::new())),
                Some((line, lang, _, text)) => out.push(Block { file, line, lang, text }),
            }
        } else if let Some((_, _, indent, body)) = open.as_mut() {
            body.push_str(line.get(*indent..).unwrap_or(trimmed));
            body.push('\n');
        }
    }
    assert!(open.is_none(), "{file}: a fenced block is not closed");
    out
}

/// The one block of `file` whose first line starts with `first`.
fn block(file: &'static str, first: &str) -> Block {
    let mut found: Vec<Block> = blocks(file).into_iter().filter(|b| b.is(first)).collect();
    assert_eq!(found.len(), 1, "{file} should have exactly one block starting with `{first}`");
    found.remove(0)
}

#[test]
fn every_block_of_the_readmes_is_checked() {
    let mut problems = Vec::new();
    for file in ["README.md", "plugins/README.md"] {
        for b in blocks(file) {
            let entries: Vec<_> = BLOCKS.iter().filter(|(f, first, _)| *f == file && b.is(first)).collect();
            match entries.as_slice() {
                [] => problems.push(format!(
                    "{file}:{}: the block starting `{}` has no entry in tests/readme.rs BLOCKS (add a test that runs it)",
                    b.line,
                    b.first_line()
                )),
                [(_, _, Check::Illustration(_))] if b.lang == "sh" => problems.push(format!(
                    "{file}:{}: a shell block cannot be an illustration; add a test that runs it",
                    b.line
                )),
                [_] => {}
                _ => problems.push(format!("{file}:{}: more than one BLOCKS entry matches", b.line)),
            }
        }
    }
    let this_file = std::fs::read_to_string(repo().join("tests/readme.rs")).unwrap();
    for (file, first, check) in BLOCKS {
        if !blocks(file).iter().any(|b| b.is(first)) {
            problems.push(format!("{file}: BLOCKS lists `{first}`, which is no longer there"));
        }
        match check {
            Check::Test(name) if !this_file.contains(&format!("#[test]\nfn {name}()")) => {
                problems
                    .push(format!("{file}: `{first}` names the test `{name}`, which tests/readme.rs does not have"));
            }
            Check::Illustration("") => problems.push(format!("{file}: `{first}`: say why")),
            _ => {}
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// A copy of the repository (without build output and npm packages) with `tern` on `PATH`,
/// an empty data directory and a free port for the public URL.
struct Sandbox {
    root: tempfile::TempDir,
    bin: tempfile::TempDir,
    data: tempfile::TempDir,
    public_port: u16,
    env: Vec<(String, String)>,
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        let (src, dst) = (entry.path(), to.join(&name));
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            if ["target", ".git", "node_modules"].iter().any(|n| name == *n) {
                continue;
            }
            copy_tree(&src, &dst);
        } else if kind.is_file() && src.extension().is_none_or(|e| e != "wasm") {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

/// The target directory the tests were built in: nested `cargo` commands share it.
fn target_dir() -> PathBuf {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_tern"));
    exe.parent().and_then(Path::parent).unwrap().to_path_buf()
}

impl Sandbox {
    fn new() -> Self {
        let root = tempfile::tempdir().unwrap();
        copy_tree(&repo(), root.path());
        // A copy of the npm packages already installed, instead of a download per test.
        let modules = repo().join("plugins/examples/js-crm-lookup/node_modules");
        if modules.exists() {
            let status = Command::new("cp")
                .arg("-a")
                .arg(&modules)
                .arg(root.path().join("plugins/examples/js-crm-lookup/"))
                .status()
                .unwrap();
            assert!(status.success(), "copying {}", modules.display());
        }
        let bin = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_tern"), bin.path().join("tern")).unwrap();
        Self { root, bin, data: tempfile::tempdir().unwrap(), public_port: free_port(), env: Vec::new() }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel)
    }

    fn command(&self, script: &str) -> Command {
        let path = std::env::join_paths(
            std::iter::once(self.bin.path().to_path_buf())
                .chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
        )
        .unwrap();
        let mut c = Command::new("bash");
        c.args(["-euo", "pipefail", "-c", script]).current_dir(self.root.path()).env("PATH", path);
        for (k, _) in std::env::vars() {
            if k.starts_with("TERN_") && k != "TERN_TEST_REQUIRE_TOOLS" {
                c.env_remove(k);
            }
        }
        c.env("TERN_DATA_DIR", self.data.path())
            .env("TERN_PUBLIC_URL", format!("http://127.0.0.1:{}", self.public_port))
            .env("CARGO_TARGET_DIR", target_dir())
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        c
    }

    /// Runs a block (or any script) with bash `-euo pipefail` in the copy.
    fn sh(&self, script: &str) -> Run {
        Run { output: self.command(script).output().unwrap() }
    }

    /// Runs a block that must succeed; returns its standard output.
    fn ok(&self, block: &Block, script: &str) -> String {
        let r = self.sh(script);
        assert_eq!(
            r.code(),
            0,
            "{}:{} failed:\n{script}\nstdout:\n{}\nstderr:\n{}",
            block.file,
            block.line,
            r.stdout(),
            r.stderr()
        );
        r.stdout()
    }
}

/// `…` (a value the reader fills in) becomes a placeholder; `tern integrations authorize NAME`
/// prints the provider's URL and gives up after a second instead of waiting for a browser.
fn with_placeholders(text: &str) -> String {
    text.lines()
        .map(|line| {
            let line = line.replace('…', "placeholder-value");
            match line.split('#').next().map(str::trim_end) {
                Some(cmd) if cmd.starts_with("tern integrations authorize ") => {
                    format!("{cmd} --no-browser --timeout 1 || true")
                }
                _ => line,
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn install_command() {
    // `cargo install` builds a release binary (longer than the whole suite) into ~/.cargo/bin,
    // so it is checked rather than run: the lock file is in sync (`--locked`), the package at
    // `.` is `tern` with a `tern` binary, and its MSRV is the one the README states.
    let b = block("README.md", "cargo install --path . --locked");
    assert!(b.text.starts_with("cargo install --path . --locked "), "{}", b.text);
    let s = Sandbox::new();
    let out = s.ok(&b, "cargo metadata --locked --offline --no-deps --format-version 1");
    let meta: Value = serde_json::from_str(&out).unwrap();
    let root = std::fs::canonicalize(s.path("Cargo.toml")).unwrap();
    let package = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["manifest_path"].as_str().map(PathBuf::from) == Some(root.clone()))
        .expect("the root package");
    assert_eq!(package["name"], "tern");
    assert!(package["targets"].as_array().unwrap().iter().any(|t| t["name"] == "tern" && t["kind"][0] == "bin"));
    let msrv = package["rust_version"].as_str().unwrap();
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    assert!(readme.contains(&format!("Rust toolchain ({msrv} or newer")), "the README states the MSRV {msrv}");
}

#[test]
fn demo_command() {
    let b = block("README.md", "cargo run --release -- demo");
    let script = b.text.replace("cargo run --release --", "tern");
    let out = Sandbox::new().ok(&b, &script);
    assert!(out.contains("All set! Your authorization is complete!"), "{out}");
    assert!(out.contains("Hello Erlich Bachman!"), "{out}");
    // How to post a message to the server, with the channel's token.
    assert!(
        out.contains("export TERN_CHANNEL_TOKEN=") && out.contains("reads TERN_CHANNEL_TOKEN from the environment"),
        "{out}"
    );
    assert!(!out.contains("--channel-token"), "a secret on the command line: {out}");
    assert!(out.contains("-H \"authorization: Bearer $TERN_CHANNEL_TOKEN\""), "{out}");
}

#[test]
fn test_command_is_what_ci_runs() {
    // The suite cannot run itself; CI runs this exact command, and the script must at least
    // parse and answer its usage.
    let b = block("README.md", "scripts/test");
    let command = b.text.trim();
    let ci = std::fs::read_to_string(repo().join(".ci/run")).unwrap();
    assert!(ci.lines().any(|l| l.trim() == command), ".ci/run must run `{command}`:\n{ci}");
    let s = Sandbox::new();
    s.ok(&b, "bash -n scripts/test && test -x scripts/test");
    let r = s.sh("scripts/test --help");
    assert_eq!(r.code(), 2, "{}", r.stderr());
    assert!(r.stderr().contains("usage: scripts/test"), "{}", r.stderr());
}

#[test]
fn the_example_flow_is_the_file_in_flows_examples() {
    let b = block("README.md", "{");
    assert_eq!(b.lang, "json");
    let shown: Value = serde_json::from_str(&b.text).unwrap();
    let file: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("flows/examples/teamleader-last-name.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(shown, file, "README.md:{} differs from flows/examples/teamleader-last-name.json", b.line);
}

/// The README's receiver is an excerpt of `tests/webhooks/receiver.py`, which
/// `deliveries::deliveries_verify_with_the_python_and_npm_reference_libraries` runs against
/// `tern serve`.
#[test]
fn the_webhook_receiver_example_is_the_tested_receiver() {
    let b = block("README.md", "from standardwebhooks.webhooks import Webhook");
    assert_eq!(b.lang, "python");
    let receiver = std::fs::read_to_string(repo().join("tests/webhooks/receiver.py")).unwrap();
    for line in b.text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        assert!(receiver.contains(line), "README.md:{}: `{line}` is not in tests/webhooks/receiver.py", b.line);
    }
}

#[test]
fn the_mapping_error_is_what_tern_prints() {
    // The README's flow against the loopback API, which answers a contact without a last name.
    let b = block("README.md", "error: step `lookup` failed [mapping]");
    let api = TestApi::start();
    let mut flow: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("flows/examples/teamleader-last-name.json")).unwrap(),
    )
    .unwrap();
    let lookup = &mut flow["steps"][1];
    lookup["request"]["url"] = json!(format!("{}/contacts.info", api.url()));
    let lookup = lookup.as_object_mut().unwrap();
    lookup.remove("integration");
    lookup.remove("on_error");
    // Without `on_error` the step that only it reached goes too.
    flow["steps"].as_array_mut().unwrap().retain(|step| step["id"] != "not_found");
    let s = Sandbox::new();
    std::fs::write(s.path("flow.json"), flow.to_string()).unwrap();
    let r = s.sh("TERN_ALLOW_PRIVATE_NETWORK=1 tern run flow.json -m 'last name' -m no-last-name");
    assert_eq!(r.code(), 1, "{}", r.stderr());
    assert!(
        r.stderr().contains(b.text.trim()),
        "README.md:{} shows\n{}\nbut tern printed\n{}",
        b.line,
        b.text,
        r.stderr()
    );
}

#[test]
fn the_command_synopsis_matches_the_cli() {
    let b = block("README.md", "tern run FLOW --message TEXT…");
    let s = Sandbox::new();
    for line in b.text.lines().filter(|l| !l.trim().is_empty()) {
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(words[0], "tern", "{line}");
        let command = words[1];
        let mut help = s.ok(&b, &format!("tern {command} --help"));
        if let Some(subs) = words.get(2).filter(|w| w.chars().all(|c| c.is_ascii_lowercase() || c == '|')) {
            for sub in subs.split('|') {
                // A subcommand's flags are in its own help.
                help.push_str(&s.ok(&b, &format!("tern {command} {sub} --help")));
            }
        }
        for flag in words.iter().filter_map(|w| w.trim_start_matches('[').split(&[' ', ']'][..]).next()) {
            if flag.starts_with("--") {
                assert!(help.contains(flag), "`tern {command} --help` does not mention {flag} (README.md:{})", b.line);
            }
        }
    }
}

#[test]
fn flows_graph_commands() {
    let b = block("README.md", "tern flows graph flows/examples/");
    let s = Sandbox::new();
    let out = s.ok(&b, &b.text);
    let svg = std::fs::read_to_string(s.path("order-size.svg")).unwrap();
    assert!(svg.starts_with("<?xml") && svg.contains("<svg"), "{svg}");
    assert!(out.starts_with("flowchart TD"), "{out}");
    for text in [&svg, &out] {
        for id in ["ask_qty", "route", "check_bulk", "bulk_reply", "invalid"] {
            assert!(text.contains(id), "README.md:{}: `{id}` is not drawn:\n{text}", b.line);
        }
        assert!(text.contains("qty gte 100"), "the branch case's condition labels its arrow:\n{text}");
    }
}

#[test]
fn the_validate_example_is_what_tern_prints() {
    let b = block("README.md", "flows/invalid/unknown-field.json:5:63");
    let r = Sandbox::new().sh("tern validate flows/invalid/unknown-field.json 2>&1");
    assert_eq!(r.code(), 2, "{}", r.stdout());
    assert!(
        r.stdout().contains(b.text.trim_end()),
        "README.md:{} shows\n{}\nbut tern printed\n{}",
        b.line,
        b.text,
        r.stdout()
    );
}

/// A process killed when dropped.
struct Background(Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `tern serve` started by `script` in the sandbox (`exec` is prepended), after `tweak` has
/// adjusted the command: its standard error goes to the returned log file. Once it is healthy.
fn serve_logged(
    s: &Sandbox,
    script: &str,
    port: u16,
    tweak: impl FnOnce(&mut Command),
) -> (Background, tempfile::NamedTempFile) {
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut cmd = s.command(&format!("exec {script}"));
    tweak(&mut cmd);
    let mut server = Background(cmd.stdout(Stdio::piped()).stderr(log.reopen().unwrap()).spawn().unwrap());
    wait_healthy(s, port, &mut server);
    (server, log)
}

/// Waits for the event that `tern serve` is up, its `listening on` line (printed once the socket
/// is bound), then checks `/healthz` with curl as the README does.
fn wait_healthy(s: &Sandbox, port: u16, server: &mut Background) {
    use std::io::BufRead as _;
    let stdout = server.0.stdout.take().expect("tern serve's standard output is piped");
    let mut lines = std::io::BufReader::new(stdout).lines();
    loop {
        match lines.next() {
            Some(Ok(line)) if line.starts_with("listening on ") => break,
            Some(Ok(_)) => {}
            _ => panic!("tern serve stopped before listening: {:?}", server.0.try_wait()),
        }
    }
    // Keep reading, so that the server never writes to a closed pipe.
    std::thread::spawn(move || lines.for_each(drop));
    let r = s.sh(&format!("curl -sf http://127.0.0.1:{port}/healthz"));
    assert_eq!(r.code(), 0, "tern serve is listening but /healthz failed: {}", r.stderr());
}

#[test]
fn conversation_server_commands() {
    let mut s = Sandbox::new();
    let port = free_port();
    let at = |text: &str| text.replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"));
    s.env.push(("TERN_ADMIN_TOKEN".into(), "readme-admin-token-0123456789".into()));
    s.env.push(("TERN_CHANNEL_TOKEN".into(), "readme-channel-token-0123456789".into()));
    let serve = block("README.md", "tern serve --flows flows/examples");
    let (_server, _log) = serve_logged(&s, &at(&serve.text), port, |_| {});

    // The message, and the answer the comment under it shows (`…` stands for anything).
    let message = block("README.md", "curl -s -X POST http://127.0.0.1:8080");
    let out = s.ok(&message, &at(&message.text));
    let shown = message.text.lines().find_map(|l| l.strip_prefix("# ")).expect("the answer is shown");
    assert!(
        matches_shown(shown, out.trim()),
        "README.md:{} shows\n{shown}\nbut the server answered\n{out}",
        message.line
    );

    // The run it started, from the command line (history is written moments after the answer).
    let runs = block("README.md", "tern runs list --status failed");
    let answer: Value = serde_json::from_str(out.trim()).unwrap();
    let script = runs.text.replace("RUN_ID", answer["run_id"].as_str().expect("the answer has a run id"));
    let mut shown = s.sh(&script);
    for _ in 0..100 {
        if shown.code() == 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        shown = s.sh(&script);
    }
    assert_eq!(shown.code(), 0, "README.md:{}: {}", runs.line, shown.stderr());
    assert!(shown.stdout().contains("no runs match"), "no run failed: {}", shown.stdout());
    assert!(shown.stdout().contains("contact: "), "the transcript: {}", shown.stdout());

    let admin = block("README.md", "curl -s -X PUT http://127.0.0.1:8080");
    s.ok(&admin, &at(&with_placeholders(&admin.text)));
    let list = s.ok(
        &admin,
        &format!("curl -sf -H \"authorization: Bearer $TERN_ADMIN_TOKEN\" http://127.0.0.1:{port}/v1/integrations"),
    );
    assert!(list.contains("\"teamleader\""), "{list}");
}

/// The walkthrough "Your first flow, in ten minutes", against a loopback API in place of the
/// reader's `http://127.0.0.1:9000` (its `POST /tickets` answers `{"id": "T-1"}`, then T-2…):
/// the flow file written, validated with the `private-address` warning, run (and refused
/// without `--allow-private-network`, with the default error reply), then served with the
/// console's link on the listen address, where the flow answers a conversation.
#[test]
fn first_flow_walkthrough() {
    let api = TestApi::start();
    let to_api = |text: &str| text.replace("127.0.0.1:9000", &api.addr.to_string());
    let mut s = Sandbox::new();

    let write = block("README.md", "mkdir -p my-flows");
    s.ok(&write, &to_api(&write.text));
    assert!(s.path("my-flows/open-ticket.json").is_file(), "README.md:{}: no flow file written", write.line);

    let validate = block("README.md", "tern validate my-flows/");
    let r = s.sh(&validate.text);
    let said = format!("{}{}", r.stdout(), r.stderr());
    assert_eq!(r.code(), 0, "README.md:{}: {said}", validate.line);
    assert!(said.contains("private-address"), "README.md:{}: no `private-address` warning:\n{said}", validate.line);

    let run = block("README.md", "tern run my-flows/open-ticket.json");
    let out = s.ok(&run, &run.text);
    assert!(out.contains("What went wrong?"), "{out}");
    assert!(out.contains("Ticket T-1 is open: we will be in touch."), "{out}");
    let tickets = || api.requests().into_iter().filter(|r| r.uri == "/tickets").collect::<Vec<_>>();
    let sent = tickets();
    assert_eq!(sent.len(), 1, "one ticket opened");
    assert_eq!(sent[0].method, "POST");
    assert_eq!(sent[0].json(), json!({"subject": "The printer is on fire"}));
    // Without the flag the call is refused (nothing reaches the API) and the contact gets the
    // default error reply.
    let refused = s.sh(&run.text.replace(" --allow-private-network", ""));
    assert_eq!(refused.code(), 1, "{}{}", refused.stdout(), refused.stderr());
    assert!(
        refused.stdout().contains("Sorry, something went wrong. Please try again later."),
        "the default error reply: {}{}",
        refused.stdout(),
        refused.stderr()
    );
    assert_eq!(tickets().len(), 1, "a refused call reaches nothing");

    // `tern serve` without a public URL: the console's link is on the listen address.
    let serve = block("README.md", "tern serve --flows my-flows");
    let port = free_port();
    s.env.push(("TERN_CHANNEL_TOKEN".into(), "readme-channel-token-0123456789".into()));
    let script = serve.text.trim().replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"));
    let (_server, log) = serve_logged(&s, &script, port, |cmd| {
        cmd.env_remove("TERN_PUBLIC_URL");
    });
    let said = std::fs::read_to_string(log.path()).unwrap();
    assert!(
        said.contains(&format!("http://127.0.0.1:{port}/")),
        "README.md:{}: the console's link:\n{said}",
        serve.line
    );
    s.ok(&serve, &format!("curl -sf -o /dev/null http://127.0.0.1:{port}/"));
    let post = |id: &str, text: &str| {
        s.ok(
            &serve,
            &format!(
                "curl -sf -X POST http://127.0.0.1:{port}/v1/conversations/walkthrough/messages \
                 -H \"authorization: Bearer $TERN_CHANNEL_TOKEN\" -H 'content-type: application/json' \
                 -d '{{\"text\": \"{text}\", \"message_id\": \"{id}\"}}'"
            ),
        )
    };
    let asked = post("m-1", "I need a ticket");
    assert!(asked.contains("What went wrong?"), "{asked}");
    let answered = post("m-2", "The printer is on fire");
    assert!(answered.contains("is open: we will be in touch."), "{answered}");
    assert_eq!(tickets().len(), 2, "the server opened the second ticket");
}

#[test]
fn openapi_command_regenerates_the_committed_document() {
    let b = block("README.md", "tern openapi > docs/openapi.json");
    let s = Sandbox::new();
    s.ok(&b, &b.text);
    let written = std::fs::read_to_string(s.path("docs/openapi.json")).unwrap();
    let committed = std::fs::read_to_string(repo().join("docs/openapi.json")).unwrap();
    assert!(written.starts_with("{"), "`tern openapi` printed no JSON document:\n{written}");
    assert!(
        written == committed,
        "README.md:{}: `tern openapi` prints a document other than docs/openapi.json (stale)",
        b.line
    );
}

/// Whether `actual` is `shown` with each `…` standing for any text without a quote.
fn matches_shown(shown: &str, actual: &str) -> bool {
    let mut parts = shown.split('…');
    let Some(rest) = parts.next().and_then(|first| actual.strip_prefix(first)) else { return false };
    let mut rest = rest;
    for part in parts {
        let Some(at) = rest.find(part) else { return false };
        if rest[..at].contains('"') {
            return false;
        }
        rest = &rest[at + part.len()..];
    }
    rest.is_empty()
}

#[test]
fn the_tern_toml_example_is_accepted() {
    // The README's file as `./tern.toml`; flags move what cannot be used here (the data
    // directory, the flows, the address) and must beat the file.
    let b = block("README.md", "data_dir = \"/var/lib/tern\"");
    let s = Sandbox::new();
    let port = free_port();
    let data = s.data.path().display().to_string();
    // A stored channel of the same name, from before the file: the file's hides it, and
    // `tern serve` says so.
    let stored = s
        .command(&format!("tern --data-dir {data} channels add support --token-env OLD_TOKEN"))
        .env_remove("TERN_DATA_DIR")
        .env("OLD_TOKEN", "stored-support-token-0123456789")
        .output()
        .unwrap();
    assert!(stored.status.success(), "{}", String::from_utf8_lossy(&stored.stderr));
    std::fs::write(s.path("tern.toml"), &b.text).unwrap();
    const SUPPORT_TOKEN: &str = "readme-support-token-0123456789";
    let hook_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let script = format!("tern --data-dir {data} serve --flows flows/examples --listen 127.0.0.1:{port} --watch false");
    let (_server, log) = serve_logged(&s, &script, port, |cmd| {
        cmd.env_remove("TERN_DATA_DIR").env("SUPPORT_TOKEN", SUPPORT_TOKEN).env("SUPPORT_WEBHOOK_SECRET", hook_secret);
    });
    let said = std::fs::read_to_string(log.path()).unwrap();
    assert!(said.contains("channel `support` of tern.toml hides the stored channel of the same name"), "{said}");
    // The file's channel takes messages with its token from the environment.
    let post = |token: &str| {
        s.sh(&format!(
            "curl -s -o /dev/null -w '%{{http_code}}' -X POST http://127.0.0.1:{port}/v1/channels/support/conversations/c-1/messages -H 'authorization: Bearer {token}' -H 'content-type: application/json' -d '{{\"text\": \"hi\"}}'"
        ))
        .stdout()
    };
    assert_eq!(post(SUPPORT_TOKEN), "200");
    assert_eq!(post("not-the-support-token-0123"), "401");
    assert_eq!(post("stored-support-token-0123456789"), "401", "the hidden stored channel's token");
    // `tern channels list` shows it, defined by the file.
    let listed = s
        .command(&format!("tern --data-dir {data} channels list"))
        .env_remove("TERN_DATA_DIR")
        .env("SUPPORT_TOKEN", SUPPORT_TOKEN)
        .env("SUPPORT_WEBHOOK_SECRET", hook_secret)
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(listed.lines().any(|l| l.starts_with("support ") && l.contains("tern.toml")), "{listed}");
}

#[test]
fn integration_commands() {
    let mut s = Sandbox::new();
    for var in ["ZOHO_SECRET", "GOOGLE_SECRET", "S", "MAPS_KEY"] {
        s.env.push((var.into(), format!("placeholder-{var}")));
    }
    let teamleader = block("README.md", "export TL_SECRET=…");
    let out = s.ok(&teamleader, &with_placeholders(&teamleader.text));
    assert!(out.contains("https://focus.teamleader.eu/oauth2/authorize?"), "{out}");
    assert!(out.contains("client_id=YOUR_ID") && out.contains("code_challenge="), "{out}");

    let zoho = block("README.md", "tern integrations add zoho");
    let out = s.ok(&zoho, &with_placeholders(&zoho.text));
    assert!(out.contains("https://accounts.zoho.eu/oauth/v2/auth?"), "{out}");
    assert!(out.contains("access_type=offline") && out.contains("prompt=consent"), "{out}");

    let google = block("README.md", "tern integrations add google");
    let out = s.ok(&google, &with_placeholders(&google.text));
    assert!(out.contains("https://accounts.google.com/"), "{out}");
    assert!(out.contains("access_type=offline"), "{out}");

    let services = block("README.md", "tern integrations add billing");
    s.ok(&services, &with_placeholders(&services.text));

    let list = s.ok(&services, "tern integrations list");
    for name in ["teamleader", "zoho", "google", "billing", "maps"] {
        assert!(list.contains(name), "{list}");
    }
    assert!(!list.contains("placeholder-"), "no secret is shown: {list}");

    // `tern api` on the Teamleader integration added above: not authorized here (no browser),
    // so it says what to run instead of calling.
    let api = block("README.md", "tern api teamleader /contacts.info");
    let r = s.sh(&with_placeholders(&api.text));
    assert_eq!(r.code(), 1, "README.md:{}: {}", api.line, r.stdout());
    assert!(r.stderr().contains("tern integrations authorize teamleader"), "{}", r.stderr());
}

/// The Basic, API-key and service-account block, with a Google-format key file of the test
/// service account where the README's `service-account.json` is.
#[test]
fn credential_kind_commands() {
    let s = Sandbox::new();
    let key = crate::support::credentials::key_file("https://oauth2.googleapis.com/token");
    std::fs::write(s.path("service-account.json"), key).unwrap();
    let b = block("README.md", "export ERP_PASSWORD=…");
    let out = s.ok(&b, &with_placeholders(&b.text));
    for saved in [
        "integration `erp` saved (basic)",
        "integration `marketing` saved (api_key)",
        "integration `sheets` saved (jwt_bearer)",
    ] {
        assert!(out.contains(saved), "{saved}: {out}");
    }
    for name in ["erp", "marketing", "sheets"] {
        assert!(out.lines().any(|l| l.starts_with(name) && l.contains("ready")), "{name}: {out}");
    }
    let shown = s.ok(&b, "tern integrations show sheets");
    assert!(shown.contains("token URL:         https://oauth2.googleapis.com/token"), "{shown}");
    assert!(
        shown.contains(crate::support::credentials::CLIENT_EMAIL) && shown.contains("private key:       set"),
        "{shown}"
    );
    assert!(!format!("{out}{shown}").contains("placeholder-value"), "no secret is shown");
}

/// The client-certificate block, with a certificate, key and CA made by the mTLS test server
/// where the README's files are.
#[test]
fn client_certificate_commands() {
    let s = Sandbox::new();
    let server = crate::support::mtls::MtlsServer::start();
    let client = server.client();
    std::fs::write(s.path("client.pem"), &client.cert).unwrap();
    std::fs::write(s.path("client-key.pem"), &client.key).unwrap();
    std::fs::write(s.path("bank-ca.pem"), server.ca_pem()).unwrap();
    let b = block("README.md", "export BANK_KEY=…");
    let out = s.ok(&b, &with_placeholders(&b.text));
    assert!(out.contains("integration `bank` saved (api_key)"), "{out}");
    assert!(out.contains("client cert:       CN=tern-client, expires"), "{out}");
    assert!(out.contains("private CA:        set"), "{out}");
    assert!(!out.contains("WARNING"), "a 90-day certificate is not about to expire: {out}");
}

/// The connection events block: the channel is added and `tern serve` starts with it (and,
/// without the channel, refuses to start and says how to add it). What the events say is
/// checked by `connection_events.rs`.
#[test]
fn connection_events_commands() {
    let s = Sandbox::new();
    let b = block("README.md", "tern channels add ops --kind generic");
    let mut lines = b.text.lines();
    let (add, serve) = (lines.next().unwrap(), lines.next().unwrap());
    let port = free_port();
    let listen = format!("{serve} --listen 127.0.0.1:{port}");
    let refused = s.sh(&listen);
    assert_ne!(refused.code(), 0, "no channel `ops` yet");
    assert!(refused.stderr().contains("tern channels add ops"), "says how to add it: {}", refused.stderr());
    let out = s.ok(&b, add);
    assert!(out.contains("channel `ops` saved"), "{out}");
    let (_server, log) = serve_logged(&s, &listen, port, |_| {});
    let log = std::fs::read_to_string(log.path()).unwrap();
    assert!(!log.contains("connection events cannot be sent"), "{log}");
}

#[test]
fn channel_commands() {
    let s = Sandbox::new();
    let b = block("README.md", "export SUPPORT_TOKEN=…");
    let text = b.text.replace("export SUPPORT_TOKEN=…", "export SUPPORT_TOKEN=placeholder-support-token-0123");
    let out = s.ok(&b, &text);
    assert!(out.contains("channel `support` saved (generic, 1 token)"), "{out}");
    assert!(out.contains("The secret its replies are signed with"), "a generated webhook secret: {out}");
    assert!(out.contains("channel `web` saved") && out.contains("shown once"), "{out}");
    assert!(out.contains("webhook URL:     https://chat.example.com/tern-replies"), "{out}");
    assert!(out.contains("channel `web` removed"), "{out}");
    let list = s.ok(&b, "tern channels list");
    assert!(list.contains("support") && list.contains("default"), "{list}");
    assert!(!list.lines().any(|l| l.starts_with("web ")), "the channel `web` is removed: {list}");
    assert!(!out.contains("placeholder-support-token") && !list.contains("placeholder-"), "no secret is shown: {out}");
}

/// The Telegram block: the channel is added, and the `setWebhook` call reaches a local Bot API
/// (in place of `https://api.telegram.org`) with the webhook URL and the secret token.
#[test]
fn telegram_commands() {
    const BOT: &str = "123456789:AAReadmeTestTokenOnly_0123456789abc";
    let fake = crate::support::telegram::FakeTelegram::start(BOT);
    let s = Sandbox::new();
    let b = block("README.md", "export TELEGRAM_BOT_TOKEN=…");
    let text = b
        .text
        .replace("export TELEGRAM_BOT_TOKEN=…", &format!("export TELEGRAM_BOT_TOKEN={BOT}"))
        .replace("https://api.telegram.org", &fake.url());
    let out = s.ok(&b, &text);
    assert!(out.contains("channel `telegram` saved (telegram"), "{out}");
    assert!(out.contains("Webhook was set"), "{out}");
    let form = fake.webhook();
    assert!(form.contains(&("url".into(), "https://tern.example.com/v1/channels/telegram/webhook".into())), "{form:?}");
    assert!(form.iter().any(|(k, v)| k == "secret_token" && v.len() == 64), "{form:?}");
    let shown = s.ok(&b, "tern channels show telegram");
    assert!(shown.contains("API base:        https://api.telegram.org/"), "{shown}");
    assert!(!out.contains(BOT) && !shown.contains(BOT), "the bot token is never shown");
}

/// The choices example is a step that validates and runs: in a flow after a search result,
/// `tern run` shows its choices numbered and a typed number picks a payload.
#[test]
fn the_choices_example_runs() {
    let b = block("README.md", "\"steps\": [");
    let steps: serde_json::Value = serde_json::from_str(&format!("{{{}}}", b.text)).unwrap();
    let step = steps["steps"][0].clone();
    let flow = serde_json::json!({"version": 1, "id": "which", "steps": [
        {"id": "found", "type": "set_variables", "variables": {"found": [{"id": "c-1", "name": "Ann"}, {"id": "c-2", "name": "Bob"}]}},
        step,
        {"id": "done", "type": "send_message", "text": "Chosen: {{contact_id}}"}
    ]});
    let s = Sandbox::new();
    std::fs::write(s.path("which.json"), flow.to_string()).unwrap();
    s.ok(&b, "tern validate which.json");
    let out = s.ok(&b, "tern run which.json -m hi -m Bob");
    assert!(out.contains("Which contact are you?\n\n1. Ann\n2. Bob"), "{out}");
    assert!(out.contains("Chosen: c-2"), "a typed title picks its payload: {out}");
}

/// The time examples are steps that validate in a flow; a reminder later than the timeout is
/// refused at its pointer, in words.
#[test]
fn the_time_examples_validate() {
    let ask = block("README.md", "{ \"id\": \"order_number\", \"type\": \"ask\"");
    let wait = block("README.md", "{ \"id\": \"tomorrow\", \"type\": \"wait\"");
    let flow = |ask: Value| {
        json!({"version": 1, "id": "orders", "trigger": {"type": "message", "match": {"keywords": ["order"]}},
        "steps": [
          ask,
          serde_json::from_str::<Value>(&wait.text).unwrap(),
          {"id": "follow_up", "type": "send_message", "text": "About order {{order}}…", "next": "end"},
          {"id": "closing", "type": "send_message", "text": "We'll close this for now."}
        ]})
    };
    let s = Sandbox::new();
    let good: Value = serde_json::from_str(&ask.text).unwrap();
    std::fs::write(s.path("orders.json"), flow(good.clone()).to_string()).unwrap();
    s.ok(&ask, "tern validate orders.json");
    let mut late = good;
    late["reminders"][1]["after"] = json!("2d");
    std::fs::write(s.path("late.json"), flow(late).to_string()).unwrap();
    let r = s.sh("tern validate late.json");
    assert_ne!(r.code(), 0, "a reminder after the timeout must fail validation");
    let out = format!("{}{}", r.stdout(), r.stderr());
    assert!(out.contains("error[reminder-after-timeout] at /steps/0/reminders/1/after"), "{out}");
    assert!(out.contains("reminder 2 comes after 2d, but the question times out after 1d"), "{out}");
}

/// The loop example runs as written, against a loopback API for `api.example.com`: one pass
/// per deal, the deal whose lookup fails skipped (`on_item_error: skip`), the rest collected.
#[test]
fn the_loop_example_runs() {
    use testkit::scripted::{Scripted, answer, json_answer};
    let api = Scripted::start(vec![
        ("/deals/1", vec![json_answer(json!({"data": {"stage": "won"}}))]),
        ("/deals/2", vec![answer(500, Some("application/json"), "{}")]),
    ]);
    let b = block("README.md", "\"variables\": { \"deals\"");
    let text = b.text.replace("https://api.example.com", &api.url());
    let flow: serde_json::Value =
        serde_json::from_str(&format!("{{\"version\": 1, \"id\": \"deals\", {text}}}")).unwrap();
    let s = Sandbox::new();
    std::fs::write(s.path("deals.json"), flow.to_string()).unwrap();
    s.ok(&b, "tern validate --allow-private-network deals.json");
    let out = s.ok(&b, "tern run deals.json --allow-private-network -m hi");
    assert!(out.contains("Your deals: [\"Roof: won\"]"), "{out}");
    let asked: Vec<String> = api.requests().into_iter().map(|r| r.uri).collect();
    assert_eq!(asked, ["/deals/1", "/deals/2"], "one lookup per deal");
}

/// The expressions block: totals, names and a condition computed by expressions, both ways
/// through the branch.
#[test]
fn the_expressions_example_runs() {
    let b = block("README.md", "\"variables\": { \"lines\"");
    let flow: serde_json::Value =
        serde_json::from_str(&format!("{{\"version\": 1, \"id\": \"order\", {}}}", b.text)).unwrap();
    let s = Sandbox::new();
    std::fs::write(s.path("order.json"), flow.to_string()).unwrap();
    s.ok(&b, "tern validate order.json");
    let out = s.ok(&b, "tern run order.json -m hello");
    assert!(out.contains("TEA, CAKE: 21.00 EUR"), "{out}");
    assert!(!out.contains("gift-wrapped"), "{out}");
    let out = s.ok(&b, "tern run order.json -m 'As a GIFT please'");
    assert!(out.contains("TEA, CAKE: 21.00 EUR, gift-wrapped"), "{out}");
    // A type error is reported by `tern validate` at its pointer, in the designer's words.
    let broken = flow.to_string().replace("l.qty * l.price", "l.qty * 'price'");
    std::fs::write(s.path("broken.json"), broken).unwrap();
    let r = s.sh("tern validate broken.json");
    assert_ne!(r.code(), 0, "a broken expression must fail validation");
    let out = format!("{}{}", r.stdout(), r.stderr());
    assert!(
        out.contains("/steps/0/variables/total")
            && out.contains("`*` works on numbers (and times and durations); one side is a text"),
        "{out}"
    );
}

/// The subflow blocks: the called flow as shown, and a caller around the README's step, run by
/// `tern run` (which loads the called flow from the same folder) and checked by `tern validate`.
#[test]
fn the_subflow_example_runs() {
    let called = block("README.md", "{ \"version\": 1, \"id\": \"identify\"");
    let step = block("README.md", "{ \"id\": \"who\", \"type\": \"call_flow\"");
    let step: Value = serde_json::from_str(&step.text).unwrap();
    let caller = json!({
        "version": 1, "id": "billing", "trigger": {"type": "message", "match": {"keywords": ["invoice"]}},
        "steps": [step, {"id": "done", "type": "send_message", "text": "Thanks, {{customer}}."}]
    });
    let s = Sandbox::new();
    std::fs::create_dir_all(s.path("sub")).unwrap();
    std::fs::write(s.path("sub/identify.json"), &called.text).unwrap();
    std::fs::write(s.path("sub/billing.json"), caller.to_string()).unwrap();
    s.ok(&called, "tern validate sub");
    let out = s.ok(&called, "tern run sub/billing.json -m invoice -m C-42");
    assert!(out.contains("Your customer number, for your invoice?") && out.contains("Thanks, C-42."), "{out}");
    // A call that does not match the called flow's interface is an error at its pointer.
    let broken = caller.to_string().replace("\"purpose\"", "\"purpse\"");
    std::fs::write(s.path("sub/billing.json"), broken).unwrap();
    let r = s.sh("tern validate sub");
    assert_eq!(r.code(), 2, "{}", r.stdout());
    let out = format!("{}{}", r.stdout(), r.stderr());
    assert!(out.contains("error[unknown-input] at /steps/0/inputs/purpse"), "{out}");
    assert!(out.contains("did you mean `purpose`?"), "{out}");
}

#[test]
fn the_flow_test_example_is_the_file_in_flows_examples() {
    let b = block("README.md", "{ \"integrations\": { \"teamleader\"");
    assert_eq!(b.lang, "json");
    let shown: Value = serde_json::from_str(&b.text).unwrap();
    let path = "flows/examples/teamleader-last-name.test.json";
    let file: Value = serde_json::from_str(&std::fs::read_to_string(repo().join(path)).unwrap()).unwrap();
    assert_eq!(shown, file, "README.md:{} differs from {path}", b.line);
}

/// The flow tests of the examples pass as the README runs them, the JUnit report is what a
/// JUnit consumer (Python's `junitparser`) reads, and a changed reply fails with a diff at its
/// pointer.
#[test]
fn flow_test_commands() {
    let b = block("README.md", "tern test flows/examples");
    let s = Sandbox::new();
    let out = s.ok(&b, &b.text);
    let tests = flow_test_count(&s.path("flows/examples"));
    assert!(out.contains(&format!("{tests} passed, 0 failed")), "{out}");
    assert!(out.contains("ok      a known contact is greeted by name"), "{out}");
    let report = std::fs::read_to_string(s.path("flow-tests.xml")).unwrap();
    assert!(report.contains(&format!("tests=\"{tests}\" failures=\"0\"")), "{report}");
    if let Some(python) = tools::junitparser("flow_test_commands") {
        let read = Command::new(python)
            .args(["-c", JUNIT_SUMMARY, &s.path("flow-tests.xml").display().to_string()])
            .output()
            .unwrap();
        assert!(read.status.success(), "{}", String::from_utf8_lossy(&read.stderr));
        assert_eq!(String::from_utf8_lossy(&read.stdout).trim(), format!("{tests} 0"));
    }
    // A changed reply: the test fails, says where and shows the difference.
    let path = s.path("flows/examples/teamleader-last-name.test.json");
    let text = std::fs::read_to_string(&path).unwrap().replace("Hello Ada Lovelace!", "Hello Ada Byron!");
    std::fs::write(&path, text).unwrap();
    let r = s.sh("tern test flows/examples --junit flow-tests.xml");
    assert_eq!(r.code(), 1, "{}", r.stdout());
    let out = r.stdout();
    assert!(out.contains("FAILED  a known contact is greeted by name"), "{out}");
    assert!(out.contains("/tests/0/conversation/1/tern: the replies to \"42\" differ"), "{out}");
    assert!(out.contains("- Hello Ada Byron!") && out.contains("+ Hello Ada Lovelace!"), "{out}");
    assert!(out.contains(&format!("{} passed, 1 failed", tests - 1)), "{out}");
    if let Some(python) = tools::junitparser("flow_test_commands") {
        let read = Command::new(python)
            .args(["-c", JUNIT_SUMMARY, &s.path("flow-tests.xml").display().to_string()])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&read.stdout).trim(), format!("{tests} 1"));
    }
}

/// Prints the number of test cases and of failed ones in a JUnit file, as junitparser reads it.
const JUNIT_SUMMARY: &str = "import sys\nfrom junitparser import JUnitXml, Failure\nxml = JUnitXml.fromfile(sys.argv[1])\ncases = [c for s in xml for c in s]\nprint(len(cases), sum(1 for c in cases if any(isinstance(r, Failure) for r in c.result)))";

/// The test cases in the `*.test.json` files of `dir`.
fn flow_test_count(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".test.json"))
        .map(|p| {
            let v: Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
            v["tests"].as_array().unwrap().len()
        })
        .sum()
}

/// The Twilio block: the channel added and shown, the webhook to set in the Twilio Console
/// printed with the public URL, the auth token never shown.
#[test]
fn twilio_commands() {
    const TOKEN: &str = "0123456789abcdef0123456789abcdef";
    let s = Sandbox::new();
    let b = block("README.md", "export TWILIO_AUTH_TOKEN=…");
    let text = b.text.replace("export TWILIO_AUTH_TOKEN=…", &format!("export TWILIO_AUTH_TOKEN={TOKEN}"));
    let out = s.ok(&b, &text);
    assert!(out.contains("channel `sms` saved (twilio, auth token)"), "{out}");
    assert!(out.contains("Webhook, HTTP POST: https://YOUR-PUBLIC-HOST/v1/channels/sms/webhook"), "{out}");
    assert!(out.contains("account SID:     AC5ef8732a3c49700934481addd5ce1659"), "{out}");
    assert!(out.contains("from:            +15017122661"), "{out}");
    assert!(out.contains("API base:        https://api.twilio.com/"), "{out}");
    assert!(!out.contains(TOKEN), "the auth token is never shown: {out}");
}

/// The Slack block: the integration of the `slack` profile and the channel added, the request
/// URL to set in the app's settings printed, the signing secret never shown.
#[test]
fn slack_commands() {
    const SECRET: &str = "8f742231b10e8888abcd99aaabbb85a5";
    let s = Sandbox::new();
    let b = block("README.md", "export SLACK_SIGNING_SECRET=…");
    let text = format!(
        "export SLACK_CLIENT_SECRET=readme-slack-client-secret\n{}",
        b.text.replace("export SLACK_SIGNING_SECRET=…", &format!("export SLACK_SIGNING_SECRET={SECRET}"))
    );
    let out = s.ok(&b, &text);
    assert!(out.contains("channel `slack` saved (slack, signing secret)"), "{out}");
    assert!(out.contains("https://YOUR-PUBLIC-HOST/v1/channels/slack/webhook"), "{out}");
    let shown = s.ok(&b, "tern channels show slack && tern integrations show slack");
    assert!(shown.contains("integration:     slack"), "{shown}");
    assert!(shown.contains("slack.com/oauth/v2/authorize"), "the profile's endpoints: {shown}");
    assert!(!out.contains(SECRET) && !shown.contains(SECRET), "the signing secret is never shown");
}

/// The web chat block: the channel added with its origin, and the tag to put on the pages
/// printed with the server's address; `channels show` lists the origin.
#[test]
fn web_chat_commands() {
    let s = Sandbox::new();
    let b = block("README.md", "tern channels add site --kind web");
    let out = s.ok(&b, &format!("{} --public-url https://tern.example.com", b.text.trim()));
    assert!(out.contains("channel `site` saved (web, origins https://www.example.com)"), "{out}");
    assert!(
        out.contains(
            r#"<script src="https://tern.example.com/v1/channels/site/web/widget.js" data-title="Chat" async></script>"#
        ),
        "{out}"
    );
    let shown = s.ok(&b, "tern channels show site --public-url https://chat.example.com");
    assert!(shown.contains("https://www.example.com"), "{shown}");
    assert!(shown.contains(r#"<script src="https://chat.example.com/v1/channels/site/web/widget.js""#), "{shown}");
}

/// The WhatsApp block: the token kept as a secret, the integration and the channel added, and
/// what to paste into the Meta app dashboard printed (the callback URL, the verify token's
/// variable), no secret shown.
#[test]
fn whatsapp_commands() {
    const APP_SECRET: &str = "6c0ffee0ddba11a5f00dfeedc0de4b1d";
    const META_TOKEN: &str = "EAAGReadmeTestSystemUserToken0123456789";
    let s = Sandbox::new();
    let b = block("README.md", "export WHATSAPP_APP_SECRET=…");
    let text = b
        .text
        .replace("export WHATSAPP_APP_SECRET=…", &format!("export WHATSAPP_APP_SECRET={APP_SECRET}"))
        .replace("export META_TOKEN=…", &format!("export META_TOKEN={META_TOKEN}"));
    let out = s.ok(&b, &text);
    assert!(out.contains("channel `whatsapp` saved (whatsapp, app secret, verify token)"), "{out}");
    assert!(out.contains("Callback URL: https://YOUR-PUBLIC-HOST/v1/channels/whatsapp/webhook"), "{out}");
    assert!(out.contains("Verify token: the value of $WHATSAPP_VERIFY_TOKEN"), "{out}");
    assert!(out.contains("phone number id: 106540352242922"), "{out}");
    assert!(out.contains("integration:     meta"), "{out}");
    assert!(out.contains("API base:        https://graph.facebook.com/v23.0"), "{out}");
    assert!(!out.contains(APP_SECRET) && !out.contains(META_TOKEN), "no secret is shown: {out}");
}

/// Runs each `cargo run -p tern-plugin-build -- c DIR -o FILE` line of `text` through
/// `tern_plugin_build::build_c` (what the tool's `main` calls); returns the other lines.
fn with_plugin_builds_done(s: &Sandbox, text: &str) -> String {
    let mut rest = Vec::new();
    for line in text.lines() {
        let Some(args) = line.strip_prefix("cargo run -p tern-plugin-build -- ") else {
            rest.push(line);
            continue;
        };
        let words: Vec<&str> = args.split_whitespace().collect();
        assert!(words.len() == 4 && words[0] == "c" && words[2] == "-o", "unexpected build line: {line}");
        let work = tempfile::tempdir().unwrap();
        tern_plugin_build::build_c(&s.path(words[1]), &s.path("plugins/wit"), work.path(), &s.path(words[3]))
            .unwrap_or_else(|e| panic!("{line}: {e:#}"));
    }
    rest.join("\n")
}

#[test]
fn step_plugin_commands() {
    if !tools::available("step_plugin_commands", &[&tools::CLANG_WASI]) {
        return;
    }
    let b = block("README.md", "cargo run -p tern-plugin-build");
    let s = Sandbox::new();
    let out = s.ok(&b, &with_plugin_builds_done(&s, &b.text));
    assert_check_output(&out);
    assert!(out.contains("Nice to meet you, ada! (lovelace)"), "{out}");
    assert_no_wasm_at_the_root(&s);
}

/// The guides' commands leave their builds where `.gitignore` expects them (beside their
/// example), not as an untracked `.wasm` at the repository root.
fn assert_no_wasm_at_the_root(s: &Sandbox) {
    let stray: Vec<String> = std::fs::read_dir(s.path("."))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".wasm"))
        .collect();
    assert!(stray.is_empty(), "built files left at the repository root: {stray:?}");
}

/// What `tern plugins check …/name-parts.wasm --step-config '{"name": "ada lovelace"}'` prints:
/// the first word as the first name, the rest as the last name, spelt as written.
fn assert_check_output(out: &str) {
    assert!(out.contains("\"type\": \"text.name-parts\""), "{out}");
    assert!(out.contains("\"status\": \"completed\""), "{out}");
    assert!(out.contains("\"first_name\": \"ada\""), "{out}");
    assert!(out.contains("\"last_name\": \"lovelace\""), "{out}");
    assert!(out.contains("\"outcome\": \"full\""), "{out}");
}

#[test]
fn plugin_guide_commands() {
    if !tools::available("plugin_guide_commands", &[&tools::CLANG_WASI, &tools::NODE]) {
        return;
    }
    let s = Sandbox::new();
    let file = "plugins/README.md";
    let c = block(file, "cargo run -p tern-plugin-build");
    s.ok(&c, &with_plugin_builds_done(&s, &c.text));
    let js = block(file, "(cd plugins/examples/js-crm-lookup");
    s.ok(&js, &js.text);
    assert!(s.path("plugins/examples/js-crm-lookup/crm-lookup.wasm").exists());

    let usage = block(file, "tern plugins check plugins/examples/c-name-parts/name-parts.wasm");
    let out = s.ok(&usage, &usage.text);
    assert_check_output(&out);
    assert_no_wasm_at_the_root(&s);
    assert!(out.contains("installed crm.lookup-contact"), "{out}");
    assert!(out.contains("Nice to meet you, ada! (lovelace)"), "{out}");

    // The guide's JavaScript plugin, built the way the example is.
    let snippet = block(file, "import host from");
    std::fs::write(s.path("plugins/examples/js-crm-lookup/hello.js"), &snippet.text).unwrap();
    s.ok(
        &snippet,
        "cd plugins/examples/js-crm-lookup && node_modules/.bin/componentize-qjs --wit ../../wit --world step \
         --js hello.js --sync --stub-wasi -o hello.wasm",
    );
    let out = s.ok(&snippet, "tern plugins check plugins/examples/js-crm-lookup/hello.wasm");
    assert!(out.contains("\"greeting\": \"hello\""), "{out}");
}

/// The scaffold's commands as the guide shows them: `tern plugins new` writes the folder, its
/// build (run with the componentize-qjs these tests installed, in place of `npm install && npm
/// run build`, which would download it) makes a component, and the sample run upper-cases the
/// text. The scaffold's own README shows the same three commands.
#[test]
fn plugin_scaffold_commands() {
    if !tools::available("plugin_scaffold_commands", &[&tools::NODE]) {
        return;
    }
    let s = Sandbox::new();
    let b = block("plugins/README.md", "tern plugins new acme.shout");
    let mut lines = b.text.lines();
    let (new, build, test) = (lines.next().unwrap(), lines.next().unwrap(), lines.next().unwrap());
    let out = s.ok(&b, new);
    assert!(out.contains("acme-shout") && out.contains("plugin.js"), "{out}");
    assert!(build.starts_with("cd acme-shout && npm install && tern plugins build ."), "{build}");
    // Before `npm install`, the build says what to run.
    let missing = s.sh("tern plugins build acme-shout");
    assert!(missing.stderr().contains("run `npm install` there"), "{}", missing.stderr());
    // `npm install`: the componentize-qjs these tests installed, linked in.
    let modules = tools::componentize_qjs().parent().unwrap().parent().unwrap().to_path_buf();
    std::os::unix::fs::symlink(&modules, s.path("acme-shout/node_modules")).unwrap();
    let out = s.ok(&b, &build.replace("npm install && ", ""));
    assert!(out.contains("acme-shout.wasm"), "the .wasm path is printed: {out}");
    let out = s.ok(&b, &format!("cd acme-shout && {test}"));
    assert!(out.contains("\"loud\": \"HELLO\"") && out.contains("PASS fixture.json"), "{out}");
    let own = std::fs::read_to_string(s.path("acme-shout/README.md")).unwrap();
    assert!(own.contains("npm install && tern plugins build .") && own.contains(test), "{own}");
    // The C example builds with the same command.
    if tools::available("plugin_scaffold_commands (C)", &[&tools::CLANG_WASI]) {
        let out = s.ok(&b, "tern plugins build plugins/examples/c-name-parts -o c-build/name-parts.wasm");
        assert!(out.contains("c-build/name-parts.wasm") && s.path("c-build/name-parts.wasm").is_file(), "{out}");
    }
    assert!(s.sh("tern plugins new acme.shout").code() != 0, "an existing folder is not overwritten");
    let bad = s.sh("tern plugins new 'Acme Shout'");
    assert!(bad.stderr().contains("cannot be a step type name"), "{}", bad.stderr());
    let builtin = s.sh("tern plugins new send_message");
    assert!(builtin.stderr().contains("is a built-in step"), "{}", builtin.stderr());
    // A sample configuration that does not fit is said at its own field, with the step's fields.
    let wrong = s.sh("cd acme-shout && tern plugins check acme-shout.wasm --step-config '{\"txt\": \"hi\"}'");
    assert!(wrong.stderr().contains("--step-config/txt: error[unknown-field]"), "{}", wrong.stderr());
    assert!(wrong.stderr().contains("text (required)"), "{}", wrong.stderr());
}

/// The fixture the guide explains is the Python example's, which its test runs.
#[test]
fn the_fixture_example_is_the_python_examples_fixture() {
    let b = block("plugins/README.md", "{ \"config\"");
    assert_eq!(b.lang, "json");
    let shown: serde_json::Value = serde_json::from_str(&b.text).unwrap();
    let file = std::fs::read_to_string(repo().join("plugins/examples/py-crm-lookup/fixture.json")).unwrap();
    assert_eq!(shown, serde_json::from_str::<serde_json::Value>(&file).unwrap());
}

/// The Python commands as the guide shows them: componentize-py in the virtual environment the
/// tests installed (the first line, run by `scripts/test`), the example built with it, and its
/// fixture passing.
#[test]
fn python_plugin_commands() {
    if tools::componentize_py("python_plugin_commands").is_none() {
        return;
    }
    let s = Sandbox::new();
    let b = block("plugins/README.md", "python3 -m venv ~/.cache/tern-componentize-py");
    let lines: Vec<&str> = b.text.lines().collect();
    assert!(lines[0].contains(&format!("componentize-py=={}", tools::COMPONENTIZE_PY)), "{}", lines[0]);
    let out = s.ok(&b, lines[1]);
    assert!(out.contains("crm-contact-name.wasm"), "{out}");
    let out = s.ok(&b, lines[2]);
    assert!(out.contains("PASS") && out.contains("\"first_name\": \"Erlich\""), "{out}");
}

#[test]
fn the_c_snippet_builds_with_the_crates_io_tools() {
    if !tools::available("the_c_snippet_builds_with_the_crates_io_tools", &[&tools::CLANG_WASI, &tools::COMPONENT_CLIS])
    {
        return;
    }
    let s = Sandbox::new();
    let snippet = block("plugins/README.md", "#include \"step.h\"");
    std::fs::write(s.path("plugin.c"), &snippet.text).unwrap();
    let b = block("plugins/README.md", "wit-bindgen c plugins/wit");
    s.ok(&b, &b.text);
    let out = s.ok(&b, "tern plugins check plugin.wasm");
    assert!(out.contains("\"type\": \"acme.hello\""), "{out}");
    assert!(out.contains("\"greeting\": \"hello\""), "{out}");
}

#[test]
fn layouts_name_existing_paths() {
    // The README's layout: the first word of each unindented line is a path. The plugin
    // guide's: `plugins/`, then indented paths relative to it.
    let b = block("README.md", "Cargo.toml        workspace");
    for line in b.text.lines().filter(|l| !l.starts_with(' ')) {
        let word = line.split_whitespace().next().unwrap_or("");
        assert!(repo().join(word).exists(), "README.md:{}: `{word}` does not exist", b.line);
    }
    let b = block("plugins/README.md", "plugins/");
    for line in b.text.lines().skip(1).filter(|l| !l.trim().is_empty()) {
        let word = line.split_whitespace().next().unwrap_or("");
        assert!(
            repo().join("plugins").join(word).exists(),
            "plugins/README.md:{}: `plugins/{word}` does not exist",
            b.line
        );
    }
}

/// The fuzzing block needs cargo-fuzz and minutes of sanitizer builds, so it is not run here:
/// what it names must exist (the target in `fuzz/Cargo.toml`, its corpus directory), and the
/// corpus it points at is replayed on stable by `tests/fuzz_corpus.rs`.
#[test]
fn fuzz_commands_name_real_targets() {
    let b = block("README.md", "cargo install cargo-fuzz --locked");
    let manifest = std::fs::read_to_string(repo().join("fuzz/Cargo.toml")).unwrap();
    let run = b.text.lines().find(|l| l.contains("cargo fuzz run")).expect("a `cargo fuzz run` line");
    let mut words = run.split_whitespace().skip_while(|w| *w != "run").skip(1);
    let (target, corpus) = (words.next().unwrap(), words.next().unwrap());
    assert!(manifest.contains(&format!("name = \"{target}\"")), "fuzz/Cargo.toml has no target `{target}`");
    assert!(repo().join("fuzz").join(corpus).is_dir(), "fuzz/{corpus} is not a directory");
    assert!(b.text.contains("cd fuzz"), "the commands run in fuzz/");
}

/// The test attributes (`#[test]`, `#[tokio::test]`, with or without arguments) in the
/// workspace's Rust files, outside build output: what a full run reports, give or take the
/// few that are ignored or skipped.
fn test_functions_in_the_workspace() -> usize {
    fn walk(dir: &Path, count: &mut usize) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().to_string();
            if path.is_dir() {
                if !["target", "node_modules", ".git"].contains(&name.as_str()) && !name.starts_with('.') {
                    walk(&path, count);
                }
            } else if name.ends_with(".rs") {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                *count += text
                    .lines()
                    .map(str::trim)
                    .filter(|l| l.starts_with("#[test") || l.starts_with("#[tokio::test"))
                    .count();
            }
        }
    }
    let mut count = 0;
    walk(&repo(), &mut count);
    count
}

#[test]
fn the_readme_test_count_is_current() {
    // "a full run currently reports about NNN tests": within 10 % of the tests that exist, so
    // the number cannot go stale as tests are added.
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let phrase = "currently reports about ";
    let at = readme.find(phrase).expect("the README says how many tests a full run reports");
    let digits: String = readme[at + phrase.len()..].chars().take_while(|c| c.is_ascii_digit() || *c == ',').collect();
    let said: f64 = digits.replace(',', "").parse().expect("a number after `currently reports about`");
    let real = test_functions_in_the_workspace() as f64;
    assert!(
        (said - real).abs() <= real * 0.1,
        "README.md says a full run reports about {said} tests; the workspace has {real} test functions: update the README"
    );
}
