-- Runs are a queue: a pending run is held by no process until one claims it. `holder` names the
-- process executing a running run (only it renews the lease or ends the run), `attempt` counts
-- the times the run was started (a run whose process stopped is resumed by another, up to
-- MNEMO_RUN_MAX_ATTEMPTS).
ALTER TABLE runs ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1;
ALTER TABLE runs ADD COLUMN holder TEXT;
CREATE INDEX runs_pending_idx ON runs (run_id) WHERE status = 'pending';
