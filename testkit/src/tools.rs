//! Tools from outside Cargo that some tests need: Chromium and chromedriver, clang-19 with
//! wasi-libc, Node.js and npm, and the crates.io command-line tools the plugin guide shows.
//!
//! `scripts/test` installs all of them and sets `TERN_TEST_REQUIRE_TOOLS=1`, so there (and in
//! CI, which runs `scripts/test`) a missing tool fails the test with the command that installs
//! it. A plain `cargo test` on a machine without one skips the test instead, and says so on the
//! terminal (straight to standard error, past the test harness's output capture), with the
//! same command.

use std::io::Write;
use std::path::{Path, PathBuf};

/// A tool some tests need, how to tell it is there, and how to install it.
pub struct Tool {
    /// What it is, for the message.
    pub name: &'static str,
    /// Programs that must be on `PATH`.
    pub programs: &'static [&'static str],
    /// Files that must exist (system libraries and headers).
    pub files: &'static [&'static str],
    /// The command that installs it.
    pub install: &'static str,
}

/// Debian's Chromium and chromedriver, for the browser test.
pub const CHROMIUM: Tool = Tool {
    name: "Chromium and chromedriver",
    programs: &["chromium", "chromedriver"],
    files: &[],
    install: "apt-get install chromium chromium-driver",
};

/// clang-19, wasm-ld and wasi-libc: the C plugin toolchain.
pub const CLANG_WASI: Tool = Tool {
    name: "clang-19 for wasm32-wasi",
    programs: &["clang-19", "wasm-ld-19"],
    files: &[
        "/usr/include/wasm32-wasi/stdlib.h",
        "/usr/lib/llvm-19/lib/clang/19/lib/wasi/libclang_rt.builtins-wasm32.a",
    ],
    install: "apt-get install clang-19 lld-19 wasi-libc libclang-rt-19-dev-wasm32",
};

/// Node.js and npm: panva's oidc-provider and componentize-qjs.
pub const NODE: Tool =
    Tool { name: "Node.js and npm", programs: &["node", "npm"], files: &[], install: "apt-get install nodejs npm" };

/// The command-line tools from crates.io that `plugins/README.md` shows next to
/// `tern-plugin-build` (the versions match the crates the build tool uses).
pub const COMPONENT_CLIS: Tool = Tool {
    name: "wit-bindgen and wasm-tools",
    programs: &["wit-bindgen", "wasm-tools"],
    files: &[],
    install: "cargo install --locked wit-bindgen-cli@0.60.0 wasm-tools@1.254.2",
};

/// Fails the test with `message` under `TERN_TEST_REQUIRE_TOOLS=1`; otherwise prints
/// `SKIPPED <message>.` straight to standard error, and the caller returns early.
fn skip_or_fail(message: &str) {
    if std::env::var_os("TERN_TEST_REQUIRE_TOOLS").is_some_and(|v| v == "1") {
        panic!("{message}");
    }
    let _ = writeln!(std::io::stderr(), "\nSKIPPED {message}.\n");
}

/// The official JSONPath Compliance Test Suite (RFC 9535), pinned in `tests/jsonpath` (the npm
/// package `jsonpath-rfc9535` ships the suite's `cts.json`), or `None` when it is not
/// installed: then the test is skipped with the install command, or fails under
/// `TERN_TEST_REQUIRE_TOOLS=1`.
pub fn jsonpath_cts(test: &str) -> Option<PathBuf> {
    let cts = crate::repo()
        .join("tests/jsonpath/node_modules/jsonpath-rfc9535/src/__tests__/jsonpath-compliance-test-suite/cts.json");
    if cts.is_file() {
        return Some(cts);
    }
    skip_or_fail(&format!(
        "{test} needs the JSONPath Compliance Test Suite (install with `npm ci --prefix tests/jsonpath`). `scripts/test` installs everything the tests need"
    ));
    None
}

fn on_path(program: &str) -> bool {
    let Some(path) = std::env::var_os("PATH") else { return false };
    std::env::split_paths(&path).any(|dir| dir.join(program).is_file())
}

/// Whether every tool is there. A missing one fails the test when `TERN_TEST_REQUIRE_TOOLS=1`
/// (set by `scripts/test`); otherwise it prints `SKIPPED <test>: …` with the install command
/// and returns false, and the test returns early.
pub fn available(test: &str, tools: &[&Tool]) -> bool {
    let mut missing = Vec::new();
    for tool in tools {
        let programs = tool.programs.iter().filter(|p| !on_path(p));
        let files = tool.files.iter().filter(|f| !Path::new(f).exists());
        let absent: Vec<&str> = programs.chain(files).copied().collect();
        if !absent.is_empty() {
            missing.push(format!("{} (missing {}; install with `{}`)", tool.name, absent.join(", "), tool.install));
        }
    }
    if missing.is_empty() {
        return true;
    }
    let message = format!("{test} needs {}. `scripts/test` installs everything the tests need", missing.join(" and "));
    skip_or_fail(&message);
    false
}

