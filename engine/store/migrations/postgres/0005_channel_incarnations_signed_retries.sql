-- A stored channel's incarnation (tern_engine::channel::Incarnation): made when the channel is
-- first saved, kept when its settings are replaced. Its conversations are stored under
-- `channel:NAME@INCARNATION:ID` and its deliveries name it, so a channel removed and added
-- again under the same name reaches nothing of the old one. Channels saved before this column
-- existed keep the empty incarnation (their conversations stay `channel:NAME:ID`).
ALTER TABLE channels ADD COLUMN incarnation TEXT NOT NULL DEFAULT '';

-- What a signed request's `webhook-id` was first accepted with: the SHA-256 of its body (hex)
-- and its `webhook-timestamp` (Unix seconds, the latest accepted). A sender's retry (the same
-- id and body, signed again later) is let through to the message's dedupe; a replay (the same
-- or an older timestamp) or the id with another body is refused.
ALTER TABLE webhook_ids ADD COLUMN body_sha256 TEXT NOT NULL DEFAULT '';
ALTER TABLE webhook_ids ADD COLUMN signed_at BIGINT NOT NULL DEFAULT 0;
