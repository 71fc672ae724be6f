//! What both backends write and read the same way: the associated data of every encrypted
//! value (table, row key, column), sealing and opening values, and turning column values into
//! records. Keeping it here is what makes a ciphertext's binding identical on SQLite and
//! PostgreSQL (SECURITY R7).

use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use tern_engine::IntegrationName;
use tern_engine::TokenOwner;
use tern_engine::conversation::{ConversationId, MessageId, PausedRun, RunId, RunStatus, RunSummary, Segment};
use tern_engine::effects::EffectKey;
use tern_integrations::config::IntegrationConfig;

use crate::crypto::{Aad, Keyring};
use crate::{IntegrationRecord, IntegrationStatus, StoreError, TokenRecord, owner_key};

/// Every encrypted column with the SQL expression of its row key (the same text on both
/// backends), for key rotation.
pub(crate) const SECRET_COLUMNS: &[(&str, &str, &str)] = &[
    ("integrations", "name", "client_secret"),
    ("tokens", "integration || '/' || owner", "access_token"),
    ("tokens", "integration || '/' || owner", "refresh_token"),
    ("pending_authorizations", "state_hash", "verifier"),
    ("secrets", "name", "value"),
    ("conversations", "conversation_id", "snapshot"),
    ("answers", ANSWER_ROW_SQL, "answer"),
    ("answers", ANSWER_ROW_SQL, "digest"),
    ("inbox", ANSWER_ROW_SQL, "body"),
    ("run_segments", "run_id || '/' || seq", "body"),
    ("run_history", "run_id", "first_segment"),
    ("outbox", OUTBOX_ROW_SQL, "body"),
    ("effects", EFFECT_ROW_SQL, "response"),
    ("channels", "name", "config"),
    ("meta", "key", "value"),
];

/// The associated-data row of an answer or accepted message, as SQL; the length prefix keeps
/// `a/b` + `c` apart from `a` + `b/c` ([`message_row`]).
const ANSWER_ROW_SQL: &str = "length(conversation_id) || ':' || conversation_id || '/' || message_id";

/// The associated-data row of a recorded call, as SQL ([`effect_row`]).
const EFFECT_ROW_SQL: &str =
    "length(conversation_id) || ':' || conversation_id || '/' || message_id || '/' || seq || '/' || attempt";

/// The associated-data row of a webhook delivery, as SQL ([`outbox_row`]): its id and its
/// channel since binding 2, its id alone in rows written before (binding 1).
const OUTBOX_ROW_SQL: &str = "CASE WHEN binding = 2 THEN id || '/' || channel ELSE id END";

/// The binding new webhook deliveries are sealed with ([`outbox_row`]).
pub(crate) const OUTBOX_BINDING: i64 = 2;

/// The associated-data row of a webhook delivery sealed with `binding`: binding 2 binds the
/// body to its channel (`NAME@INCARNATION`), so that a row whose `channel` column was changed
/// does not decrypt and is dropped, never sent to another channel's webhook. A body sealed
/// with binding 2 never opens as binding 1 (the rows differ), so setting the column back does
/// not help either. Delivery ids have no `/`.
pub(crate) fn outbox_row(binding: i64, id: &str, channel: &str) -> String {
    if binding == OUTBOX_BINDING { format!("{id}/{channel}") } else { id.to_string() }
}

/// The row key of an answer or accepted message.
pub(crate) fn message_row(c: &ConversationId, m: &MessageId) -> String {
    format!("{}:{}/{}", c.as_str().chars().count(), c, m)
}

/// The row key of an accepted message read back as strings.
pub(crate) fn message_row_str(c: &str, m: &str) -> String {
    format!("{}:{c}/{m}", c.chars().count())
}

/// The row key of a recorded call.
pub(crate) fn effect_row(k: &EffectKey) -> String {
    format!("{}:{}/{}/{}/{}", k.conversation.chars().count(), k.conversation, k.message_id, k.seq, k.attempt)
}

/// The row key of a token.
pub(crate) fn token_key(name: &IntegrationName, owner: &TokenOwner) -> String {
    format!("{name}/{}", owner_key(owner))
}

/// Encrypts and decrypts values with their binding.
#[derive(Clone)]
pub(crate) struct Sealer(pub(crate) std::sync::Arc<Keyring>);

