#![no_main]
//! `cargo fuzz run response_mapping`: see `fuzz/targets.rs`.

#[path = "../targets.rs"]
#[allow(dead_code)]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::response_mapping(data));
