-- A paused run's timer (tern_engine::timing): when the run is to be resumed without a message
-- (an `ask` reminder or timeout, the end of a `wait`), the paused run's id for the timer
-- message's id, and until when an instance has claimed it (ConversationStore::timers_due).
-- Written with the paused run, so an answer that replaces or ends the run cancels its timer in
-- the same commit.
ALTER TABLE conversations ADD COLUMN wake_at_ms BIGINT;
ALTER TABLE conversations ADD COLUMN wake_run_id TEXT;
ALTER TABLE conversations ADD COLUMN wake_lease_ms BIGINT;
CREATE INDEX conversations_wake ON conversations (wake_at_ms) WHERE wake_at_ms IS NOT NULL;
