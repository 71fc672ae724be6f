#![no_main]
//! `cargo fuzz run flow_load`: see `fuzz/targets.rs`.

#[path = "../targets.rs"]
#[allow(dead_code)]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::flow_load(data));
