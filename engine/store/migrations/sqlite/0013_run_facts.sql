-- What the runs list shows of a run without reading its sealed segments: time spent working
-- (without the waits for the contact), whether a step went to on_error, and whether the last
-- activation replied. NULL for runs recorded before this migration (unknown, not false).
ALTER TABLE run_history ADD COLUMN work_ms INTEGER;
ALTER TABLE run_history ADD COLUMN recovered INTEGER;
ALTER TABLE run_history ADD COLUMN answered_last INTEGER;
