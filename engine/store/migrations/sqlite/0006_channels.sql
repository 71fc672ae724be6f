-- Channels (issue 22): where messages come from and how replies go back. `config` is the
-- AES-256-GCM ciphertext of the channel's JSON settings (tokens, signing secrets, webhook URL and
-- secret), bound to ("channels", name, "config").
CREATE TABLE channels (
    name TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    config BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
