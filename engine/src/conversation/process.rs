//! One message, from the queue to the commit: dedupe, resume-or-trigger, the run, the failure
//! handling (error flow, default error reply), and what is written for it.

use std::sync::Arc;

use serde_json::Value;

use super::error::ConversationError;
use super::inner::Inner;
use super::queue::{Job, Key};
use super::store::{Completion, PausedChange, WriteOp};
use super::types::{
    Answer, AnswerStatus, Answered, ErrorFlowRun, Inbound, PAUSED_FORMAT, PausedRun, ReplyText, RunSummary, Segment,
    Trigger,
};
use crate::fallback::ErrorHandling;
use crate::flow_set::LoadedFlow;
use crate::run::{RunInput, RunResult, RunStatus};
use crate::step::{Message, ReplySink};
use crate::storage::StoreError;

/// A finished activation with what history needs to know about it.
struct Activation {
    result: RunResult,
    flow_hash: String,
    /// When the run started (an earlier activation's time for a resumed run).
    run_started_ms: i64,
    /// When this activation started.
    started_ms: i64,
    finished_ms: i64,
}

/// Handles one message with the conversation's worker: everything between the queue and the
/// commit.
///
/// `fence` is the conversation lock's fencing token ([`ConversationLock::fence`](super::ConversationLock::fence)),
/// carried to the commit. The job is shared with the worker, which hands it in again when the
/// lock was lost before the commit (`LockLost`).
pub(super) async fn process(
    inner: Arc<Inner>,
    job: Arc<Job>,
    fence: Option<i64>,
) -> Result<Answered, ConversationError> {
    let (inbound, sink, recovered) = (&job.inbound, &job.sink, job.recovered);
    let conversation = inbound.conversation.clone();
    let message_id = inbound.message_id.clone();
    let key = (conversation.clone(), message_id.clone());
    let store_err = |e: StoreError| ConversationError::store(&conversation, &e);
    // A generated id can only come back as a recovered message, or, on a shared store, as one
    // another instance took over (it may have answered it already).
    if (!message_id.is_generated() || recovered || inner.shared)
        && let Some(remembered) = inner.store.answer(&conversation, &message_id).await.map_err(store_err)?
    {
        if recovered {
            let _ = inner.writer.write(WriteOp::Forget(conversation.clone(), message_id.clone()), true).await;
        } else if !message_id.is_timer() && remembered.digest.as_ref().is_some_and(|d| *d != inbound.digest()) {
            // (A timer's firing is the same firing whatever contact it was given.)
            // Another message under an answered id: refused, never answered with another's reply.
            return Err(ConversationError::MessageIdReused { message_id: message_id.to_string() });
        }
        return Ok(Answered::new(remembered.answer));
    }
    let stored = if inner.paused.may_be_paused(&conversation) {
        inner.store.paused(&conversation).await.map_err(store_err)?
    } else {
        None
    };
    let was_paused = stored.is_some();
    let now_s = inner.now_ms() / 1000;
    let live = stored.filter(|p| p.expires_at > now_s);
    // A timer resumes the paused run only while it still waits for that timer. Otherwise the
    // contact answered first (the paused run was replaced or ended): the timer is spent and
    // the conversation's state is left as it is.
    if let Trigger::Timer { due_at_ms } = inbound.trigger
        && live.as_ref().is_none_or(|p| p.snapshot.wake_at_ms != Some(due_at_ms))
    {
        let answer = Answer::without_run(AnswerStatus::NoPausedRun, &message_id);
        return commit(&inner, inbound, answer, PausedChange::Keep, Vec::new(), recovered, fence).await;
    }
    // A timer brings no contact: its run sees (and its history names) the contact as the last
    // message gave it.
    let with_contact;
    let inbound = match (&inbound.trigger, &live) {
        (Trigger::Timer { .. }, Some(p)) if p.snapshot.contact.is_some() => {
            with_contact = Inbound { contact: p.snapshot.contact.clone().unwrap_or_default(), ..(**inbound).clone() };
            &with_contact
        }
        _ => inbound,
    };
    let started_ms = inner.now_ms();
    let engine = &inner.engine;
    let (result, flow_hash, run_started_ms) = match (&inbound.trigger, live) {
        (Trigger::Start { flow_id, event }, _) => {
            let flows = inner.flows.current();
            let loaded = flows
                .by_id(flow_id)
                .cloned()
                .ok_or_else(|| ConversationError::UnknownFlow { flow_id: flow_id.clone() })?;
            let input = run_input(&inner, inbound, recovered, event.clone(), "");
            let result = engine.start(&loaded.flow, input, inbound.variables.clone(), sink.as_ref()).await;
            (result, loaded.hash.clone(), started_ms)
        }
        (Trigger::Message | Trigger::Resume { .. } | Trigger::Timer { .. }, Some(paused)) => {
            let version = inner.flows.version(&paused.flow_hash, &*inner.store, &inner.engine.registry);
            let flow = version.await.map_err(store_err)?.ok_or_else(|| ConversationError::Paused {
                conversation: conversation.to_string(),
                reason: format!("its flow version {} is no longer stored", paused.flow_hash),
            })?;
            let event = match &inbound.trigger {
                Trigger::Resume { event } => Some(event.clone()),
                _ => None,
            };
            let input = run_input(&inner, inbound, recovered, event, "");
            let result = engine.resume(&flow, paused.snapshot, input, sink.as_ref()).await;
            (result, paused.flow_hash, paused.started_at_ms)
        }
        (Trigger::Resume { .. } | Trigger::Timer { .. }, None) => {
            let answer = Answer::without_run(AnswerStatus::NoPausedRun, &message_id);
            return finish_without_run(&inner, inbound, answer, was_paused, recovered, fence).await;
        }
        (Trigger::Message, None) => {
            let flows = inner.flows.current();
            let Some(loaded) = flows.for_message(&inbound.text) else {
                let answer = Answer::without_run(AnswerStatus::NoFlow, &message_id);
                return finish_without_run(&inner, inbound, answer, was_paused, recovered, fence).await;
            };
            let input = run_input(&inner, inbound, recovered, None, "");
            let result = engine.start(&loaded.flow, input, inbound.variables.clone(), sink.as_ref()).await;
            (result, loaded.hash.clone(), started_ms)
        }
    };
    if let Some(e) = &result.error
        && e.code == crate::step::JOURNAL_UNAVAILABLE
    {
        // Nothing was sent, and the store is failing: the message fails (it can be sent
        // again), rather than a failed run committed and answered.
        tracing::error!(conversation = %key.0, step = e.step.as_ref().map_or("", |s| s.as_str()), "a call could not be recorded before it was sent; the message is not answered");
        return Err(ConversationError::Store { conversation: conversation.to_string() });
    }
    if let Some(observe) = &inner.observer {
        observe(&result);
    }
    let mut main = Activation { result, flow_hash, run_started_ms, started_ms, finished_ms: inner.now_ms() };
    let error_run = if main.result.status == RunStatus::Failed {
        if let Some(e) = &main.result.error {
            tracing::warn!(
                flow = %main.result.flow_id,
                run = %main.result.run_id,
                conversation = %key.0,
                step = e.step.as_ref().map_or("", |s| s.as_str()),
                code = %e.code,
                error = %e.message,
                "run failed"
            );
        }
        handle_failure(&inner, &mut main.result, inbound, recovered, sink.as_ref()).await
    } else {
        None
    };

    let mut replies: Vec<ReplyText> = main.result.replies.iter().map(ReplyText::from).collect();
    let error_flow = error_run.as_ref().map(|e| {
        replies.extend(e.result.replies.iter().map(ReplyText::from));
        ErrorFlowRun {
            run_id: e.result.run_id.clone(),
            flow_id: e.result.flow_id.to_string(),
            status: e.result.status.into(),
            error: e.result.error.clone(),
        }
    });
    let answer = Answer {
        run_id: Some(main.result.run_id.clone()),
        flow_id: Some(main.result.flow_id.to_string()),
        status: main.result.status.into(),
        replies,
        error: main.result.error.clone(),
        message_id: Some(message_id.to_string()),
        error_flow,
    };
    // Only one of the two can be paused: the flow's run (then there is no error run), or the
    // error flow's run that the flow's failure started.
    let ttl = i64::try_from(inner.options.pause_ttl.as_secs()).unwrap_or(i64::MAX);
    let mut paused = PausedChange::Keep;
    let mut history = Vec::with_capacity(2);
    for mut activation in std::iter::once(main).chain(error_run) {
        if let Some(change) = activation.paused_change(now_s, ttl) {
            paused = change;
        }
        history.push(activation.into_history(inbound));
    }
    if matches!(paused, PausedChange::Keep) && was_paused {
        paused = PausedChange::Clear;
    }
    commit(&inner, inbound, answer, paused, history, recovered, fence).await
}

