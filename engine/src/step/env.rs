//! What a run sees besides its variables, built once per activation: the message, the contact,
//! the conversation, the event, the secrets and integration metadata the flow uses
//! ([`RunEnv`]); and placeholder resolution over it ([`RunScope`]).

use std::borrow::Cow;
use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::effects::JournalScope;
use crate::ids::IntegrationName;
use crate::secrets::{Masker, SecretMap};
use crate::template::{RenderError, Root, Scope, VarRef, walk_path};

/// An incoming conversation message.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Message {
    /// The text.
    pub text: String,
    /// The channel's message id, when it sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Fields the channel sent besides the ones Tern knows (`{{message.metadata.*}}`).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub metadata: Map<String, Value>,
}

/// The contact's id in the contact object a channel sends (`{"id": …}`): a string as written,
/// a number as its decimal text (`{"id": 42}` is `"42"`); anything else (no `id`, `null`, an
/// object) is no id. The one reading of a contact id: history records it, `token: contact` and
/// plugins use it as the token owner.
pub fn contact_id(contact: &Map<String, Value>) -> Option<Cow<'_, str>> {
    match contact.get("id")? {
        Value::String(s) => Some(Cow::Borrowed(s)),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        _ => None,
    }
}

/// What templates can see besides variables. Built once per activation.
#[derive(Debug, Default)]
pub struct RunEnv {
    /// `{{conversation.id}}`.
    pub conversation_id: String,
    /// `{{contact.*}}`.
    pub contact: Value,
    /// `{{message.text}}`.
    pub message: Message,
    /// The event that resumed the run, if it was not a message.
    pub event: Option<Value>,
    /// `{{secrets.NAME}}`, only those the flow uses.
    pub secrets: SecretMap,
    /// Secrets the flow uses that are stored but do not decrypt (a missing one is diagnosed
    /// as that, not as "not set").
    pub undecryptable_secrets: Vec<String>,
    /// `{{integration.NAME.FIELD}}`.
    pub integrations: HashMap<IntegrationName, Map<String, Value>>,
    /// Masks the values of `secrets` in replies, errors and history.
    pub masker: Masker,
    /// The effect journal of the message being processed.
    pub journal: Option<JournalScope>,
    /// The activation's wall-clock time (Unix milliseconds, from the service's clock).
    pub now_ms: i64,
    /// The timer that resumed the run, when no message did.
    pub woken: Option<crate::timing::Wake>,
}

/// Placeholder resolution over a run's variables and environment.
pub struct RunScope<'a> {
    pub(super) vars: &'a Map<String, Value>,
    pub(super) env: &'a RunEnv,
}

impl Scope for RunScope<'_> {
    fn resolve(&self, var: &VarRef) -> Result<Cow<'_, Value>, RenderError> {
        let missing = |reason: &str| RenderError::Missing { var: var.raw.clone(), reason: reason.to_string() };
        let root: Cow<'_, Value> = match &var.root {
            Root::Var(name) => {
                Cow::Borrowed(self.vars.get(name.as_str()).ok_or_else(|| missing("the variable is not set yet"))?)
            }
            Root::Message => Cow::Owned(serde_json::json!({
                "text": self.env.message.text,
                "id": self.env.message.id,
                "metadata": self.env.message.metadata,
            })),
            Root::Contact => Cow::Borrowed(&self.env.contact),
            Root::Conversation => Cow::Owned(serde_json::json!({ "id": self.env.conversation_id })),
            Root::Event => Cow::Borrowed(
                self.env.event.as_ref().ok_or_else(|| missing("the run was not started by an integration event"))?,
            ),
            Root::Secret(name) => {
                use secrecy::ExposeSecret;
                let s = self.env.secrets.get(name).ok_or_else(|| {
                    if self.env.undecryptable_secrets.iter().any(|n| n == name) {
                        missing(&crate::secrets::unreadable_secret(name))
                    } else {
                        missing(&format!(
                            "no secret `{name}`; set it with `tern secrets set {name}` or TERN_SECRET_{name}"
                        ))
                    }
                })?;
                return Ok(Cow::Owned(Value::String(s.expose_secret().to_string())));
            }
            Root::Integration(name) => {
                let meta = self
                    .env
                    .integrations
                    .get(name)
                    .ok_or_else(|| missing("the integration has no stored metadata; authorize it first"))?;
                let field = var.path.first().map(String::as_str).unwrap_or_default();
                return meta
                    .get(field)
                    .map(|v| Cow::Owned(v.clone()))
                    .ok_or_else(|| missing(&format!("the integration's token response had no `{field}`")));
            }
        };
        match root {
            Cow::Borrowed(v) => walk_path(v, &var.path, &var.raw).map(Cow::Borrowed),
            Cow::Owned(v) => walk_path(&v, &var.path, &var.raw).map(|x| Cow::Owned(x.clone())),
        }
    }
}
