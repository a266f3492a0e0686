-- Cheaper checkpoints (issue 7): no query reads events by kind across runs, so this index
-- only cost one more index insert per event written.
DROP INDEX IF EXISTS events_kind_idx;
