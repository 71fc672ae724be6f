-- Tern's schema on PostgreSQL: the same tables and columns as SQLite's schema version 4.
-- Secret columns (BYTEA) hold AES-256-GCM ciphertexts whose associated data is the table, row
-- and column, exactly as on SQLite, so `tern keys rotate` and the key check work alike.
-- Times are Unix seconds (`*_at`) or milliseconds (`*_ms`) as BIGINT.

CREATE TABLE meta (key TEXT PRIMARY KEY, value BYTEA NOT NULL);

CREATE TABLE integrations (
    name TEXT PRIMARY KEY,
    config TEXT NOT NULL,
    client_secret BYTEA,
    status TEXT NOT NULL,
    status_message TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE tokens (
    integration TEXT NOT NULL REFERENCES integrations (name) ON DELETE CASCADE,
    owner TEXT NOT NULL,
    access_token BYTEA NOT NULL,
    refresh_token BYTEA,
    expires_at BIGINT,
    obtained_at BIGINT NOT NULL DEFAULT 0,
    scopes TEXT,
    metadata TEXT NOT NULL DEFAULT '{}',
    version BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (integration, owner)
);

CREATE TABLE pending_authorizations (
    state_hash TEXT PRIMARY KEY,
    integration TEXT NOT NULL,
    owner TEXT NOT NULL,
    verifier BYTEA NOT NULL,
    redirect_uri TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    conversation TEXT
);
CREATE INDEX pending_expires ON pending_authorizations (expires_at);

CREATE TABLE secrets (name TEXT PRIMARY KEY, value BYTEA NOT NULL, updated_at BIGINT NOT NULL);

CREATE TABLE flow_versions (
    hash TEXT PRIMARY KEY,
    flow_id TEXT NOT NULL,
    source TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- Paused runs, one per conversation.
CREATE TABLE conversations (
    conversation_id TEXT PRIMARY KEY,
    flow_hash TEXT NOT NULL,
    snapshot BYTEA NOT NULL,
    expires_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX conversations_expires ON conversations (expires_at);

-- Remembered answers (message-id dedupe).
CREATE TABLE answers (
    conversation_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    answer BYTEA NOT NULL,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (conversation_id, message_id)
);
CREATE INDEX answers_created ON answers (created_at_ms);

-- Accepted messages not answered yet (recovered after a crash, by any instance).
CREATE TABLE inbox (
    seq BIGSERIAL PRIMARY KEY,
    conversation_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    body BYTEA NOT NULL,
    accepted_at_ms BIGINT NOT NULL,
    UNIQUE (conversation_id, message_id)
);
CREATE INDEX inbox_accepted ON inbox (accepted_at_ms);

CREATE TABLE run_history (
    run_id TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL,
    contact_id TEXT,
    flow_id TEXT NOT NULL,
    flow_version TEXT NOT NULL,
    status TEXT NOT NULL,
    started_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    finished_at_ms BIGINT,
    segments BIGINT NOT NULL,
    first_segment BYTEA
);
CREATE INDEX run_history_updated ON run_history (updated_at_ms);
CREATE INDEX run_history_conversation ON run_history (conversation_id, updated_at_ms);
CREATE INDEX run_history_flow ON run_history (flow_id, updated_at_ms);

CREATE TABLE run_segments (
    run_id TEXT NOT NULL REFERENCES run_history (run_id) ON DELETE CASCADE,
    seq BIGINT NOT NULL,
    body BYTEA NOT NULL,
    PRIMARY KEY (run_id, seq)
);

CREATE TABLE outbox (
    id TEXT PRIMARY KEY,
    body BYTEA NOT NULL,
    attempts BIGINT NOT NULL,
    next_attempt_ms BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX outbox_due ON outbox (next_attempt_ms);

-- The effect journal (SECURITY R12).
CREATE TABLE effects (
    conversation_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    attempt BIGINT NOT NULL,
    step_id TEXT NOT NULL,
    response BYTEA,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (conversation_id, message_id, seq, attempt)
);
CREATE INDEX effects_created ON effects (created_at_ms);
