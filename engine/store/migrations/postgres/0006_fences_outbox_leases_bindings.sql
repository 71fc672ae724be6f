-- Fencing tokens of the conversation locks (crate::postgres::locks). An instance that takes a
-- conversation's lock makes sure the conversation's `epoch` is its own: when the row names
-- another lock session as `holder` (another instance, or a session of its own that was lost),
-- the epoch moves to a new value of `conversation_epochs` first. The transaction that commits a
-- message's result locks the row and checks that the epoch is still the one its lock started
-- with; a run whose lock was lost meanwhile commits nothing. Epochs come from one sequence, so
-- a row removed by retention and made again never repeats an old epoch.
CREATE SEQUENCE conversation_epochs;

CREATE TABLE conversation_fences (
    conversation_id TEXT PRIMARY KEY,
    epoch BIGINT NOT NULL,
    holder BIGINT NOT NULL,
    -- When the epoch last moved (Unix ms), for retention.
    fenced_at_ms BIGINT NOT NULL
);
CREATE INDEX conversation_fences_fenced_at ON conversation_fences (fenced_at_ms);

-- The number of a webhook delivery's latest claim (tern_engine::conversation::OutboxItem::lease):
-- a retry scheduled under an older claim, whose lease ended while its attempt still ran (a
-- slow receiver, or an instance that lost its connection), is ignored.
ALTER TABLE outbox ADD COLUMN lease BIGINT NOT NULL DEFAULT 0;

-- How a delivery's body is bound to its row in the encryption's associated data
-- (crate::rows::outbox_row): 1 its id (rows written before this migration), 2 its id and its
-- channel, so that a row moved to another channel does not decrypt.
ALTER TABLE outbox ADD COLUMN binding BIGINT NOT NULL DEFAULT 1;
