-- Channels (issue 22): the same table as SQLite's migration 0005. `config` is the AES-256-GCM
-- ciphertext of the channel's JSON settings, bound to ("channels", name, "config").
CREATE TABLE channels (
    name TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    config BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