impl Activation {
    /// The paused run to store, when this activation paused. It expires `ttl` seconds after
    /// `now_s`, or after its timer is due when that is later (a timer fires late rather than
    /// never, within the same `ttl`).
    fn paused_change(&mut self, now_s: i64, ttl: i64) -> Option<PausedChange> {
        if self.result.status != RunStatus::Paused {
            return None;
        }
        let snapshot = self.result.snapshot.take()?;
        let from = snapshot.wake_at_ms.map_or(now_s, |at| at.div_euclid(1000).max(now_s));
        let expires_at = from.saturating_add(ttl);
        Some(PausedChange::Set(Box::new(PausedRun {
            format: PAUSED_FORMAT,
            flow_hash: self.flow_hash.clone(),
            snapshot,
            started_at_ms: self.run_started_ms,
            expires_at,
        })))
    }

    /// The run's summary and this activation's segment, masked with the run's secrets.
    fn into_history(self, inbound: &Inbound) -> (RunSummary, Segment) {
        let Self { result, flow_hash, run_started_ms, started_ms, finished_ms } = self;
        let status = result.status;
        let finished = status != RunStatus::Paused;
        let summary = RunSummary {
            run_id: result.run_id.clone(),
            conversation_id: inbound.conversation.to_string(),
            contact_id: inbound.contact_id(),
            flow_id: result.flow_id.to_string(),
            flow_version: flow_hash,
            status,
            started_at_ms: run_started_ms,
            updated_at_ms: finished_ms,
            finished_at_ms: finished.then_some(finished_ms),
            duration_ms: finished_ms - run_started_ms,
            // The store adds this activation's facts to those of the run's earlier ones
            // ([`RunSummary::with_segment`]).
            work_ms: None,
            recovered: None,
            answered_last: None,
        };
        let masker = &result.masker;
        let segment = Segment {
            message_id: inbound.message_id.to_string(),
            message: masker.mask(&inbound.text),
            event: match &inbound.trigger {
                Trigger::Resume { event } => Some(masked(masker, event)),
                Trigger::Start { event, .. } => event.as_ref().map(|e| masked(masker, e)),
                Trigger::Timer { due_at_ms } => Some(serde_json::json!({"timer": {
                    "due_at_ms": due_at_ms,
                    "late_ms": crate::timing::Wake { due_at_ms: *due_at_ms, fired_at_ms: started_ms }.late_ms(),
                }})),
                Trigger::Message => None,
            },
            started_at_ms: started_ms,
            finished_at_ms: finished_ms,
            status,
            replies: result.replies.iter().map(ReplyText::from).collect(),
            trace: result.trace,
            variables: result.variables,
            error: result.error,
        };
        (summary, segment)
    }
}