impl Sealer {
    /// A JSON value, encrypted.
    pub(crate) fn seal<T: Serialize>(
        &self,
        table: &str,
        row: &str,
        column: &str,
        value: &T,
    ) -> Result<Vec<u8>, StoreError> {
        let plain = serde_json::to_vec(value)
            .map_err(|e| StoreError::Corrupt { what: format!("{table}.{column} of {row}"), reason: e.to_string() })?;
        Ok(self.0.encrypt(Aad { table, row, column }, &plain))
    }

    /// JSON already serialized (an answer's, a webhook delivery's), encrypted as it is.
    pub(crate) fn seal_json_bytes(&self, table: &str, row: &str, column: &str, json: &[u8]) -> Vec<u8> {
        self.0.encrypt(Aad { table, row, column }, json)
    }

    /// A JSON value, decrypted.
    pub(crate) fn open_json<T: DeserializeOwned>(
        &self,
        table: &str,
        row: &str,
        column: &str,
        blob: &[u8],
    ) -> Result<T, StoreError> {
        let plain = self.0.decrypt(Aad { table, row, column }, blob)?;
        serde_json::from_slice(&plain)
            .map_err(|e| StoreError::Corrupt { what: format!("{table}.{column} of {row}"), reason: e.to_string() })
    }

    /// A secret, encrypted; every secret the store holds is masked wherever text leaves the
    /// process.
    pub(crate) fn encrypt_secret(&self, table: &str, row: &str, column: &str, value: &SecretString) -> Vec<u8> {
        tern_engine::secrets::known::remember(value);
        self.0.encrypt(Aad { table, row, column }, value.expose_secret().as_bytes())
    }

    /// A secret, decrypted (and registered with the masker).
    pub(crate) fn decrypt_secret(
        &self,
        table: &str,
        row: &str,
        column: &str,
        blob: &[u8],
    ) -> Result<SecretString, StoreError> {
        let plain = self.0.decrypt(Aad { table, row, column }, blob)?;
        let text = std::str::from_utf8(&plain).map_err(|_| StoreError::Corrupt {
            what: format!("{table}.{column} of {row}"),
            reason: "not UTF-8".into(),
        })?;
        let value = SecretString::from(text.to_string());
        tern_engine::secrets::known::remember(&value);
        Ok(value)
    }
}

impl Sealer {
    /// A paused run from its `conversations` row (the blob and its clear columns).
    pub(crate) fn open_paused(
        &self,
        conversation: &str,
        blob: &[u8],
        flow_hash: &str,
        expires_at: i64,
        updated_at: i64,
    ) -> Result<PausedRun, StoreError> {
        let plain = self.0.decrypt(Aad { table: "conversations", row: conversation, column: "snapshot" }, blob)?;
        PausedRun::decode(&plain, flow_hash, expires_at, updated_at).map_err(|e| StoreError::Corrupt {
            what: format!("the paused run of conversation {conversation}"),
            reason: e.to_string(),
        })
    }

    /// A run's segments: the first from its summary row (`None` for rows written before schema
    /// version 4), the others from `run_segments` as (seq, blob), in order.
    pub(crate) fn open_segments(
        &self,
        run_id: &str,
        first: Option<Vec<u8>>,
        rest: impl IntoIterator<Item = (i64, Vec<u8>)>,
    ) -> Result<Vec<Segment>, StoreError> {
        let mut segments = Vec::new();
        if let Some(blob) = first {
            segments.push(self.open_json("run_history", run_id, "first_segment", &blob)?);
        }
        for (seq, blob) in rest {
            segments.push(self.open_json("run_segments", &format!("{run_id}/{seq}"), "body", &blob)?);
        }
        Ok(segments)
    }

    /// Named secrets from their rows. One that no longer decrypts is left out (logged), so that
    /// only the flows using it fail (callers compare with the list of names).
    pub(crate) fn open_secrets(
        &self,
        rows: impl IntoIterator<Item = (String, Vec<u8>)>,
    ) -> Vec<(String, SecretString)> {
        rows.into_iter()
            .filter_map(|(name, blob)| match self.decrypt_secret("secrets", &name, "value", &blob) {
                Ok(value) => Some((name, value)),
                Err(e) => {
                    tracing::warn!(secret = %name, error = %e, "a stored secret cannot be decrypted; left out");
                    None
                }
            })
            .collect()
    }
}

/// An `integrations` row's columns.
pub(crate) struct IntegrationRow {
    pub(crate) name: String,
    pub(crate) config: String,
    pub(crate) client_secret_set: bool,
    pub(crate) client_key_set: bool,
    pub(crate) status: String,
    pub(crate) status_message: Option<String>,
    pub(crate) created_at: i64,
    pub(crate) updated_at: i64,
}

