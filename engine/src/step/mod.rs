//! # The step API
//!
//! What a step type and the engine agree on, and nothing else: a [`StepType`] turns a step's
//! JSON into a runnable [`Step`] through a [`BuildContext`] when the flow is compiled; the
//! executor runs it through a [`StepContext`] and follows the [`Outcome`] it returns. Step
//! types are registered explicitly in a [`Registry`] (built-in ones in `tern-steps`,
//! WebAssembly plugins in `tern-plugins`); the engine never names a concrete step type.
//!
//! ## Design choices
//!
//! - **The API is a module of its own, below the compiler and the executor.** The compiler
//!   (`compile.rs`) drives [`BuildContext`] and produces a [`CompiledFlow`]; the executor
//!   (`run.rs`) drives [`StepContext`] over a compiled flow. Both depend on this module and it
//!   depends on neither, so step types (and plugins) see one surface and dependencies point
//!   one way.
//! - **Building records facts.** Everything a step names (variables, targets, integrations) is
//!   compiled through [`BuildContext`], which records it for the whole-flow checks; a step type
//!   cannot declare an edge the checks and the flow pictures do not know about.
//! - **Running sees a narrow context.** A step reads and sets variables, replies, and sends
//!   HTTP through [`StepContext::send`], the journaled path (SECURITY R12); it never sees the
//!   store, the flow or other steps. A step whose calls outlive the context's borrow (a
//!   plugin's host) takes the same path as an owned [`CallJournal`].
//!
//! | file | what |
//! |---|---|
//! | `outcome.rs` | [`Jump`], [`Outcome`], [`Behavior`], [`StepFailure`] |
//! | `build.rs` | [`BuildContext`] and the facts it records |
//! | `call.rs` | calls between flows: [`CallRequest`], [`FlowCall`], [`FlowResolver`] |
//! | `compiled.rs` | [`CompiledFlow`], [`CompiledStep`], [`StepJump`] |
//! | `context.rs`, `send.rs` | [`StepContext`], [`Reply`]; the journaled call path, [`CallJournal`] |
//! | `env.rs` | [`RunEnv`], [`Message`], [`RunScope`] (placeholders at run time), [`contact_id`] |
//! | `traits.rs` | [`Step`], [`StepType`] |
//! | `registry.rs` | [`Registry`] |

mod build;
mod call;
mod compiled;
mod context;
mod env;
mod outcome;
mod registry;
mod send;
pub(crate) use send::JOURNAL_UNAVAILABLE;
mod traits;

pub use build::BuildContext;
pub(crate) use build::{Facts, resolve_target};
pub use call::{CallRequest, FixedFlows, FlowCall, FlowResolver, MAX_CALL_DEPTH};
pub use compiled::{CompiledFlow, CompiledStep, StepJump};
pub use context::{
    Choice, MAX_CHOICE_PAYLOAD_BYTES, MAX_CHOICE_TITLE_CHARS, MAX_CHOICES, Reply, ReplySink, StepContext,
};
pub use env::{Message, RunEnv, RunScope, contact_id};
pub use outcome::{Behavior, CaughtFailure, Jump, Outcome, Repeat, StepFailure};
pub use registry::Registry;
pub use send::CallJournal;
pub use traits::{Step, StepType};
