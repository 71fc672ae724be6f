-- A web chat conversation's transcript (tern_engine::web_chat::transcript): the visitor's
-- messages and the replies, numbered per conversation, written with each message's result.
-- At most tern_engine::web_chat::transcript::MAX_ENTRIES per conversation; pruned once no
-- session can read them (tern_engine::web_chat::session::SESSION_TTL_S). The body is sealed
-- like an answer (it holds what the visitor wrote and was told).
CREATE TABLE web_transcript (
    conversation_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    at_ms INTEGER NOT NULL,
    body BLOB NOT NULL,
    PRIMARY KEY (conversation_id, seq)
);
CREATE INDEX web_transcript_at ON web_transcript (at_ms);
