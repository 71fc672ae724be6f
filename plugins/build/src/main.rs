//! `tern-plugin-build c DIR -o FILE`: builds a C step plugin (see the library docs).

use std::path::PathBuf;
use std::process::ExitCode;

fn usage() -> ExitCode {
    eprintln!("usage: tern-plugin-build c <source-dir> -o <plugin.wasm> [--wit <wit-dir>]");
    eprintln!("       tern-plugin-build bindings <out-dir> [--wit <wit-dir>]");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).map(PathBuf::from);
    let wit = flag("--wit").unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../wit"));
    let result = match args.first().map(String::as_str) {
        Some("c") => {
            let (Some(src), Some(out)) = (args.get(1).map(PathBuf::from), flag("-o")) else { return usage() };
            let work = std::env::temp_dir().join(format!("tern-plugin-build-{}", std::process::id()));
            let r = tern_plugin_build::build_c(&src, &wit, &work, &out);
            let _ = std::fs::remove_dir_all(&work);
            r.map(|()| eprintln!("built {}", out.display()))
        }
        Some("bindings") => {
            let Some(out) = args.get(1).map(PathBuf::from) else { return usage() };
            tern_plugin_build::bindings(&wit, &out).map(|files| {
                for f in files {
                    eprintln!("wrote {}", f.display());
                }
            })
        }
        _ => return usage(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
