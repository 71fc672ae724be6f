//! A plugin's `http-fetch` takes the journaled call path of the built-in steps (SECURITY R12):
//! in process, on the engine with the in-memory conversation store as the effect journal and
//! the recording test API on 127.0.0.1, a message processed again (as after `kill -9` between
//! the calls and the commit of the run's result) replays the plugin's recorded POSTs instead of
//! sending them again, and a POST sent without a recorded answer is not sent again at all.
#![allow(clippy::unwrap_used)] // test code: a panic is a failed test with its message

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use serde_json::{Map, Value, json};
use tern_engine::conversation::MemoryConversationStore;
use tern_engine::effects::{EffectJournal, EffectKey, JournalScope, PriorEffect};
use tern_engine::http::{HttpClient, HttpPolicy, Outbound, parse_origin};
use tern_engine::secrets::LayeredSecrets;
use tern_engine::{CompiledFlow, Engine, LoadOptions, Message, Registry, RunInput, RunResult, RunStatus, load_flow};
use tern_plugins::{Limits, Plugin, PluginStepType, Runtime};
use testkit::TestApi;
use testkit::wasm::{POST_TWICE, Plugin as WatPlugin};

/// The engine with one plugin step type, `wat.test`, whose `run` POSTs to the test API's
/// `/tickets` twice and keeps the second ticket as the variable `id`; and its one-step flow.
async fn engine_with_post_twice(api: &TestApi) -> (Engine, CompiledFlow) {
    let runtime = Runtime::new(Limits::default(), None).unwrap();
    let bytes = WatPlugin::new(POST_TWICE).string("url", &format!("{}/tickets", api.url())).build();
    let allowed = vec![parse_origin(&api.url()).unwrap()];
    let plugin =
        Plugin::from_bytes(&runtime, Path::new("post-twice.wasm"), bytes, allowed, Instant::now()).await.unwrap();
    let mut registry = Registry::new();
    registry.register(Arc::new(PluginStepType::new(Arc::new(plugin)))).unwrap();
    let client = HttpClient::new(HttpPolicy { allow_private_network: true, ..HttpPolicy::default() }).unwrap();
    let engine = Engine {
        registry: Arc::new(registry),
        outbound: Outbound::new(client, None),
        secrets: Arc::new(LayeredSecrets::new(Vec::new())),
        limits: Default::default(),
    };
    // `ticket_as` declares the variable the plugin sets (`id`, from the ticket's JSON).
    let flow = json!({"version": 1, "id": "tickets", "steps": [{"id": "open", "type": "wat.test", "ticket_as": "id"}]});
    let opts = LoadOptions::new(&engine.registry);
    let flow = load_flow(&flow.to_string(), &opts).unwrap();
    (engine, flow)
}

/// Message `message_id` of conversation `c1`, journaled in `store` (or not journaled).
fn input(store: Option<&Arc<MemoryConversationStore>>, message_id: &str) -> RunInput {
    RunInput {
        now_ms: None,
        woken: None,
        conversation_id: "c1".into(),
        contact: json!({"id": "u1"}),
        message: Message { text: "open a ticket".into(), id: Some(message_id.into()), metadata: Map::new() },
        event: None,
        flows: None,
        journal: store.map(|s| JournalScope {
            journal: s.clone(),
            conversation: "c1".into(),
            message_id: message_id.into(),
        }),
    }
}

/// The outcome label the plugin returned (`ok`, or a failed call's message).
fn outcome(r: &RunResult) -> &str {
    r.trace[0].detail.get("outcome").and_then(Value::as_str).unwrap_or_default()
}

/// The statuses (or error codes) of the step's calls, from its trace.
fn calls(r: &RunResult) -> Vec<Value> {
    let requests = r.trace[0].detail.get("requests").and_then(Value::as_array).cloned().unwrap_or_default();
    requests.iter().map(|q| q.get("status").or_else(|| q.get("code")).cloned().unwrap_or(Value::Null)).collect()
}

fn tickets(api: &TestApi) -> usize {
    api.requests().iter().filter(|r| r.method == "POST" && r.uri == "/tickets").count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_post_is_journaled_and_a_message_processed_again_does_not_repeat_it() {
    let api = TestApi::start();
    let (engine, flow) = engine_with_post_twice(&api).await;
    let store = Arc::new(MemoryConversationStore::default());

    // First processing of message m1: both POSTs are sent, each recorded under its own key.
    let first = engine.start(&flow, input(Some(&store), "m1"), Map::new(), None).await;
    assert_eq!(first.status, RunStatus::Completed, "{first:?}");
    assert_eq!(outcome(&first), "ok", "{first:?}");
    assert_eq!(first.variables["id"], "T-2");
    assert_eq!(calls(&first), [json!(200), json!(200)]);
    assert_eq!(tickets(&api), 2);
    for call in 0..2 {
        let key = EffectKey {
            conversation: "c1".into(),
            message_id: "m1".into(),
            seq: 0,
            attempt: call,
            step: "open".into(),
        };
        match store.begin_effect(&key).await.unwrap() {
            PriorEffect::Done(r) => assert_eq!(r.status, 200, "call {call}"),
            other => panic!("call {call} of the plugin step was not journaled with its answer: {other:?}"),
        }
    }

    // m1 processed again (the process died before the run's result was committed): the
    // recorded answers are replayed to the plugin; the API sees no new POST.
    let again = engine.start(&flow, input(Some(&store), "m1"), Map::new(), None).await;
    assert_eq!(outcome(&again), "ok", "{again:?}");
    assert_eq!(again.variables["id"], "T-2", "the plugin got the recorded answer");
    assert_eq!(tickets(&api), 2, "a replayed POST is not sent again");

    // Another message is another call.
    let next = engine.start(&flow, input(Some(&store), "m2"), Map::new(), None).await;
    assert_eq!(next.variables["id"], "T-4", "{next:?}");
    assert_eq!(tickets(&api), 4);

    // The process died after sending m3's first POST and before recording its answer: the
    // plugin gets a `failed` error saying so, and nothing is sent.
    let key = EffectKey { conversation: "c1".into(), message_id: "m3".into(), seq: 0, attempt: 0, step: "open".into() };
    assert!(matches!(store.begin_effect(&key).await.unwrap(), PriorEffect::None));
    let unknown = engine.start(&flow, input(Some(&store), "m3"), Map::new(), None).await;
    assert!(outcome(&unknown).contains("may or may not have taken effect"), "{unknown:?}");
    assert_eq!(calls(&unknown), [json!("outcome-unknown")]);
    assert_eq!(tickets(&api), 4, "a call with an unknown outcome is not repeated");

    // Without a journal (a message the channel sent without an id) the calls are plain sends.
    let plain = engine.start(&flow, input(None, "m1"), Map::new(), None).await;
    assert_eq!(plain.variables["id"], "T-6", "{plain:?}");
    assert_eq!(tickets(&api), 6);
}
