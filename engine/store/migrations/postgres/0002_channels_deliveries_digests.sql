-- Issue 22. Webhook deliveries carry the channel whose webhook they go to: the delivery loop
-- looks the channel's URL and signing secret up when it sends. Rows written before channels
-- existed belong to the `default` channel (`--webhook-url`).
ALTER TABLE outbox ADD COLUMN channel TEXT NOT NULL DEFAULT 'default';
-- A remembered answer keeps the digest of the message it answered (sealed like the answer),
-- so that a message id re-sent with other content is refused. Older answers have none.
ALTER TABLE answers ADD COLUMN digest BYTEA;
