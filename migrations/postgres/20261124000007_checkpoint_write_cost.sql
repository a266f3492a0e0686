-- Cheaper checkpoints (issue 7; docs/performance.md, "Checkpoint write cost").
-- No query reads events by kind across runs (streams read by id, usage reads the partial
-- events_ai_idx), so this index only cost one more index insert per event written.
DROP INDEX IF EXISTS events_kind_idx;
-- A run row is rewritten at every checkpoint. Leaving room on each page lets PostgreSQL keep
-- the new row version on the same page (a HOT update) and skip every index of the table,
-- whenever no indexed column (say, status) changed.
ALTER TABLE runs SET (fillfactor = 70);
