-- The `webhook-id`s of signed requests already accepted, per sender (`scope`: a channel's name,
-- or `integration:NAME` for an integration's events), until their
-- signature's timestamp leaves the replay window (tern_engine::channel_auth): a replay within
-- the window is refused, on every instance sharing the database. Pruned by retention.
CREATE TABLE webhook_ids (
    scope TEXT NOT NULL,
    webhook_id TEXT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    PRIMARY KEY (scope, webhook_id)
);
CREATE INDEX webhook_ids_expires ON webhook_ids (expires_at_ms);
