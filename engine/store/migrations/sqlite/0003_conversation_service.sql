-- The conversation service: encrypted answers, accepted messages, run history in segments,
-- the webhook outbox. The plaintext `runs` and `processed_messages` of version 2 are
-- dropped (they could hold tokens an API echoed; dedupe only spans minutes).
DROP TABLE runs;
DROP TABLE processed_messages;
CREATE TABLE answers (
    conversation_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    answer BLOB NOT NULL,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, message_id)
);
CREATE INDEX answers_created ON answers (created_at_ms);
CREATE TABLE inbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    body BLOB NOT NULL,
    accepted_at_ms INTEGER NOT NULL,
    UNIQUE (conversation_id, message_id)
);
CREATE TABLE run_history (
    run_id TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL,
    contact_id TEXT,
    flow_id TEXT NOT NULL,
    flow_version TEXT NOT NULL,
    status TEXT NOT NULL,
    started_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    finished_at_ms INTEGER,
    segments INTEGER NOT NULL
);
CREATE INDEX run_history_updated ON run_history (updated_at_ms);
CREATE INDEX run_history_conversation ON run_history (conversation_id, updated_at_ms);
CREATE INDEX run_history_flow ON run_history (flow_id, updated_at_ms);
CREATE TABLE run_segments (
    run_id TEXT NOT NULL REFERENCES run_history (run_id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    body BLOB NOT NULL,
    PRIMARY KEY (run_id, seq)
);
CREATE TABLE outbox (
    id TEXT PRIMARY KEY,
    body BLOB NOT NULL,
    attempts INTEGER NOT NULL,
    next_attempt_ms INTEGER NOT NULL,
    created_at_ms INTEGER NOT NULL
);
CREATE INDEX outbox_due ON outbox (next_attempt_ms);
CREATE TABLE effects (
    conversation_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    step_id TEXT NOT NULL,
    response BLOB,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, message_id, seq, attempt)
);
CREATE INDEX effects_created ON effects (created_at_ms);
CREATE INDEX conversations_expires ON conversations (expires_at);
CREATE INDEX pending_expires ON pending_authorizations (expires_at);
