-- What a platform said of a run's replies (WhatsApp's statuses: sent, delivered, read, failed),
-- for the run's history: at most tern_engine::conversation::MAX_DELIVERY_STATUSES per run,
-- sealed like the run's segments, removed with the run.
CREATE TABLE delivery_statuses (
    run_id TEXT NOT NULL REFERENCES run_history (run_id) ON DELETE CASCADE,
    seq BIGINT NOT NULL,
    body BYTEA NOT NULL,
    PRIMARY KEY (run_id, seq)
);
