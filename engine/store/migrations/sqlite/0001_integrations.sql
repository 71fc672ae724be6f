CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE integrations (
    name TEXT PRIMARY KEY,
    config TEXT NOT NULL,
    client_secret BLOB,
    status TEXT NOT NULL,
    status_message TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE tokens (
    integration TEXT NOT NULL REFERENCES integrations(name) ON DELETE CASCADE,
    owner TEXT NOT NULL,
    access_token BLOB NOT NULL,
    refresh_token BLOB,
    expires_at INTEGER,
    obtained_at INTEGER NOT NULL DEFAULT 0,
    scopes TEXT,
    metadata TEXT NOT NULL DEFAULT '{}',
    version INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (integration, owner)
);
CREATE TABLE pending_authorizations (
    state_hash TEXT PRIMARY KEY,
    integration TEXT NOT NULL,
    owner TEXT NOT NULL,
    verifier BLOB NOT NULL,
    redirect_uri TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    conversation TEXT
);
CREATE TABLE secrets (name TEXT PRIMARY KEY, value BLOB NOT NULL, updated_at INTEGER NOT NULL);
