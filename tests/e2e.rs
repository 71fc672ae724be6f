//! End-to-end tests of the `tern` binary. One test binary; the shared environment lives in
//! `support` (a recording HTTP API on 127.0.0.1:0, temporary flow files, the binary runner).
#![allow(clippy::unwrap_used)] // test code: a panic is a failed test with its message

mod support;

mod browser;
mod contract;
mod failures;
mod http_steps;
mod integrations;
mod plugins;
mod readme;
mod real_apis;
mod run_cli;
mod runtime;
mod schema;
mod security;
mod serve;
mod validate;
