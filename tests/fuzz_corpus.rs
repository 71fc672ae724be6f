//! Replays the fuzz corpus on the stable toolchain: every input in `fuzz/corpus/TARGET/` and
//! every crash the fuzzers ever found in `fuzz/regressions/TARGET/` goes through the same target
//! body the libFuzzer binaries run (`fuzz/targets.rs`), so CI catches a regression without
//! nightly. See the README's "Fuzzing" section for running the fuzzers themselves.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed test with its message

#[path = "../fuzz/targets.rs"]
mod targets;

use std::path::Path;

/// Runs `target` on every file under `dir`; returns how many there were.
fn replay(dir: &Path, name: &str, target: fn(&[u8])) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let mut files: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file()).collect();
    files.sort();
    for file in &files {
        let data = std::fs::read(file).unwrap();
        let outcome = std::panic::catch_unwind(|| target(&data));
        assert!(outcome.is_ok(), "fuzz target `{name}` panicked on {}", file.display());
    }
    files.len()
}

#[test]
fn every_corpus_and_regression_input_passes_its_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    for (name, target) in targets::TARGETS {
        let corpus = replay(&root.join("corpus").join(name), name, *target);
        assert!(corpus > 0, "fuzz/corpus/{name} is empty: commit a corpus for every target");
        replay(&root.join("regressions").join(name), name, *target);
    }
}
