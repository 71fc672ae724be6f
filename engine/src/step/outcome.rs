//! What a step tells the executor: where to go next ([`Outcome`], [`Jump`]), what validation must
//! know about it ([`Behavior`]) and why it failed ([`StepFailure`]).

use serde_json::Value;

use crate::http::HttpError;
use crate::ids::{StepId, VarName};
use crate::template::RenderError;

/// Where the executor goes after a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Jump {
    /// The step at this index in the flow.
    Step(usize),
    /// The end of the run.
    End,
}

/// What a step asks the executor to do next.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Continue with the step's `next` (or the following step).
    Next,
    /// Jump somewhere else (a branch taken, an outcome label).
    Goto(Jump),
    /// Pause the run until the next message of the conversation; the value is given back to
    /// [`Step::resume`](super::Step::resume).
    Pause(Value),
    /// End the run.
    End,
    /// Run another flow of the set (`call_flow`); when it ends, its outputs are set and the
    /// run goes on with this step's `next`. The executor keeps the caller in a frame that a
    /// pause keeps too.
    Call(Box<super::CallRequest>),
}

/// Static facts about a step that validation needs.
#[derive(Clone, Copy, Debug, Default)]
pub struct Behavior {
    /// The step can pause the run (a cycle through it is not a busy loop).
    pub pauses: bool,
    /// The step never continues to a following step (`end`).
    pub terminal: bool,
    /// The step runs a body of steps a bounded number of times (`for_each`): the run comes
    /// back to it after each pass, so a cycle through it is not a busy loop.
    pub repeats: Option<Repeat>,
}

/// How a repeating step ([`Behavior::repeats`]) runs its body.
///
/// The body is every step on a way from `body` back to the repeating step (the compiler
/// finds them and refuses a body that never comes back). The repeating step keeps its
/// progress with [`StepContext::state`](super::StepContext::state), which a paused run keeps,
/// so an iteration may pause (an `ask` per item) and resume after a restart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Repeat {
    /// The first step of each pass.
    pub body: usize,
    /// Whether a failing body step without its own `on_error` comes back to the repeating
    /// step (which reads the failure with [`StepContext::caught_failure`](super::StepContext::caught_failure))
    /// instead of taking the flow's `on_error` or failing the run.
    pub catches_failures: bool,
}

/// A body step's failure, as the repeating step that caught it sees it
/// ([`StepContext::caught_failure`](super::StepContext::caught_failure)); secrets masked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaughtFailure {
    /// The step that failed.
    pub step: StepId,
    /// Its stable code (`http-status`, `mapping`, …).
    pub code: String,
    /// What went wrong.
    pub message: String,
}

/// Why a step failed. The executor adds the step id; `on_error` catches every kind.
#[derive(Debug, thiserror::Error)]
pub enum StepFailure {
    /// A template could not be rendered.
    #[error(transparent)]
    Render(#[from] RenderError),
    /// The HTTP exchange failed.
    #[error(transparent)]
    Http(#[from] HttpError),
    /// The API answered with a status the step does not accept.
    #[error("{url} answered {status}{excerpt}")]
    Status {
        /// The status code.
        status: u16,
        /// The URL (query removed).
        url: String,
        /// `: <start of body>` or empty.
        excerpt: String,
    },
    /// Response fields could not be mapped into variables (every missing one is listed).
    #[error("{}", missing.iter().map(|(v, r)| format!("variable `{v}`: {r}")).collect::<Vec<_>>().join("; "))]
    Mapping {
        /// Each variable with what is missing and what was found instead.
        missing: Vec<(VarName, String)>,
    },
    /// Anything else, with a stable code.
    #[error("{message}")]
    Other {
        /// A stable, kebab-case code.
        code: &'static str,
        /// What went wrong and what to do.
        message: String,
    },
}

impl StepFailure {
    /// A stable, kebab-case code for the failure.
    pub fn code(&self) -> &'static str {
        match self {
            StepFailure::Render(_) => "template",
            StepFailure::Http(e) => e.code(),
            StepFailure::Status { .. } => "http-status",
            StepFailure::Mapping { .. } => "mapping",
            StepFailure::Other { code, .. } => code,
        }
    }
}
