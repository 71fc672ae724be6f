//! The built-in steps in flows, run in process on the conversation service
//! ([`testkit::service`]) against real HTTP servers on loopback: what HTTP steps send and map,
//! APIs as they really answer, and failures that still answer the contact. One test binary;
//! the `tern` binary's own surfaces for the same flows are tested in tests/.
#![allow(clippy::unwrap_used)] // test code: a panic is a failed test with its message

mod choices;
mod expressions;
mod failures;
mod http_steps;
mod lists;
mod pagination;
mod real_apis;