/// What a run of this message starts or resumes with. `scope` tells the journal keys of the
/// error flow's run apart from those of the run that failed (same message, other steps).
fn run_input(inner: &Inner, inbound: &Inbound, recovered: bool, event: Option<Value>, scope: &str) -> RunInput {
    let message_id = &inbound.message_id;
    let now_ms = inner.now_ms();
    RunInput {
        conversation_id: inbound.conversation.to_string(),
        contact: Value::Object(inbound.contact.clone()),
        message: Message {
            text: inbound.text.clone(),
            id: (!message_id.is_generated() && !message_id.is_timer()).then(|| message_id.to_string()),
            metadata: inbound.metadata.clone(),
        },
        event,
        // The journal protects messages that can come back with the same id: the channel's
        // own ids (a re-send carries it) and recovered messages. A message without an id gets
        // a new one if it is sent again, so journaling it would cost two synchronous writes
        // per call and protect nothing (README "Crash-safe calls").
        journal: (!message_id.is_generated() || recovered).then(|| crate::effects::JournalScope {
            journal: inner.store.clone(),
            conversation: inbound.conversation.to_string(),
            message_id: format!("{message_id}{scope}"),
        }),
        flows: Some(Arc::new(super::flows::ServiceFlows {
            flows: inner.flows.clone(),
            store: inner.store.clone(),
            registry: inner.engine.registry.clone(),
        })),
        now_ms: Some(now_ms),
        woken: match inbound.trigger {
            Trigger::Timer { due_at_ms } => Some(crate::timing::Wake { due_at_ms, fired_at_ms: now_ms }),
            _ => None,
        },
    }
}

