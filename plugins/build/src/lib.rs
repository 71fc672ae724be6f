//! Builds a Tern step plugin from C sources with registry toolchains only:
//!
//! 1. C bindings of the `tern:step` world from `plugins/wit` (the `wit-bindgen-c` crate, the
//!    same generator as `wit-bindgen c`);
//! 2. a core WebAssembly module from the sources and the bindings (Debian's `clang-19` with
//!    `wasi-libc` for `malloc` and the string functions, as a reactor, without any WASI call);
//! 3. the component (the `wit-component` crate, the same encoder as `wasm-tools component new`).
//!
//! The equivalent commands, for authors outside this repository:
//!
//! ```text
//! wit-bindgen c plugins/wit --world step --out-dir gen
//! clang-19 --target=wasm32-wasi -O2 -mexec-model=reactor -Igen -o core.wasm plugin.c gen/step.c gen/step_component_type.o
//! wasm-tools component new core.wasm -o plugin.wasm
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

/// The C compiler: `$CC`, else `clang-19`, else `clang`.
fn compiler() -> String {
    if let Ok(cc) = std::env::var("TERN_PLUGIN_CC") {
        return cc;
    }
    for candidate in ["clang-19", "clang"] {
        if Command::new(candidate).arg("--version").output().is_ok_and(|o| o.status.success()) {
            return candidate.to_string();
        }
    }
    "clang-19".to_string()
}

/// Writes the C bindings of the `step` world in `wit_dir` into `out_dir`.
pub fn bindings(wit_dir: &Path, out_dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut resolve = wit_parser::Resolve::default();
    let (package, _) =
        resolve.push_path(wit_dir).with_context(|| format!("cannot read the WIT in {}", wit_dir.display()))?;
    let world = resolve.select_world(&[package], Some("step"))?;
    let mut files = wit_bindgen_core::Files::default();
    wit_bindgen_c::Opts::default().build().generate(&mut resolve, world, &mut files)?;
    std::fs::create_dir_all(out_dir).with_context(|| format!("cannot create {}", out_dir.display()))?;
    let mut written = Vec::new();
    for (name, contents) in files.iter() {
        let path = out_dir.join(name);
        std::fs::write(&path, contents).with_context(|| format!("cannot write {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// Builds the plugin whose `.c` files are in `src_dir` into the component `out`, using
/// `work_dir` for intermediate files.
pub fn build_c(src_dir: &Path, wit_dir: &Path, work_dir: &Path, out: &Path) -> anyhow::Result<()> {
    let gen_dir = work_dir.join("gen");
    let generated = bindings(wit_dir, &gen_dir)?;
    let mut sources: Vec<PathBuf> = std::fs::read_dir(src_dir)
        .with_context(|| format!("cannot list {}", src_dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "c"))
        .collect();
    if sources.is_empty() {
        bail!("no .c files in {}", src_dir.display());
    }
    sources.sort();
    sources.extend(generated.into_iter().filter(|p| p.extension().is_some_and(|x| x == "c" || x == "o")));
    let core = work_dir.join("core.wasm");
    let cc = compiler();
    let output = Command::new(&cc)
        .args(["--target=wasm32-wasi", "-O2", "-mexec-model=reactor", "-Wall"])
        .arg("-I")
        .arg(&gen_dir)
        .arg("-o")
        .arg(&core)
        .args(&sources)
        .output()
        .with_context(|| {
            format!("cannot run `{cc}`; install Debian's clang-19 lld-19 wasi-libc libclang-rt-19-dev-wasm32")
        })?;
    if !output.status.success() {
        bail!("{cc} failed:\n{}", String::from_utf8_lossy(&output.stderr));
    }
    let module = std::fs::read(&core).with_context(|| format!("cannot read {}", core.display()))?;
    let component = componentize(&module)?;
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(out, component).with_context(|| format!("cannot write {}", out.display()))?;
    Ok(())
}

/// Turns a core module with the world's type information embedded (by the generated object
/// file, or by `wit_component::embed_component_metadata`) into a component.
pub fn componentize(module: &[u8]) -> anyhow::Result<Vec<u8>> {
    wit_component::ComponentEncoder::default()
        .validate(true)
        .module(module)
        .context("the module does not carry the tern:step world's type information")?
        .encode()
        .context("the module cannot be made into a tern:step component (a WASI import? stdio, exit and clocks are not available)")
}
