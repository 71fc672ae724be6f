-- The ids of queued notices (tern_engine::conversation::Notice: a signed delivery of no
-- conversation, such as an integration's connection event), so that the same notice queued
-- again (by another instance, or after a restart) within the retention window is not sent twice.
CREATE TABLE notices (
    id TEXT PRIMARY KEY,
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX notices_created ON notices (created_at_ms);
