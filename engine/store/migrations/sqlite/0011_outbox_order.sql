-- The conversation of a webhook or platform delivery: only a conversation's oldest delivery is
-- claimed (Dialect::outbox_due), so that its replies arrive in the order they were written, a
-- later one waiting while an earlier one is retried. Rows written before this migration have
-- none and are sent in any order.
ALTER TABLE outbox ADD COLUMN conversation TEXT;
CREATE INDEX outbox_conversation ON outbox (conversation, created_at_ms);
