#![no_main]
//! `cargo fuzz run token_response`: see `fuzz/targets.rs`.

#[path = "../targets.rs"]
#[allow(dead_code)]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::token_response(data));
