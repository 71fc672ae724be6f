-- The number of a webhook delivery's latest claim (tern_engine::conversation::OutboxItem::lease):
-- a retry scheduled under an older claim, whose lease ended while its attempt still ran, is
-- ignored.
ALTER TABLE outbox ADD COLUMN lease BIGINT NOT NULL DEFAULT 0;

-- How a delivery's body is bound to its row in the encryption's associated data
-- (crate::rows::outbox_row): 1 its id (rows written before this migration), 2 its id and its
-- channel, so that a row moved to another channel does not decrypt.
ALTER TABLE outbox ADD COLUMN binding BIGINT NOT NULL DEFAULT 1;
