//! `tern plugins new|list|check|install`: WebAssembly step plugins (see plugins/README.md).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde_json::{Map, Value, json};
use sha2::Digest as _;
use tern_engine::{LoadOptions, Message, RunInput, load_flow};
use tern_plugins::{Plugin, PluginStepType};

use super::context::Shared;

#[derive(Debug, Args)]
pub struct PluginsArgs {
    #[command(subcommand)]
    command: PluginsCommand,
}

/// The language of a new plugin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Lang {
    /// JavaScript (componentize-qjs from npm), with Tern's helper library.
    Js,
    /// Python (componentize-py from PyPI), with Tern's helper library.
    Python,
    /// C (clang-19 and wasi-libc), with Tern's single-header helper library.
    C,
}

#[derive(Debug, Subcommand)]
enum PluginsCommand {
    /// Create a folder with a new step plugin: its source, the helper library, the world, the
    /// build (toolchain pinned) and a README of three commands (build, run once, install).
    New {
        /// The step type name flows will use (`acme.lookup-contact`); the folder is named after
        /// it (`acme-lookup-contact`).
        name: String,
        /// The language.
        #[arg(long, value_enum, default_value = "js")]
        lang: Lang,
        /// Where to create the folder (default: the current directory).
        #[arg(long, value_name = "DIR", default_value = ".")]
        dir: PathBuf,
    },
    /// Build a plugin's folder into a component with its language's toolchain: JavaScript
    /// (`plugin.js`: componentize-qjs from the folder's `npm install`), Python (`plugin.py`:
    /// componentize-py from the folder's `.venv` or `PATH`) or C (`*.c`: clang-19 and
    /// wasi-libc); prints the `.wasm` path.
    Build {
        /// The plugin's folder.
        dir: PathBuf,
        /// The component to write (default: `<folder>/<folder name>.wasm`).
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// List the installed plugins (the `*.wasm` files in the plugin directory).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Load a component, print its step info, check its imports and run it once.
    Check {
        /// The component (`.wasm`).
        file: PathBuf,
        /// The step's configuration for the sample run (JSON object).
        #[arg(long = "step-config", default_value = "{}", value_name = "JSON")]
        step_config: String,
        /// Variables for the sample run (JSON object).
        #[arg(long, default_value = "{}", value_name = "JSON")]
        vars: String,
        /// The message text of the sample run.
        #[arg(long, default_value = "hello", value_name = "TEXT")]
        message: String,
        /// Origins the plugin may call without an integration during the sample run.
        #[arg(long = "allow-origin", value_name = "ORIGIN")]
        allow_origins: Vec<String>,
    },
    /// Run the step once against a test fixture (a JSON file of the step's config, the run's
    /// variables, recorded HTTP answers and what the run must produce): no network, no
    /// integration, no token. Prints the variables, the outcome and the host's calls; exits
    /// non-zero when the run differs from the fixture's `expect` (for CI).
    Test {
        /// The component (`.wasm`).
        file: PathBuf,
        /// The fixture (see plugins/README.md, "Test with a fixture").
        #[arg(long, value_name = "FILE")]
        fixture: PathBuf,
        /// Origins the plugin may call without an integration, as `install --allow-origin`
        /// will allow them (the calls are still answered from the fixture).
        #[arg(long = "allow-origin", value_name = "ORIGIN")]
        allow_origins: Vec<String>,
    },
    /// Check a component and copy it into the plugin directory as `<step type>.wasm`
    /// (compiling it into the cache, so later starts are fast).
    Install {
        /// The component (`.wasm`).
        file: PathBuf,
        /// An origin (`https://api.example.com`) the plugin may call without an integration;
        /// repeat for several. Requests that name an integration go to its API origins only.
        #[arg(long = "allow-origin", value_name = "ORIGIN")]
        allow_origins: Vec<String>,
        /// Replace an installed plugin with the same step type.
        #[arg(long)]
        replace: bool,
        /// Install only if the file's SHA-256 is this (64 hex digits, as its publisher gives
        /// it and `tern plugins list` shows it).
        #[arg(long = "sha256", value_name = "HEX")]
        sha256: Option<String>,
    },
}

pub async fn plugins(shared: &Shared, args: PluginsArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        PluginsCommand::New { name, lang, dir } => new(&name, lang, &dir),
        PluginsCommand::Build { dir, output } => build(&dir, output),
        PluginsCommand::List { json } => list(shared, json).await,
        PluginsCommand::Check { file, step_config, vars, message, allow_origins } => {
            check(shared, &file, &step_config, &vars, &message, &allow_origins).await
        }
        PluginsCommand::Test { file, fixture, allow_origins } => test(shared, &file, &fixture, &allow_origins).await,
        PluginsCommand::Install { file, allow_origins, replace, sha256 } => {
            install(shared, &file, &allow_origins, replace, sha256.as_deref()).await
        }
    }
}

