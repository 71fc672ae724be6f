-- Each rate-limited integration's token bucket, shared by the instances of one database
-- (tern_engine::http::limit::SharedBucket): the takes available (in thousandths) when last
-- counted, and the API's hold. One row per integration; retention removes a row unused for a day.
CREATE TABLE rate_buckets (
    name TEXT PRIMARY KEY,
    tokens_milli BIGINT NOT NULL,
    counted_ms BIGINT NOT NULL,
    hold_until_ms BIGINT NOT NULL
);