/// A run failed and nothing in its flow caught it: start the error flow and/or send the
/// default error reply (appended to `failed`'s replies). Returns the error flow's activation.
async fn handle_failure(
    inner: &Inner,
    failed: &mut RunResult,
    inbound: &Inbound,
    recovered: bool,
    sink: Option<&ReplySink>,
) -> Option<Activation> {
    let error_flow: Option<LoadedFlow> = inner.flows.current().error_flow().cloned();
    if error_flow.is_none() && inner.options.error_reply.is_none() {
        return None;
    }
    let handling =
        match ErrorHandling::new(inner.options.error_reply.clone(), error_flow.as_ref().map(|f| f.flow.clone())) {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(error = %e, "the error flow cannot be used");
                return None;
            }
        };
    let started_ms = inner.now_ms();
    let input = run_input(inner, inbound, recovered, None, "#error");
    let handled = handling.handle(&inner.engine, failed, input, sink).await;
    let result = handled.error_run?;
    if let Some(observe) = &inner.observer {
        observe(&result);
    }
    Some(Activation {
        result,
        flow_hash: error_flow.map(|f| f.hash).unwrap_or_default(),
        run_started_ms: started_ms,
        started_ms,
        finished_ms: inner.now_ms(),
    })
}

fn masked(masker: &crate::secrets::Masker, value: &Value) -> Value {
    let mut v = value.clone();
    masker.mask_value(&mut v);
    v
}

async fn finish_without_run(
    inner: &Arc<Inner>,
    inbound: &Inbound,
    answer: Answer,
    was_paused: bool,
    recovered: bool,
    fence: Option<i64>,
) -> Result<Answered, ConversationError> {
    // An expired paused run is discarded with this message.
    let paused = if was_paused { PausedChange::Clear } else { PausedChange::Keep };
    commit(inner, inbound, answer, paused, Vec::new(), recovered, fence).await
}

async fn commit(
    inner: &Arc<Inner>,
    inbound: &Inbound,
    answer: Answer,
    paused: PausedChange,
    history: Vec<(RunSummary, Segment)>,
    recovered: bool,
    fence: Option<i64>,
) -> Result<Answered, ConversationError> {
    let (conversation, message_id) = (&inbound.conversation, &inbound.message_id);
    let key: Key = (conversation.clone(), message_id.clone());
    // A caller that stopped waiting had the message accepted (stored) and was given its id.
    let accepted = inner.queue.finishing(&key) || recovered;
    let remember_answer = accepted || !message_id.is_generated();
    // Serialized once: the stored answer, the webhook delivery and the caller's answer.
    let answered = Answered::new(answer);
    let channel = conversation.channel_ref_and_id().0;
    // A web chat's transcript shows the visitor's message even when no flow answered it.
    let route = reply_route(inner, &channel).await;
    let deliver = route == ReplyRoute::Outbox && answered.answer.run_id.is_some();
    let outbox = deliver.then(|| webhook_body(&answered.json, conversation));
    let transcript = if route == ReplyRoute::Transcript {
        crate::web_chat::transcript::entries_of(inbound, &answered.answer, inner.now_ms())
    } else {
        Vec::new()
    };
    // The page follows the transcript: it is told once the entries are committed.
    let notify_page = !transcript.is_empty();
    // While the store refuses writes, nothing is answered before it is stored (writer.rs); a
    // fenced commit (the conversation lock was lost) is known only once it is tried.
    let must_wait = remember_answer
        || !matches!(paused, PausedChange::Keep)
        || outbox.is_some()
        || notify_page
        || fence.is_some()
        || inner.writer.failing();
    let cleared = matches!(paused, PausedChange::Clear);
    if let PausedChange::Set(p) = &paused {
        inner.paused.add(conversation, p.expires_at);
    }
    let has_outbox = outbox.is_some();
    let done = Completion {
        channel,
        conversation: conversation.clone(),
        message_id: message_id.clone(),
        remember_answer,
        accepted,
        answer: answered.clone(),
        digest: Some(inbound.digest()),
        paused,
        history,
        outbox,
        fence,
        transcript,
    };
    inner.writer.write(WriteOp::Complete(Box::new(done)), must_wait).await.map_err(|e| {
        if e.fenced {
            inner.queue.unfinished(&key);
            return ConversationError::LockLost { conversation: conversation.to_string() };
        }
        tracing::error!(conversation = %conversation, error = %e, "could not commit a message's result");
        ConversationError::Store { conversation: conversation.to_string() }
    })?;
    if cleared {
        inner.paused.remove(conversation);
    }
    if has_outbox {
        inner.outbox_wake.notify_one();
    }
    if notify_page {
        inner.transcripts.written(conversation);
    }
    Ok(answered)
}

