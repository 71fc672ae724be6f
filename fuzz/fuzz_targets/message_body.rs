#![no_main]
//! `cargo fuzz run message_body`: see `fuzz/targets.rs`.

#[path = "../targets.rs"]
#[allow(dead_code)]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::message_body(data));
