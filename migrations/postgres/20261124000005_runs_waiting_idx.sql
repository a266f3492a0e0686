-- Counting waiting (passivated) runs for the `scaff_runs_waiting` gauge reads this small
-- partial index instead of scanning every run at each scrape.
CREATE INDEX runs_waiting_idx ON runs (status) WHERE status = 'waiting';
