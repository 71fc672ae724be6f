-- How many parts of a delivery a messaging platform has already taken
-- (tern_engine::conversation::OutboxItem::sent): a platform channel sends each reply as its own
-- API call, and a retry goes on from there instead of sending a part twice.
ALTER TABLE outbox ADD COLUMN sent BIGINT NOT NULL DEFAULT 0;