/// `tern plugins new`: writes the scaffold into a folder that must not exist yet.
fn new(name: &str, lang: Lang, dir: &Path) -> anyhow::Result<ExitCode> {
    refuse_builtin(name)?;
    use tern_plugins::scaffold::Lang as L;
    let lang = match lang {
        Lang::Js => L::JavaScript,
        Lang::Python => L::Python,
        Lang::C => L::C,
    };
    let files = tern_plugins::scaffold::files(name, lang)?;
    let folder = dir.join(tern_plugins::scaffold::folder_name(name));
    anyhow::ensure!(
        !folder.exists(),
        "{} already exists; choose another name or --dir, or remove it first",
        super::terminal::safe(&folder.display().to_string())
    );
    for f in &files {
        let path = folder.join(&f.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, &f.text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    println!("created {} (step type `{name}`):", folder.display());
    for f in &files {
        println!("  {}", f.path.display());
    }
    println!("Next: cd {} and run the three commands in its README.md", folder.display());
    Ok(ExitCode::SUCCESS)
}

/// `tern plugins build`: the folder's language by its files, then its toolchain.
fn build(dir: &Path, output: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(dir.is_dir(), "{} is not a folder; give the plugin's folder", dir.display());
    let dir = dir.canonicalize().with_context(|| format!("cannot read {}", dir.display()))?;
    let folder = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "plugin".into());
    let out = match output {
        Some(o) => std::path::absolute(&o).with_context(|| format!("cannot use {}", o.display()))?,
        None => dir.join(format!("{folder}.wasm")),
    };
    // The folder's own WIT when it has one (a scaffold does), else the world this Tern runs.
    let work = tempfile::tempdir().context("cannot make a temporary folder")?;
    let wit = if dir.join("wit").is_dir() {
        dir.join("wit")
    } else {
        let wit = work.path().join("wit");
        std::fs::create_dir_all(&wit)?;
        std::fs::write(wit.join("step.wit"), tern_plugins::scaffold::WIT)?;
        wit
    };
    let has_c = std::fs::read_dir(&dir)?.filter_map(Result::ok).any(|e| e.path().extension().is_some_and(|x| x == "c"));
    if dir.join("plugin.js").is_file() {
        build_js(&dir, &wit, &out)?;
    } else if dir.join("plugin.py").is_file() {
        build_py(&dir, &wit, work.path(), &out)?;
    } else if has_c {
        tern_plugin_build::build_c(&dir, &wit, work.path(), &out)?;
    } else {
        anyhow::bail!(
            "{} has no plugin.js (JavaScript), plugin.py (Python) or .c file (C); start one with `tern plugins new NAME --lang js|python|c`",
            dir.display()
        );
    }
    let size = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
    println!("built {} ({} KiB)", out.display(), size / 1024);
    if dir.join("fixture.json").is_file() {
        println!("Next: tern plugins test {} --fixture {}", out.display(), dir.join("fixture.json").display());
    } else {
        println!("Next: tern plugins check {} --step-config 'JSON: the step's fields'", out.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// A JavaScript plugin: componentize-qjs from the folder's `node_modules`, synchronous, WASI
/// stubbed, with the module root its `package.json` build names (`--module-root`), or the folder.
fn build_js(dir: &Path, wit: &Path, out: &Path) -> anyhow::Result<()> {
    let tool = dir.join("node_modules/.bin/componentize-qjs");
    anyhow::ensure!(
        tool.is_file(),
        "componentize-qjs is not installed in {}: run `npm install` there first (it needs Node.js and npm; on Debian `apt install nodejs npm`)",
        dir.display()
    );
    let script: Option<String> = std::fs::read_to_string(dir.join("package.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|p| p["scripts"]["build"].as_str().map(str::to_string));
    let root = script
        .as_deref()
        .and_then(|s| s.split_whitespace().skip_while(|w| *w != "--module-root").nth(1))
        .map_or_else(|| dir.to_path_buf(), |r| dir.join(r));
    let mut cmd = std::process::Command::new(&tool);
    cmd.arg("--wit").arg(wit).args(["--world", "step", "--js", "plugin.js", "--module-root"]).arg(&root);
    cmd.args(["--sync", "--stub-wasi", "-o"]).arg(out).current_dir(dir);
    run_toolchain(cmd, "componentize-qjs")
}

/// Runs a language's toolchain; when it fails, its own output says why.
fn run_toolchain(mut cmd: std::process::Command, name: &str) -> anyhow::Result<()> {
    let output = cmd.output().with_context(|| format!("cannot run {}", cmd.get_program().to_string_lossy()))?;
    if !output.status.success() {
        anyhow::bail!(
            "{name} failed:\n{}{}",
            super::terminal::safe(&String::from_utf8_lossy(&output.stdout)),
            super::terminal::safe(&String::from_utf8_lossy(&output.stderr))
        );
    }
    Ok(())
}

/// A Python plugin: componentize-py from the folder's `.venv` (the scaffold's README makes it),
/// else from `PATH`, with WASI stubbed inside the component (no WASI import reaches the host).
/// `tern_step` is the folder's own copy when it has one (a scaffold does), else the helper
/// library this Tern ships.
fn build_py(dir: &Path, wit: &Path, work: &Path, out: &Path) -> anyhow::Result<()> {
    let helper = work.join("sdk");
    std::fs::create_dir_all(&helper)?;
    std::fs::write(helper.join("tern_step.py"), tern_plugins::scaffold::PY_HELPER)?;
    let local = dir.join(".venv/bin/componentize-py");
    let tool = if local.is_file() {
        local
    } else {
        let on_path = std::env::var_os("PATH")
            .and_then(|p| std::env::split_paths(&p).map(|d| d.join("componentize-py")).find(|p| p.is_file()));
        on_path.ok_or_else(|| {
            anyhow::anyhow!(
                "componentize-py is not installed for {}: run `python3 -m venv .venv && .venv/bin/pip install -r requirements.txt` there (or `pip install componentize-py=={}`); it needs Python 3.10 or later (on Debian `apt install python3-venv`)",
                dir.display(),
                tern_plugins::scaffold::COMPONENTIZE_PY
            )
        })?
    };
    let mut cmd = std::process::Command::new(&tool);
    cmd.arg("-d").arg(wit).args(["-w", "step", "componentize", "--stub-wasi", "plugin"]);
    cmd.arg("-p").arg(dir).arg("-p").arg(&helper).arg("-o").arg(out).current_dir(dir);
    run_toolchain(cmd, "componentize-py")
}

/// A plugin may not take a built-in step's name (`new`, `check` and `install` say the same).
fn refuse_builtin(name: &str) -> anyhow::Result<()> {
    if tern_steps::registry().get(name).is_some() {
        anyhow::bail!("step type `{name}` is a built-in step; a plugin must use another name (e.g. `acme.{name}`)");
    }
    Ok(())
}

fn origins(list: &[String]) -> anyhow::Result<Vec<url::Origin>> {
    list.iter()
        .map(|o| tern_engine::http::parse_origin(o).map_err(|e| anyhow::anyhow!("--allow-origin {o}: {e}")))
        .collect()
}

fn describe(plugin: &Plugin) -> Value {
    serde_json::to_value(plugin.summary()).unwrap_or_default()
}

async fn list(shared: &Shared, json: bool) -> anyhow::Result<ExitCode> {
    let dir = shared.plugins_dir();
    let files = tern_plugins::plugin_files(&dir)?;
    if files.is_empty() {
        if json {
            println!("[]");
        } else {
            println!("no plugins in {} (install one with `tern plugins install FILE`)", dir.display());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let runtime = shared.plugin_runtime()?;
    let plugins = tern_plugins::load_dir(&runtime, &dir).await.map_err(super::plugin_errors)?;
    if json {
        let list: Vec<Value> = plugins.iter().map(|p| describe(p)).collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
    } else {
        println!(
            "{:<28} {:<10} {:<14} {:<24} {:<30} FILE",
            "STEP TYPE", "VERSION", "SHA256", "INTEGRATIONS", "ALLOWED ORIGINS"
        );
        for p in plugins.iter().map(|p| p.summary()) {
            let dash = |v: &[String]| if v.is_empty() { "-".to_string() } else { v.join(",") };
            let integrations = if p.integration_fields.is_empty() {
                "-".to_string()
            } else {
                format!("via `{}`", p.integration_fields.join("`/`"))
            };
            println!(
                "{:<28} {:<10} {:<14} {:<24} {:<30} {}",
                p.step_type,
                super::terminal::safe(&p.version),
                format!("{}…", p.sha256.get(..12).unwrap_or(&p.sha256)),
                integrations,
                dash(&p.allowed_origins),
                p.file
            );
        }
        println!("(`--json` gives each plugin's whole SHA-256 and description)");
    }
    Ok(ExitCode::SUCCESS)
}

async fn check(
    shared: &Shared,
    file: &Path,
    config: &str,
    vars: &str,
    message: &str,
    allow: &[String],
) -> anyhow::Result<ExitCode> {
    let config: Map<String, Value> = serde_json::from_str(config).context("--step-config must be a JSON object")?;
    let vars: Map<String, Value> = serde_json::from_str(vars).context("--vars must be a JSON object")?;
    let runtime = shared.plugin_runtime()?;
    let plugin = Arc::new(Plugin::load(&runtime, file, origins(allow)?).await?);
    println!("{}", serde_json::to_string_pretty(&describe(&plugin))?);
    println!(
        "imports: only {}@{} (no WASI); world version OK",
        tern_plugins::HOST_INTERFACE,
        tern_plugins::WORLD_VERSION
    );

    refuse_builtin(&plugin.info.name).with_context(|| file.display().to_string())?;
    let mut registry = tern_steps::registry();
    registry.register(Arc::new(PluginStepType::new(plugin.clone())))?;
    let flow = one_step_flow(&plugin, &registry, config, &vars, "--step-config")?;
    let with_store = !flow.integrations.is_empty() || shared.has_store();
    let engine = super::run::engine(shared, with_store, Arc::new(registry)).await?;
    let input = RunInput {
        now_ms: None,
        woken: None,
        conversation_id: "plugin-check".into(),
        contact: json!({"id": "cli-user"}),
        message: Message { text: message.to_string(), ..Default::default() },
        event: None,
        journal: None,
        flows: None,
    };
    let started = Instant::now();
    let result = engine.start(&flow, input, vars, None).await;
    let elapsed = started.elapsed();
    let trace = result.trace.first();
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({
            "status": result.status,
            "variables": result.variables,
            "outcome": trace.and_then(|t| t.detail.get("outcome")),
            "requests": trace.and_then(|t| t.detail.get("requests")),
            "fuel": trace.and_then(|t| t.detail.get("fuel")),
            "error": result.error,
            "run_ms": elapsed.as_secs_f64() * 1000.0,
        }))?
    );
    if result.error.is_some() {
        return Err(super::Failed("the sample run failed".into()).into());
    }
    Ok(ExitCode::SUCCESS)
}

/// A flow with the plugin's step alone, from the step's fields; a field that does not fit the
/// plugin's schema is reported at `source` (`--step-config`, a fixture's `/config`).
/// The run's variables are declared in the flow, so placeholders that use them compile.
fn one_step_flow(
    plugin: &Plugin,
    registry: &tern_engine::Registry,
    config: Map<String, Value>,
    vars: &Map<String, Value>,
    source: &str,
) -> anyhow::Result<tern_engine::CompiledFlow> {
    let mut step = config;
    step.insert("id".into(), json!("check"));
    step.insert("type".into(), json!(plugin.info.name));
    let flow = json!({"version": 1, "id": "plugin-check", "variables": vars, "steps": [Value::Object(step)]});
    match load_flow(&flow.to_string(), &LoadOptions::new(registry)) {
        Ok(f) => Ok(f),
        Err(diags) => {
            // Said at the field of the step's config, not in the one-step flow made from it.
            for d in &diags {
                let at = d.pointer.strip_prefix("/steps/0").unwrap_or(&d.pointer);
                let hint = d.hint.as_deref().map(|h| format!("\n  hint: {h}")).unwrap_or_default();
                eprintln!("{source}{at}: error[{}]: {}{hint}", d.code, super::terminal::safe(&d.message));
            }
            anyhow::bail!("{source} does not fit the plugin's config schema (above); correct it and try again")
        }
    }
}

/// A fixture's text, at most [`MAX_FIXTURE_BYTES`](tern_plugins::fixture::MAX_FIXTURE_BYTES)
/// read (a larger one is refused by the parser).
fn read_fixture(path: &Path) -> anyhow::Result<String> {
    use std::io::Read as _;
    let cannot = |e: std::io::Error| {
        let why = match e.kind() {
            std::io::ErrorKind::NotFound => "there is no such file".to_string(),
            std::io::ErrorKind::IsADirectory => "it is a folder; give the fixture's JSON file".to_string(),
            std::io::ErrorKind::InvalidData => "it is not UTF-8 text".to_string(),
            _ => e.to_string(),
        };
        anyhow::anyhow!("cannot read the fixture {}: {why}", path.display())
    };
    let file = std::fs::File::open(path).map_err(cannot)?;
    if file.metadata().is_ok_and(|m| m.is_dir()) {
        return Err(cannot(std::io::Error::from(std::io::ErrorKind::IsADirectory)));
    }
    let mut text = String::new();
    file.take(tern_plugins::fixture::MAX_FIXTURE_BYTES as u64 + 1).read_to_string(&mut text).map_err(cannot)?;
    Ok(text)
}

/// `tern plugins test`: one run against a fixture's recording, checked against its `expect`.
async fn test(shared: &Shared, file: &Path, fixture_path: &Path, allow: &[String]) -> anyhow::Result<ExitCode> {
    let text = read_fixture(fixture_path)?;
    let fixture = tern_plugins::fixture::Fixture::parse(&text)
        .map_err(|e| anyhow::anyhow!("fixture {}, at {e}", fixture_path.display()))?;
    let runtime = shared.plugin_runtime()?;
    let plugin = Arc::new(Plugin::load(&runtime, file, origins(allow)?).await?);
    refuse_builtin(&plugin.info.name).with_context(|| file.display().to_string())?;
    let replay = Arc::new(fixture.replay());
    let mut registry = tern_steps::registry();
    registry.register(Arc::new(PluginStepType::new(plugin.clone()).with_replay(replay.clone())))?;
    let source = format!("{} /config", fixture_path.display());
    let flow = one_step_flow(&plugin, &registry, fixture.config.clone(), &fixture.variables, &source)?;
    // No store and no token source: every call is answered from the recording.
    let engine = super::run::engine(shared, false, Arc::new(registry)).await?;
    let input = RunInput {
        now_ms: None,
        woken: None,
        conversation_id: "plugin-test".into(),
        contact: json!({"id": fixture.contact}),
        message: Message { text: fixture.message.clone(), ..Default::default() },
        event: None,
        journal: None,
        flows: None,
    };
    let started = Instant::now();
    let result = engine.start(&flow, input, fixture.variables.clone(), None).await;
    let elapsed = started.elapsed();
    let trace = result.trace.first();
    let outcome = trace.and_then(|t| t.detail.get("outcome")).and_then(Value::as_str);
    let unused = replay.unused();
    let problems = fixture.expect.check(&tern_plugins::fixture::Observed {
        variables: &result.variables,
        outcome,
        error: result.error.as_ref().map(|e| (e.code.as_str(), e.message.as_str())),
        unused: &unused,
    });
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({
            "step": plugin.info.name,
            "status": result.status,
            "variables": result.variables,
            "outcome": outcome,
            "calls": trace.and_then(|t| t.detail.get("requests")).cloned().unwrap_or(json!([])),
            "error": result.error,
            "fuel": trace.and_then(|t| t.detail.get("fuel")),
            "run_ms": elapsed.as_secs_f64() * 1000.0,
        }))?
    );
    if problems.is_empty() {
        println!("PASS {} ({})", fixture_path.display(), plugin.info.name);
        return Ok(ExitCode::SUCCESS);
    }
    for p in &problems {
        eprintln!("  - {}", super::terminal::safe(p));
    }
    Err(super::Failed(format!(
        "FAIL {}: {} difference(s) from the fixture (above)",
        fixture_path.display(),
        problems.len()
    ))
    .into())
}

async fn install(
    shared: &Shared,
    file: &Path,
    allow: &[String],
    replace: bool,
    pin: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let allowed = origins(allow)?;
    // The bytes are read once: what is checked (the pin, the load) is what is installed.
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    if let Some(pin) = pin {
        let pin = pin.trim().to_ascii_lowercase();
        anyhow::ensure!(
            pin.len() == 64 && pin.bytes().all(|b| b.is_ascii_hexdigit()),
            "--sha256 takes the 64 hex digits of a SHA-256"
        );
        let actual = hex::encode(sha2::Sha256::digest(&bytes));
        anyhow::ensure!(
            actual == pin,
            "{}: its SHA-256 is {actual}, not the pinned {pin}; it is not the plugin you meant to install (get it again from its publisher)",
            file.display()
        );
    }
    let dir = shared.plugins_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    // Staged under a name the plugin loader does not list (`*.wasm` only).
    let staged = tempfile::Builder::new()
        .suffix(".staging")
        .tempfile_in(&dir)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    std::fs::write(staged.path(), &bytes).with_context(|| format!("cannot write {}", staged.path().display()))?;
    let runtime = shared.plugin_runtime()?;
    let plugin = Plugin::load(&runtime, staged.path(), allowed.clone())
        .await
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let name = &plugin.info.name;
    refuse_builtin(name).with_context(|| file.display().to_string())?;
    let target = dir.join(format!("{name}.wasm"));
    if target.exists() && !replace {
        anyhow::bail!("{name} is already installed at {}; pass --replace to replace it", target.display());
    }
    // Another file may declare the same step type under another file name.
    for other in tern_plugins::plugin_files(&dir)? {
        if other != target
            && other != staged.path()
            && let Ok(p) = Plugin::load(&runtime, &other, Vec::new()).await
            && p.info.name == *name
        {
            anyhow::bail!("{} already provides step type `{name}`; remove it first", other.display());
        }
    }
    staged.persist(&target).map_err(|e| anyhow::anyhow!("cannot install {}: {}", target.display(), e.error))?;
    let allow_file = tern_plugins::allowlist_path(&target);
    if allowed.is_empty() {
        let _ = std::fs::remove_file(&allow_file);
    } else {
        let text: String = allowed.iter().map(|o| format!("{}\n", o.ascii_serialization())).collect();
        std::fs::write(&allow_file, text).with_context(|| format!("cannot write {}", allow_file.display()))?;
    }
    println!(
        "installed {name} {} at {} (compiled in {} ms, sha256 {}); flows can use \"type\": \"{name}\"",
        plugin.info.version,
        target.display(),
        plugin.load_time.as_millis(),
        plugin.sha256
    );
    Ok(ExitCode::SUCCESS)
}