impl IntegrationRow {
    pub(crate) fn into_record(self) -> Result<IntegrationRecord, StoreError> {
        let name = self.name;
        let corrupt = |reason: String| StoreError::Corrupt { what: format!("integration `{name}`"), reason };
        let config: IntegrationConfig = serde_json::from_str(&self.config).map_err(|e| corrupt(e.to_string()))?;
        let status = self.status;
        Ok(IntegrationRecord {
            name: IntegrationName::new(name.clone()).map_err(|e| corrupt(e.to_string()))?,
            config,
            client_secret_set: self.client_secret_set,
            client_key_set: self.client_key_set,
            status: IntegrationStatus::parse(&status).ok_or_else(|| corrupt(format!("unknown status `{status}`")))?,
            status_message: self.status_message,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

/// A `tokens` row's columns.
pub(crate) struct TokenRow {
    pub(crate) access_token: Vec<u8>,
    pub(crate) refresh_token: Option<Vec<u8>>,
    pub(crate) expires_at: Option<i64>,
    pub(crate) obtained_at: i64,
    pub(crate) scopes: Option<String>,
    pub(crate) metadata: String,
    pub(crate) version: i64,
}

/// The non-secret columns of a token as stored: scopes and metadata as JSON text.
pub(crate) fn token_columns(token: &TokenRecord) -> (Option<String>, String) {
    let scopes = token.scopes.as_ref().map(|s| serde_json::to_string(s).unwrap_or_default());
    let metadata = serde_json::to_string(&token.metadata).unwrap_or_else(|_| "{}".into());
    (scopes, metadata)
}

impl TokenRow {
    pub(crate) fn into_record(self, sealer: &Sealer, row_key: &str) -> Result<TokenRecord, StoreError> {
        let corrupt = |reason: String| StoreError::Corrupt { what: format!("token {row_key}"), reason };
        let metadata: Map<String, Value> = serde_json::from_str(&self.metadata).map_err(|e| corrupt(e.to_string()))?;
        Ok(TokenRecord {
            access_token: sealer.decrypt_secret("tokens", row_key, "access_token", &self.access_token)?,
            refresh_token: self
                .refresh_token
                .map(|b| sealer.decrypt_secret("tokens", row_key, "refresh_token", &b))
                .transpose()?,
            expires_at: self.expires_at,
            obtained_at: self.obtained_at,
            scopes: self.scopes.map(|s| serde_json::from_str(&s)).transpose().map_err(|e| corrupt(e.to_string()))?,
            metadata,
            version: self.version,
        })
    }
}

/// A `run_history` row's summary columns.
pub(crate) struct SummaryRow {
    pub(crate) run_id: String,
    pub(crate) conversation_id: String,
    pub(crate) contact_id: Option<String>,
    pub(crate) flow_id: String,
    pub(crate) flow_version: String,
    pub(crate) status: String,
    pub(crate) started_at_ms: i64,
    pub(crate) updated_at_ms: i64,
    pub(crate) finished_at_ms: Option<i64>,
    pub(crate) work_ms: Option<i64>,
    pub(crate) recovered: Option<i64>,
    pub(crate) answered_last: Option<i64>,
}

impl SummaryRow {
    pub(crate) fn into_summary(self) -> Result<RunSummary, StoreError> {
        let Self { run_id, status, started_at_ms, updated_at_ms, finished_at_ms, .. } = self;
        let corrupt = |reason: String| StoreError::Corrupt { what: format!("run {run_id}"), reason };
        let status = status.parse::<RunStatus>().map_err(|_| corrupt(format!("unknown status `{status}`")))?;
        let run_id = RunId::new(run_id.as_str()).map_err(|e| corrupt(e.to_string()))?;
        Ok(RunSummary {
            status,
            run_id,
            conversation_id: self.conversation_id,
            contact_id: self.contact_id,
            flow_id: self.flow_id,
            flow_version: self.flow_version,
            started_at_ms,
            updated_at_ms,
            finished_at_ms,
            duration_ms: finished_at_ms.unwrap_or(updated_at_ms) - started_at_ms,
            work_ms: self.work_ms,
            recovered: self.recovered.map(|r| r != 0),
            answered_last: self.answered_last.map(|a| a != 0),
        })
    }
}

/// The columns `runs` lists, in order (both backends).
pub(crate) const SUMMARY_COLUMNS: &str = "run_id, conversation_id, contact_id, flow_id, flow_version, status, started_at_ms, updated_at_ms, finished_at_ms, \
     work_ms, recovered, answered_last";
