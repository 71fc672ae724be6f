//! End-to-end tests of the `tern` binary. One test binary; the shared environment lives in
//! `support` (a recording HTTP API on 127.0.0.1:0, temporary flow files, the binary runner).

mod support;

mod browser;
mod failures;
mod http_steps;
mod integrations;
mod plugins;
mod run_cli;
mod schema;
mod serve;
mod validate;
