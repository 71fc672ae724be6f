-- A run's first segment is stored in its summary row, so a run that never pauses (most of
-- them) costs one statement; later segments still go to `run_segments` (seq 1, 2, ...).
-- Rows written by version 3 keep their segment 0 in `run_segments`.
ALTER TABLE run_history ADD COLUMN first_segment BLOB;
