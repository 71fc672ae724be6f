//! Running one test case: a conversation service of its own over an in-memory store, the
//! flows as a server would load them, answers from the case's recording (or the network, when
//! recording), and what came of each turn.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use secrecy::SecretString;
use serde_json::{Map, Value};

use super::file::{TestCase, TestFile};
use crate::conversation::{
    AnswerStatus, ConversationId, ConversationOptions, Conversations, Inbound, MemoryConversationStore, ReplyText,
    RunObserver, Trigger,
};
use crate::flow_set::LoadedFlow;
use crate::http::recording::{Recorder, Recording, Replay};
use crate::http::{NOT_RECORDED, Tape};
use crate::secrets::{SecretSource, known};
use crate::{Engine, RunError, RunResult};

/// How long one turn may take before the test gives up on it (a backstop: a replayed call
/// answers at once).
pub const TURN_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a case's API answers come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// From the case's recording; nothing reaches the network.
    Replay,
    /// From the real APIs, with the engine's own tokens and secrets; the calls are recorded.
    Record,
}

/// What one test case did.
#[derive(Debug)]
pub struct Observed {
    /// Each turn's answer: its replies, or why there is none.
    pub turns: Vec<TurnOutcome>,
    /// How the last run ended (`None` when no message was answered).
    pub status: Option<AnswerStatus>,
    /// Its failure.
    pub error: Option<RunError>,
    /// Its variables at the end (secrets masked).
    pub variables: Map<String, Value>,
    /// Recorded exchanges no call used, as (index, `METHOD URL`) (replay).
    pub unused: Vec<(usize, String)>,
    /// Calls the recording had no answer for, as (step, what to add), even those an
    /// `on_error` caught (replay).
    pub not_recorded: Vec<(String, String)>,
    /// Every step failure of the runs, caught or not, as (flow, step, code, message).
    pub failures: Vec<StepFailed>,
    /// What was recorded (record).
    pub recorded: Option<Recording>,
    /// How long the case took.
    pub elapsed: Duration,
}

/// A step that failed in a run, caught or not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepFailed {
    /// The flow it is in.
    pub flow: String,
    /// The step.
    pub step: String,
    /// The error code.
    pub code: String,
    /// What went wrong (secrets masked).
    pub message: String,
}

/// What came of one turn.
#[derive(Debug)]
pub enum TurnOutcome {
    /// The message was answered.
    Answered {
        /// The flow that answered (`None` when none started).
        flow: Option<String>,
        /// How the run ended or paused.
        status: AnswerStatus,
        /// The replies, in order.
        replies: Vec<ReplyText>,
    },
    /// The service could not take or answer the message; the words say why.
    NotAnswered(String),
}

/// Secrets for a replayed case: the file's values, else a stand-in per name. Both are
/// registered with the masker, so they show as `[redacted]` like the values a recording masked.
struct TestSecrets {
    given: BTreeMap<String, String>,
}

impl SecretSource for TestSecrets {
    fn get(&self, name: &str) -> Option<SecretString> {
        let value = self.given.get(name).cloned().unwrap_or_else(|| format!("stand-in-secret-{name}"));
        let value = SecretString::from(value);
        known::remember(&value);
        Some(value)
    }
}

/// How cases run, besides their file.
#[derive(Clone, Debug, Default)]
pub struct CaseOptions {
    /// The reply a contact gets when a run fails and nothing caught it (as `tern serve
    /// --error-reply`); `None` for none.
    pub error_reply: Option<String>,
}

