//! # tern-engine
//!
//! The core of Tern, a flow engine for conversational automation: the flow model and its
//! validation, the compiled runtime form, the executor with pause/resume, templates with
//! context-aware escaping, response mapping, and the guarded outbound HTTP client.
//!
//! ## Design choices
//!
//! - **Parse, then validate, then compile** (Vector's `TransformConfig::build`): the serializable
//!   [`FlowConfig`] is separate from the runtime [`CompiledFlow`]. Loading reports *every*
//!   problem at once as [`Diagnostic`]s with JSON pointers, lines and columns; it does no I/O.
//!   Templates, JSON paths, regexes and jump targets are resolved once, never per message.
//! - **Steps are plug-ins of the engine**: the engine never names a concrete step type. A
//!   [`StepType`] builds a [`Step`] through a [`BuildContext`] that records variables used and
//!   set, jump targets and integrations, which is what the whole-flow checks need. Built-in
//!   steps and WebAssembly plugins register in the same [`Registry`]. That API is a module of
//!   its own ([`step`]), below the compiler ([`compile`]) and the executor, which both use it;
//!   engine modules import each other one way (no cycles).
//! - **One owner for which flow runs**: a [`FlowSet`] holds the loaded flows in trigger order
//!   and the error flow, and picks the flow for a message, an event, an id or a failure; it
//!   also loads a directory of flow files the one way `tern validate` and `tern serve` share.
//! - **Runs are data**: a paused run is a [`RunSnapshot`] (serializable), so a conversation can
//!   resume in another process or after a restart.
//! - **Tokens are injected, never read**: there is no template for a token; a step names an
//!   integration and [`http::Outbound`] asks the [`TokenSource`] for a credential, checks that the
//!   URL's origin is one of the integration's `api_origins` before connecting, and refreshes once
//!   after a 401.
//! - **Conversations are a service, not a handler**: [`conversation::Conversations`] turns a
//!   message into an answer (dedupe, resume or trigger, the run, history, the webhook outbox)
//!   over a [`conversation::ConversationStore`]; runs happen in the service's tasks, never in
//!   the caller's future, and calls that are not idempotent go through an [`effects`] journal so
//!   that a crash never repeats them silently (SECURITY R12).
//! - **The engine names no database and no OAuth provider.** The conversation service defines
//!   the storage interface it needs ([`conversation::ConversationStore`], errors in
//!   [`storage`]); `tern-integrations` implements [`TokenSource`] over its own storage trait;
//!   `tern-store` implements both on SQLite and PostgreSQL. Dependencies point one way: engine
//!   ← integrations ← store. A store shared by several processes says so
//!   ([`conversation::ConversationStore::is_shared`]) and gives per-conversation locks, so
//!   ordering and dedupe hold across instances.
//! - **Outbound HTTP is guarded** (SECURITY R1–R3, R9): no automatic redirects (each hop is
//!   re-checked and credentials are dropped when the origin changes), an SSRF guard on resolved
//!   addresses, a deadline per request and a response size cap after decompression.

mod analysis;
pub mod channel;
pub mod channel_auth;
pub mod channels;
mod checked;
pub mod clock;
pub mod compile;
pub mod conversation;
pub mod diagnostics;
pub mod dot_path;
mod duplicates;
pub mod effects;
mod error;
pub mod expr;
mod fallback;
mod flow;
pub mod flow_set;
pub mod flow_test;
pub mod graph;
pub mod http;
mod ids;
pub mod json;
pub mod mapping;
pub mod platforms;
pub mod rates;
mod run;
pub mod schema;
pub mod secrets;
mod shape;
pub mod standard_webhooks;
pub mod step;
pub mod storage;
mod sync;
pub mod template;
pub mod timing;
pub mod tokens;
pub mod web_chat;

pub use compile::{FlowLimits, LoadOptions, load_flow};
pub use diagnostics::{Diagnostic, Severity};
pub use error::Error;
pub use fallback::{ErrorHandling, Handled};
pub use flow::{ERROR_VARIABLE, FlowConfig, HEADER_FIELDS, MessageMatch, StepHeader, Trigger, TriggerConfig};
pub use flow_set::{FlowSet, LoadedFlow, flow_hash};
pub use ids::{
    BadIdent, BadOpaqueId, CHANNEL_NAME_PATTERN, ChannelName, FlowId, IDENT_PATTERN, IdentProblem, IntegrationName,
    OPAQUE_ID_PATTERN, RunId, StepId, Target, VarName, is_hidden_char, is_ident_char,
};
pub use run::{
    CAUGHT_BY, CallerFrame, Engine, RunError, RunInput, RunLimits, RunResult, RunSnapshot, RunStatus, StepStatus,
    TraceEntry, UnknownStatus,
};
pub use step::{
    Behavior, BuildContext, CallRequest, CaughtFailure, Choice, CompiledFlow, CompiledStep, FixedFlows, FlowCall,
    FlowResolver, Jump, MAX_CALL_DEPTH, MAX_CHOICE_PAYLOAD_BYTES, MAX_CHOICE_TITLE_CHARS, MAX_CHOICES, Message,
    Outcome, Registry, Repeat, Reply, ReplySink, RunEnv, Step, StepContext, StepFailure, StepJump, StepType,
};
pub use tokens::{Credential, Grant, TokenError, TokenOwner, TokenSource};
