//! Paused runs' timers through the conversation service, on a manual clock: `ask` reminders
//! and timeout, an answer cancelling the timer, `wait`, a restart in between (SQLite), late
//! firing after downtime (the lateness in history), and two instances on one PostgreSQL
//! database firing each timer once.

use std::sync::Arc;
use std::time::Duration;

use tern_engine::clock::{Clock, ManualClock};
use tern_engine::conversation::{
    Answer, AnswerStatus, ConversationOptions, ConversationStore, Conversations, MemoryConversationStore,
};

use super::{engine, flow, msg};

const REMIND: &str = r#"{"version": 1, "id": "remind", "trigger": {"type": "message", "match": {"keywords": ["order"]}},
  "steps": [
    {"id": "number", "type": "ask", "text": "Your order number?", "save_as": "order",
     "choices": [{"title": "I don't have one"}],
     "reminders": [{"after": "1m", "text": "Still there?"}, {"after": "5m", "text": "Last call for {{contact.id}}"}],
     "timeout": "10m", "on_timeout": "bye"},
    {"id": "thanks", "type": "send_message", "text": "Looking up {{order}}", "next": "end"},
    {"id": "bye", "type": "send_message", "text": "No answer, closing."}
  ]}"#;

const WAIT: &str = r#"{"version": 1, "id": "later", "trigger": {"type": "message", "match": {"keywords": ["later"]}},
  "steps": [
    {"id": "first", "type": "send_message", "text": "See you in an hour"},
    {"id": "pause", "type": "wait", "for": "1h"},
    {"id": "again", "type": "send_message", "text": "An hour has passed"}
  ]}"#;

fn options(clock: &Arc<ManualClock>) -> ConversationOptions {
    ConversationOptions { clock: clock.clone(), timer_poll: None, ..ConversationOptions::default() }
}

fn start(store: Arc<dyn ConversationStore>, clock: &Arc<ManualClock>) -> Conversations {
    let engine = engine();
    let flows = vec![flow(&engine, REMIND), flow(&engine, WAIT)];
    let s = Conversations::start(engine, store, options(clock), None);
    s.set_flows(flows);
    s
}

/// Fires what is due and waits for each timer's answer.
async fn fire(s: &Conversations) -> Vec<Answer> {
    let mut answers = Vec::new();
    for mut t in s.fire_due_timers().await.unwrap() {
        answers.push(t.wait().await.unwrap());
    }
    answers
}

fn texts(a: &Answer) -> Vec<&str> {
    a.replies.iter().map(|r| r.text.as_str()).collect()
}

/// A SQLite store in `dir` on `clock` (the file is opened again by a restart).
async fn sqlite(dir: &tempfile::TempDir, clock: &Arc<ManualClock>) -> Arc<dyn ConversationStore> {
    use tern_store::crypto::{Keyring, MasterKey};
    let (key, _) = MasterKey::generate();
    let store = tern_store::SqliteStore::open(&dir.path().join("timers.db"), Keyring::new(key)).await.unwrap();
    Arc::new(store.with_clock(clock.clone()))
}

async fn stores(dir: &tempfile::TempDir, clock: &Arc<ManualClock>) -> Vec<Arc<dyn ConversationStore>> {
    vec![Arc::new(MemoryConversationStore::with_clock(clock.clone())), sqlite(dir, clock).await]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_question_sends_its_reminders_then_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::at_system_time());
    for store in stores(&dir, &clock).await {
        let s = start(store, &clock);
        let mut first = msg("c", Some("m1"), "order");
        first.contact.insert("id".into(), "ada".into());
        let asked = s.submit(first, None).unwrap().wait().await.unwrap();
        assert_eq!(asked.status, AnswerStatus::Paused);
        assert!(fire(&s).await.is_empty(), "nothing is due yet");
        clock.advance(Duration::from_secs(59));
        assert!(fire(&s).await.is_empty(), "the first reminder is due after a minute");
        clock.advance(Duration::from_secs(1));
        let reminded = fire(&s).await;
        assert_eq!(reminded.len(), 1);
        assert_eq!(texts(&reminded[0]), ["Still there?"]);
        assert_eq!(reminded[0].replies[0].choices[0].title, "I don't have one", "the choices go with the reminder");
        assert_eq!(reminded[0].run_id, asked.run_id, "the same run");
        assert_eq!(reminded[0].status, AnswerStatus::Paused);
        assert!(fire(&s).await.is_empty(), "a reminder fires once");
        clock.advance(Duration::from_secs(4 * 60));
        let last = fire(&s).await;
        assert_eq!(texts(&last[0]), ["Last call for ada"], "templates see the contact");
        clock.advance(Duration::from_secs(5 * 60));
        let timed_out = fire(&s).await;
        assert_eq!(texts(&timed_out[0]), ["No answer, closing."], "on_timeout");
        assert_eq!(timed_out[0].status, AnswerStatus::Completed);
        clock.advance(Duration::from_secs(3600));
        assert!(fire(&s).await.is_empty(), "the run ended: no timer is left");
        let history = s.run(asked.run_id.as_ref().unwrap()).await.unwrap().unwrap();
        assert_eq!(history.segments.len(), 4, "the question, two reminders, the timeout");
        let timer = history.segments[3].event.as_ref().unwrap();
        assert_eq!(timer["timer"]["late_ms"], 0, "fired on time on the manual clock");
        assert!(history.segments[3].message_id.starts_with("tern-timer-"));
        assert_eq!(history.summary.contact_id.as_deref(), Some("ada"), "a timer keeps the run's contact");
        let ask = history.segments[3].trace.iter().find(|t| t.step.as_str() == "number").unwrap();
        assert_eq!(ask.detail["timed_out"], true, "the trace says why the question ended");
        s.shutdown(Duration::from_secs(5)).await;
    }
}

