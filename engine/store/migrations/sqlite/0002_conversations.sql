CREATE TABLE flow_versions (hash TEXT PRIMARY KEY, flow_id TEXT NOT NULL, source TEXT NOT NULL, created_at INTEGER NOT NULL);
CREATE TABLE conversations (
    conversation_id TEXT PRIMARY KEY,
    flow_hash TEXT NOT NULL,
    snapshot BLOB NOT NULL,
    expires_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE processed_messages (
    conversation_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    response TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, message_id)
);
CREATE TABLE runs (
    run_id TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL,
    flow_id TEXT NOT NULL,
    status TEXT NOT NULL,
    result TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
