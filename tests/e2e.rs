//! End-to-end tests of the `tern` binary. One test binary; the shared environment is the
//! `testkit` crate (a recording HTTP API on 127.0.0.1:0, the OAuth test servers, temporary flow
//! files, the binary runner), reached as `support` bound to the binary these tests built.
#![allow(clippy::unwrap_used)] // test code: a panic is a failed test with its message

/// [`testkit`], with [`tern`](support::tern) and [`run`](support::run) starting the binary
/// built for these tests.
mod support {
    pub use testkit::*;

    /// Hands `testkit` the binary Cargo built for these tests.
    fn bind() {
        testkit::set_bin(env!("CARGO_BIN_EXE_tern"));
    }

    /// [`testkit::tern`] on this build's binary.
    pub fn tern() -> std::process::Command {
        bind();
        testkit::tern()
    }

    /// `tern ARGS` with the data directory `data`, private networks allowed (the platform fakes
    /// listen on loopback) and the variables `env`: its output.
    pub fn tern_at(data: &std::path::Path, env: &[(&str, &str)], args: &[&str]) -> std::process::Output {
        let mut cmd = tern();
        cmd.env("TERN_DATA_DIR", data).env("TERN_ALLOW_PRIVATE_NETWORK", "1");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.args(args).output().unwrap()
    }

    /// [`testkit::run`] on this build's binary.
    pub fn run<I, S>(args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        bind();
        testkit::run(args)
    }
}

mod auth_kinds;
mod browser;
mod channel_edge;
mod channels;
mod connection_events;
mod contract;
mod deliveries;
mod edges;
mod failures;
mod flow_tests;
mod flows_graph;
mod health;
mod http_steps;
mod instances;
mod integrations;
mod jsonpath_cts;
mod lock_loss;
mod plugin_authoring;
mod plugins;
mod readme;
mod real_apis;
mod run_cli;
mod runs;
mod runtime;
mod schema;
mod security;
mod serve;
mod slack;
mod telegram;
mod timers;
mod twilio;
mod validate;
mod web_chat;
mod whatsapp;