/// `componentize-qjs` (the JavaScript plugin compiler) from the npm packages of
/// `plugins/examples/js-crm-lookup`, installed there with `npm install` when missing (once at a
/// time per process). Needs [`NODE`].
///
/// # Panics
/// When `npm install` fails, with its output.
pub fn componentize_qjs() -> PathBuf {
    static NPM: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let src = crate::repo().join("plugins/examples/js-crm-lookup");
    let bin = src.join("node_modules/.bin/componentize-qjs");
    let _guard = NPM.lock().unwrap_or_else(|p| p.into_inner());
    if !bin.exists() {
        // `npm install`, not `npm ci`: see scripts/test.
        let out = std::process::Command::new("npm")
            .args(["install", "--no-audit", "--no-fund"])
            .current_dir(&src)
            .output()
            .expect("run npm");
        assert!(out.status.success(), "npm install: {}", String::from_utf8_lossy(&out.stderr));
    }
    bin
}

/// The componentize-py version `scripts/test` installs and the Python scaffold pins.
pub const COMPONENTIZE_PY: &str = "0.25.1";

/// The folder holding `componentize-py` (the Python plugin compiler, in
/// `~/.cache/tern-componentize-py/bin`), or `None` when it is not installed: then the test is
/// skipped with the install command, or fails under `TERN_TEST_REQUIRE_TOOLS=1`.
pub fn componentize_py(test: &str) -> Option<PathBuf> {
    let bin = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/tern-componentize-py/bin"));
    if let Some(bin) = bin
        && std::process::Command::new(bin.join("componentize-py"))
            .arg("--version")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(COMPONENTIZE_PY))
    {
        return Some(bin);
    }
    let message = format!(
        "{test} needs componentize-py {COMPONENTIZE_PY} (install with `python3 -m venv ~/.cache/tern-componentize-py && ~/.cache/tern-componentize-py/bin/pip install componentize-py=={COMPONENTIZE_PY}`). `scripts/test` installs everything the tests need"
    );
    skip_or_fail(&message);
    None
}

/// The platforms' own Python libraries, pinned (also in `scripts/test`): Twilio's request
/// validator and Slack's signature verifier sign the platform channel tests' webhooks.
pub const PLATFORM_SDKS: &[(&str, &str)] = &[("twilio", "9.13.0"), ("slack_sdk", "3.48.0")];

/// Python with [`PLATFORM_SDKS`] (in `~/.cache/tern-platform-sdks`), or `None` when they are
/// not installed: then the test is skipped with the install command, or fails under
/// `TERN_TEST_REQUIRE_TOOLS=1`.
pub fn platform_sdks(test: &str) -> Option<PathBuf> {
    python_packages(test, "tern-platform-sdks", PLATFORM_SDKS)
}

/// junitparser, a JUnit XML reader (PyPI), pinned (also in `scripts/test`): what reads
/// `tern test --junit` in the tests, as a CI system would.
pub const JUNITPARSER: &[(&str, &str)] = &[("junitparser", "5.0.3")];

/// Python with [`JUNITPARSER`] (in `~/.cache/tern-junitparser`), or `None` as
/// [`platform_sdks`].
pub fn junitparser(test: &str) -> Option<PathBuf> {
    python_packages(test, "tern-junitparser", JUNITPARSER)
}

/// Python in the virtual environment `~/.cache/VENV` with `pins` installed, or `None` when they
/// are not: then the test is skipped with the install command, or fails under
/// `TERN_TEST_REQUIRE_TOOLS=1`.
fn python_packages(test: &str, venv: &str, pins: &[(&str, &str)]) -> Option<PathBuf> {
    let python = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join(venv).join("bin/python"));
    let check = pins
        .iter()
        .map(|(name, version)| format!("m.version('{name}') == '{version}'"))
        .collect::<Vec<_>>()
        .join(" and ");
    let check = format!("import importlib.metadata as m; assert {check}");
    if let Some(python) = python.filter(|p| p.is_file())
        && std::process::Command::new(&python).args(["-c", &check]).status().is_ok_and(|s| s.success())
    {
        return Some(python);
    }
    let pins: Vec<String> = pins.iter().map(|(n, v)| format!("{n}=={v}")).collect();
    let message = format!(
        "{test} needs the Python packages {} (install with `python3 -m venv ~/.cache/{venv} && ~/.cache/{venv}/bin/pip install {}`). `scripts/test` installs everything the tests need",
        pins.join(" and "),
        pins.join(" ")
    );
    skip_or_fail(&message);
    None
}

/// Runs `script` with `python` and one argument (`arg`, JSON), and returns what it printed,
/// trimmed.
///
/// # Panics
/// When the script fails (its standard error is the message).
pub fn python_output(python: &Path, script: &str, arg: &serde_json::Value) -> String {
    let out = std::process::Command::new(python).args(["-c", script, &arg.to_string()]).output().expect("python runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