/// After downtime several timers of a question are due at once: the contact gets the latest
/// reminder only, or only the timeout, not a burst.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overdue_reminders_are_not_sent_in_a_burst() {
    let clock = Arc::new(ManualClock::at_system_time());
    let s = start(Arc::new(MemoryConversationStore::with_clock(clock.clone())), &clock);
    let mut first = msg("burst", Some("m1"), "order");
    first.contact.insert("id".into(), "bo".into());
    let asked = s.submit(first, None).unwrap().wait().await.unwrap();
    clock.advance(Duration::from_secs(7 * 60));
    let fired = fire(&s).await;
    assert_eq!(texts(&fired[0]), ["Last call for bo"], "only the latest reminder that is due");
    clock.advance(Duration::from_secs(60));
    assert!(fire(&s).await.is_empty(), "the skipped reminder does not come later");
    clock.advance(Duration::from_secs(2 * 60));
    assert_eq!(texts(&fire(&s).await[0]), ["No answer, closing."]);
    let history = s.run(asked.run_id.as_ref().unwrap()).await.unwrap().unwrap();
    let reminded = history.segments[1].trace.iter().find(|t| t.step.as_str() == "number").unwrap();
    assert_eq!(reminded.detail["skipped_reminders"], 1);

    let other = s.submit(msg("burst-2", Some("m1"), "order"), None).unwrap().wait().await.unwrap();
    clock.advance(Duration::from_secs(3600));
    let fired = fire(&s).await;
    assert_eq!(fired.len(), 1);
    assert_eq!(texts(&fired[0]), ["No answer, closing."], "past the timeout: no reminder at all");
    let history = s.run(other.run_id.as_ref().unwrap()).await.unwrap().unwrap();
    let ended = history.segments[1].trace.iter().find(|t| t.step.as_str() == "number").unwrap();
    assert_eq!(ended.detail["skipped_reminders"], 2);
    s.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_cancels_the_timer_and_a_new_question_starts_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::at_system_time());
    for store in stores(&dir, &clock).await {
        let s = start(store, &clock);
        s.submit(msg("c2", Some("m1"), "order"), None).unwrap().wait().await.unwrap();
        clock.advance(Duration::from_secs(30));
        let answered = s.submit(msg("c2", Some("m2"), "A-17"), None).unwrap().wait().await.unwrap();
        assert_eq!(texts(&answered), ["Looking up A-17"]);
        clock.advance(Duration::from_secs(3600));
        assert!(fire(&s).await.is_empty(), "the answer cancelled the reminders and the timeout");

        // The same question asked again after an answer: only the new question's timer counts.
        s.submit(msg("c3", Some("m1"), "order"), None).unwrap().wait().await.unwrap();
        clock.advance(Duration::from_secs(30));
        s.submit(msg("c3", Some("m2"), "A-18"), None).unwrap().wait().await.unwrap();
        clock.advance(Duration::from_secs(10));
        let again = s.submit(msg("c3", Some("m3"), "order"), None).unwrap().wait().await.unwrap();
        clock.advance(Duration::from_secs(30));
        assert!(fire(&s).await.is_empty(), "70 s after the first question, 30 s after the second");
        clock.advance(Duration::from_secs(30));
        let reminded = fire(&s).await;
        assert_eq!(reminded.len(), 1);
        assert_eq!(reminded[0].run_id, again.run_id, "the second question's reminder");
        s.shutdown(Duration::from_secs(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_resumes_on_its_own_and_a_message_meanwhile_does_not_end_it() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::at_system_time());
    for store in stores(&dir, &clock).await {
        let s = start(store, &clock);
        let first = s.submit(msg("w", Some("m1"), "later"), None).unwrap().wait().await.unwrap();
        assert_eq!(texts(&first), ["See you in an hour"]);
        assert_eq!(first.status, AnswerStatus::Paused);
        clock.advance(Duration::from_secs(600));
        let meanwhile = s.submit(msg("w", Some("m2"), "hello?"), None).unwrap().wait().await.unwrap();
        assert_eq!(meanwhile.status, AnswerStatus::Paused, "still waiting");
        assert!(meanwhile.replies.is_empty());
        clock.advance(Duration::from_secs(2999));
        assert!(fire(&s).await.is_empty(), "the message did not move the end of the wait");
        clock.advance(Duration::from_secs(1));
        let after = fire(&s).await;
        assert_eq!(texts(&after[0]), ["An hour has passed"]);
        assert_eq!(after[0].status, AnswerStatus::Completed);
        s.shutdown(Duration::from_secs(5)).await;
    }
}

/// The service stops with a question waiting; it is down when the timeout is due, and fires it
/// late at the next start, with how late in history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timer_survives_a_restart_and_fires_late_after_downtime() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::at_system_time());
    let store = sqlite(&dir, &clock).await;
    let s = start(store.clone(), &clock);
    let asked = s.submit(msg("r", Some("m1"), "later"), None).unwrap().wait().await.unwrap();
    // Claimed (as if it were being fired) when the process stops.
    clock.advance(Duration::from_secs(3600));
    let lease_ms = 120_000;
    assert_eq!(store.timers_due(clock.now_ms(), 10, lease_ms).await.unwrap().len(), 1);
    s.shutdown(Duration::from_secs(5)).await;
    drop(s);

    clock.advance(Duration::from_secs(1800));
    let s = start(store.clone(), &clock);
    s.recover().await.unwrap();
    let fired = fire(&s).await;
    assert_eq!(fired.len(), 1, "the claim of the stopped process is released at start-up");
    assert_eq!(texts(&fired[0]), ["An hour has passed"]);
    let history = s.run(asked.run_id.as_ref().unwrap()).await.unwrap().unwrap();
    let late = &history.segments.last().unwrap().event.as_ref().unwrap()["timer"]["late_ms"];
    assert_eq!(late, 1_800_000, "history says it fired half an hour late");
    s.shutdown(Duration::from_secs(5)).await;
}