/// The webhook delivery of an answer: its JSON object (`answer_json`) with `conversation_id`
/// (the conversation as its channel knows it, not the stored, channel-scoped id) and `channel`
/// added as the last fields.
fn webhook_body(answer_json: &[u8], conversation: &super::types::ConversationId) -> Vec<u8> {
    let (channel, id) = conversation.channel_and_id();
    let text = |s: &str| serde_json::to_vec(s).unwrap_or_else(|_| b"\"\"".to_vec());
    let (id, channel) = (text(id), text(channel.as_str()));
    let open = answer_json.strip_suffix(b"}").unwrap_or(b"{");
    let mut body = Vec::with_capacity(answer_json.len() + id.len() + channel.len() + 40);
    body.extend_from_slice(open);
    if open.len() > 1 {
        body.push(b',');
    }
    body.extend_from_slice(b"\"conversation_id\":");
    body.extend_from_slice(&id);
    body.extend_from_slice(b",\"channel\":");
    body.extend_from_slice(&channel);
    body.push(b'}');
    body
}

/// Where a finished message's replies go besides the caller's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReplyRoute {
    /// Nowhere else (a channel without a webhook URL, a channel that is gone).
    Answer,
    /// A delivery in the outbox: the channel has a webhook URL or is a messaging platform's,
    /// whose API takes them.
    Outbox,
    /// The conversation's transcript: a web chat, whose page reads it.
    Transcript,
}

/// Where the replies of `channel` go (when it is still the same incarnation). When the channel
/// cannot be read, the delivery is stored in the outbox anyway (nothing is lost): the outbox
/// looks the channel up again when it sends it.
async fn reply_route(inner: &Inner, channel: &crate::channel::ChannelRef) -> ReplyRoute {
    match inner.options.channels.channel(&channel.name).await {
        Ok(Some(c)) if channel.is(&c) && c.web.is_some() => ReplyRoute::Transcript,
        Ok(Some(c)) if channel.is(&c) && (c.delivery.webhook_url.is_some() || c.platform.is_some()) => {
            ReplyRoute::Outbox
        }
        Ok(_) => ReplyRoute::Answer,
        Err(e) => {
            tracing::warn!(channel = %channel, error = %e, "could not read a channel; its delivery is stored and sent when the channel can be read");
            ReplyRoute::Outbox
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::conversation::types::{ConversationId, MessageId};

    /// The delivery is the answer with the conversation's id (as its channel knows it) and the
    /// channel, as if the fields had been added to the answer's JSON object.
    #[test]
    fn the_webhook_body_is_the_answer_with_the_conversation_id_and_channel() {
        let answer = Answer::without_run(AnswerStatus::NoFlow, &MessageId::new("m\"1").unwrap());
        let answered = Answered::new(answer.clone());
        let c = ConversationId::new("c \"quoted\" é").unwrap();
        let body: serde_json::Value = serde_json::from_slice(&webhook_body(&answered.json, &c)).unwrap();
        let mut expected = serde_json::to_value(&answer).unwrap();
        expected.as_object_mut().unwrap().insert("conversation_id".into(), c.as_str().into());
        expected.as_object_mut().unwrap().insert("channel".into(), "default".into());
        assert_eq!(body, expected);
        assert_eq!(body.as_object().unwrap().keys().next_back().unwrap(), "channel");
        let site = ConversationId::of_channel(&crate::channel::ChannelName::new("site").unwrap(), "v-1").unwrap();
        let empty: serde_json::Value = serde_json::from_slice(&webhook_body(b"{}", &site)).unwrap();
        assert_eq!(empty, serde_json::json!({"conversation_id": "v-1", "channel": "site"}));
    }
}