/// Runs test case `index` of `file` against `flows`, with `engine`'s steps and limits (and its
/// tokens and secrets when recording).
pub async fn run_case(
    engine: &Engine,
    flows: &[LoadedFlow],
    file: &TestFile,
    index: usize,
    mode: Mode,
    options: &CaseOptions,
) -> Observed {
    let started = Instant::now();
    let case = &file.tests[index];
    let mut engine = engine.clone();
    let (replay, recorder) = match mode {
        Mode::Replay => {
            let replay = Arc::new(Replay::new(case.http.clone(), &file.integrations));
            engine.outbound = engine.outbound.clone().with_tape(Tape::Replay(replay.clone()));
            engine.secrets = Arc::new(TestSecrets { given: file.secrets.clone() });
            (Some(replay), None)
        }
        Mode::Record => {
            let recorder = Arc::new(Recorder::default());
            engine.outbound = engine.outbound.clone().with_tape(Tape::Record(recorder.clone()));
            (None, Some(recorder))
        }
    };
    let results = Arc::new(Mutex::new(Vec::<(crate::RunId, Map<String, Value>)>::new()));
    let not_recorded = Arc::new(Mutex::new(Vec::<(String, String)>::new()));
    let failures = Arc::new(Mutex::new(Vec::<StepFailed>::new()));
    let maskers = Arc::new(Mutex::new(Vec::<crate::secrets::Masker>::new()));
    let observer: RunObserver = {
        let results = results.clone();
        let not_recorded = not_recorded.clone();
        let failures = failures.clone();
        let maskers = maskers.clone();
        Arc::new(move |r: &RunResult| {
            maskers.lock().unwrap_or_else(PoisonError::into_inner).push(r.masker.clone());
            let failed = r.trace.iter().filter_map(|t| {
                let e = t.error.as_ref()?;
                let flow = t.detail.get("in_flow").and_then(Value::as_str).unwrap_or(r.flow_id.as_str());
                Some(StepFailed {
                    flow: flow.to_string(),
                    step: t.step.to_string(),
                    code: e.code.clone(),
                    message: e.message.clone(),
                })
            });
            failures.lock().unwrap_or_else(PoisonError::into_inner).extend(failed);
            let missing = r.trace.iter().filter_map(|t| {
                let e = t.error.as_ref().filter(|e| e.code == NOT_RECORDED)?;
                Some((t.step.to_string(), e.message.clone()))
            });
            not_recorded.lock().unwrap_or_else(PoisonError::into_inner).extend(missing);
            let mut variables = Value::Object(r.variables.clone());
            r.masker.mask_value(&mut variables);
            let Value::Object(variables) = variables else { return };
            results.lock().unwrap_or_else(PoisonError::into_inner).push((r.run_id.clone(), variables));
        })
    };
    let service = Conversations::start(
        engine,
        Arc::new(MemoryConversationStore::default()),
        ConversationOptions { error_reply: options.error_reply.clone(), ..ConversationOptions::default() },
        Some(observer),
    );
    service.set_flows(flows.to_vec());
    let (turns, last) = match &case.start {
        Some(id) if !flows.iter().any(|f| f.flow.id.as_str() == id) => {
            let ids = flows.iter().map(|f| f.flow.id.as_str());
            let hint =
                crate::diagnostics::nearest(id, ids).map(|n| format!("; did you mean `{n}`?")).unwrap_or_default();
            let why = format!("`start` names flow `{id}`, which is not among the flows under test{hint}");
            (case.conversation.iter().map(|_| TurnOutcome::NotAnswered(why.clone())).collect(), None)
        }
        _ => converse(&service, case, index).await,
    };
    service.shutdown(Duration::from_secs(5)).await;
    let (status, error, run_id) = match last {
        Some((status, error, run_id)) => (Some(status), error, run_id),
        None => (None, None, None),
    };
    let variables = results
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .rev()
        .find(|(id, _)| Some(id) == run_id.as_ref())
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    Observed {
        turns,
        status,
        error,
        variables,
        unused: replay.map(|r| r.unused()).unwrap_or_default(),
        not_recorded: std::mem::take(&mut *not_recorded.lock().unwrap_or_else(PoisonError::into_inner)),
        failures: std::mem::take(&mut *failures.lock().unwrap_or_else(PoisonError::into_inner)),
        recorded: recorder.map(|r| {
            // The runs' own secrets too (the process-wide masker skips values under 8
            // characters; a run's masker knows its secrets from 4).
            let mut recording = r.take();
            let maskers = maskers.lock().unwrap_or_else(PoisonError::into_inner);
            if let Ok(mut v) = serde_json::to_value(&recording.exchanges) {
                maskers.iter().for_each(|m| m.mask_value(&mut v));
                if let Ok(masked) = serde_json::from_value(v) {
                    recording.exchanges = masked;
                }
            }
            recording
        }),
        elapsed: started.elapsed(),
    }
}

type Last = Option<(AnswerStatus, Option<RunError>, Option<crate::RunId>)>;

/// Sends each turn's message and waits for its answer.
async fn converse(service: &Conversations, case: &TestCase, index: usize) -> (Vec<TurnOutcome>, Last) {
    let conversation = match ConversationId::new(format!("test-{index}")) {
        Ok(c) => c,
        Err(e) => return (vec![TurnOutcome::NotAnswered(e.to_string())], None),
    };
    let contact =
        case.contact.clone().unwrap_or_else(|| Map::from_iter([("id".to_string(), Value::from("test-contact"))]));
    let mut turns = Vec::new();
    let mut last = None;
    for (t, turn) in case.conversation.iter().enumerate() {
        let mut inbound =
            Inbound { contact: contact.clone(), ..Inbound::message(conversation.clone(), None, &turn.contact) };
        if t == 0
            && let Some(flow_id) = &case.start
        {
            inbound.trigger = Trigger::Start { flow_id: flow_id.clone(), event: case.event.clone() };
            inbound.variables = case.variables.clone();
        }
        let answer = match service.submit(inbound, None) {
            Ok(mut ticket) => ticket.wait_for(TURN_TIMEOUT).await,
            Err(e) => Some(Err(e)),
        };
        match answer {
            Some(Ok(a)) => {
                last = Some((a.status, a.error.clone(), a.run_id.clone()));
                turns.push(TurnOutcome::Answered { flow: a.flow_id.clone(), status: a.status, replies: a.replies });
            }
            Some(Err(e)) => turns.push(TurnOutcome::NotAnswered(e.to_string())),
            None => turns.push(TurnOutcome::NotAnswered(format!(
                "no answer within {} s; a step may be waiting on something the test does not give",
                TURN_TIMEOUT.as_secs()
            ))),
        }
    }
    (turns, last)
}