/// A channel cannot send a timer's message id: it would answer the timer's firing in advance
/// and so cancel it.
#[test]
fn a_channel_cannot_send_a_timer_s_message_id() {
    use tern_engine::conversation::MessageId;
    for id in ["tern-timer-x", "tern-timer-0e3c-1796682216734", "tern-anything"] {
        assert!(MessageId::from_channel(id).is_err(), "{id}");
    }
    assert!(MessageId::from_channel("timer-1").is_ok());
}

/// Two instances on one PostgreSQL database, each with its own connections, fire together:
/// every timer fires once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_postgres_fire_each_timer_once() {
    use tern_store::crypto::{Keyring, MasterKey};
    let db = tern_store::testing::PgTestDb::create().await;
    let (key, text) = MasterKey::generate();
    let clock = Arc::new(ManualClock::at_system_time());
    let open = |key: MasterKey| {
        let (url, clock) = (db.url.clone(), clock.clone());
        async move {
            let store = tern_store::PgStore::open(&url, Keyring::new(key)).await.unwrap().with_clock(clock);
            Arc::new(store) as Arc<dyn ConversationStore>
        }
    };
    let a = start(open(key).await, &clock);
    let b = start(open(MasterKey::from_base64(&text, "test").unwrap()).await, &clock);
    const N: usize = 12;
    for i in 0..N {
        let s = if i % 2 == 0 { &a } else { &b };
        let answer = s.submit(msg(&format!("pg-{i}"), Some("m1"), "later"), None).unwrap().wait().await.unwrap();
        assert_eq!(answer.status, AnswerStatus::Paused);
    }
    clock.advance(Duration::from_secs(3601));
    let (from_a, from_b) = tokio::join!(fire(&a), fire(&b));
    assert_eq!(from_a.len() + from_b.len(), N, "each timer fired once: {} + {}", from_a.len(), from_b.len());
    let (again_a, again_b) = tokio::join!(fire(&a), fire(&b));
    assert!(again_a.is_empty() && again_b.is_empty());
    for answer in from_a.iter().chain(&from_b) {
        assert_eq!(texts(answer), ["An hour has passed"]);
        let history = a.run(answer.run_id.as_ref().unwrap()).await.unwrap().unwrap();
        assert_eq!(history.segments.len(), 2, "started and resumed once");
    }
    a.shutdown(Duration::from_secs(5)).await;
    b.shutdown(Duration::from_secs(5)).await;
    db.drop_db().await;
}
