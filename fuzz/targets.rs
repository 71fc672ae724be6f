//! The fuzz targets' bodies, shared by the libFuzzer binaries in `fuzz/fuzz_targets/` (run with
//! `cargo fuzz`, nightly) and by the corpus replay test `tests/fuzz_corpus.rs` (stable, in CI).
//! Each takes arbitrary bytes and must never panic, hang or allocate without bound; what it
//! returns is irrelevant.

use std::borrow::Cow;
use std::sync::LazyLock;
use std::time::Duration;

use serde_json::{Map, Value, json};
use tern_engine::conversation::{ConversationId, Inbound};
use tern_engine::http::{RequestConfig, RequestTemplate, UrlTemplate};
use tern_engine::mapping::{Mapping, ResponsePath};
use tern_engine::template::{JsonTemplate, RenderError, Root, Scope, Template, VarRef, walk_path};
use tern_engine::{LoadOptions, Registry, load_flow};
use tern_integrations::oauth::{TernTokenResponse, form_body_to_json};

/// The server's message body type (`src/server/incoming.rs`), compiled into the fuzz targets
/// as it is into `tern`.
#[path = "../src/server/incoming.rs"]
#[allow(dead_code)] // the server uses more of it than the fuzz target
mod incoming;

/// A target's body.
pub type Target = fn(&[u8]);

/// Every target by name, for the corpus replay.
pub const TARGETS: &[(&str, Target)] = &[
    ("flow_load", flow_load),
    ("template", template),
    ("response_mapping", response_mapping),
    ("token_response", token_response),
    ("message_body", message_body),
];

static REGISTRY: LazyLock<Registry> = LazyLock::new(tern_steps::registry);

/// Flow loading and validation: the whole `load_flow` pipeline (JSONC parse, schema, steps'
/// configs, whole-flow analysis) on arbitrary text.
pub fn flow_load(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let opts = LoadOptions {
        registry: &REGISTRY,
        integrations: None,
        limits: Default::default(),
        allow_private_network: false,
    };
    match load_flow(text, &opts) {
        Ok(flow) => {
            let _ = flow.warnings.iter().map(ToString::to_string).count();
        }
        Err(diags) => {
            assert!(diags.iter().any(|d| d.is_error()), "a refused flow has at least one error");
            let _ = diags.iter().map(ToString::to_string).count();
        }
    }
}

/// Variables a template may refer to.
struct Vars(Map<String, Value>);

impl Scope for Vars {
    fn resolve(&self, var: &VarRef) -> Result<Cow<'_, Value>, RenderError> {
        let missing = |reason: &str| RenderError::Missing { var: var.raw.clone(), reason: reason.into() };
        let root = match &var.root {
            Root::Var(name) => self.0.get(name.as_str()).ok_or_else(|| missing("no such variable"))?,
            Root::Message => self.0.get("message").ok_or_else(|| missing("no message"))?,
            _ => return Err(missing("not available")),
        };
        walk_path(root, &var.path, &var.raw).map(Cow::Borrowed)
    }
}

fn vars() -> Vars {
    let json = json!({
        "name": "Erlich", "n": 42, "f": 1.5, "b": true, "nil": null,
        "list": ["a", {"x": "y"}, [1, 2]], "obj": {"a": {"b": "c"}, "crlf": "a\r\nb"},
        "message": {"text": "hi"}, "big": "x".repeat(70_000)
    });
    Vars(json.as_object().cloned().unwrap_or_default())
}

/// Template parsing and rendering: text templates, JSON templates, URL templates and whole
/// request templates (URL, query, headers and body under one size budget).
pub fn template(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let scope = vars();
    if let Ok(t) = Template::parse(text) {
        let _ = t.render(&scope);
        let _ = t.render_value(&scope);
        let _ = t.vars().count();
    }
    if let Ok(u) = UrlTemplate::parse(text) {
        let _ = u.render(&scope);
    }
    let Ok(value) = serde_json::from_str::<Value>(text) else { return };
    if let Ok(t) = JsonTemplate::parse(&value) {
        let _ = t.render(&scope);
        let _ = t.vars();
    }
    if let Ok(cfg) = serde_json::from_value::<RequestConfig>(value)
        && let Ok(req) = RequestTemplate::compile(&cfg)
    {
        let _ = req.vars();
        let _ = req.render(&scope, Duration::from_secs(1));
    }
}

/// Response mapping: the first line is a path (`data.a.0` or a JSONPath `$…`), the rest a
/// response body (JSON, or text taken as a string).
pub fn response_mapping(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (path, body) = text.split_once('\n').unwrap_or((text, ""));
    let body = serde_json::from_str::<Value>(body).unwrap_or_else(|_| Value::String(body.to_string()));
    let Ok(path) = ResponsePath::parse(path) else { return };
    let _ = path.raw();
    let mapping = Mapping { default: Some(Value::Null), ..Mapping::of(path) };
    let _ = mapping.apply(&body);
}

/// Token-response parsing: the bytes as a JSON token response and as a form-encoded one (GitHub
/// without `Accept`), each turned into the record Tern would store.
pub fn token_response(data: &[u8]) {
    for body in [Cow::Borrowed(data), Cow::Owned(form_body_to_json(data))] {
        if let Ok(r) = serde_json::from_slice::<TernTokenResponse>(&body) {
            let now = 1_700_000_000;
            let rec = r.clone().into_record(None, None, now);
            if let Some(expires_at) = rec.expires_at {
                assert!(expires_at >= rec.obtained_at, "a token never expires before it was obtained");
            }
            let _ = r.into_record(Some(tern_integrations::config::Profile::Zoho), None, now);
        }
    }
}

/// The webhook message body: the bytes as the JSON body of `POST /v1/conversations/{id}/messages`,
/// parsed by the server's own type and turned into the message the service journals. A message
/// the server accepts must be stored and read back unchanged (the journal, paused runs and
/// history are JSON that serde_json reads back at most 128 levels deep).
pub fn message_body(data: &[u8]) {
    let Ok(message) = serde_json::from_slice::<incoming::IncomingMessage>(data) else { return };
    let Ok(conversation) = ConversationId::new("fuzz") else { return };
    let Ok(inbound) = message.into_inbound(conversation) else { return };
    let stored = serde_json::to_vec(&inbound).expect("an accepted message serializes");
    let back: Inbound = serde_json::from_slice(&stored).expect("an accepted message reads back from the journal");
    // A paused run keeps the message inside its variables, a few levels deeper still.
    let snapshot = json!({"snapshot": {"vars": {"message": {"metadata": back.metadata, "contact": back.contact}}}});
    let stored_snapshot = serde_json::to_vec(&snapshot).expect("a snapshot serializes");
    let read: Value = serde_json::from_slice(&stored_snapshot).expect("a paused run with the message reads back");
    assert_eq!(read, snapshot, "a paused run with the message reads back unchanged");
    assert_eq!(serde_json::to_vec(&back).ok(), Some(stored), "an accepted message reads back unchanged");
}
