-- Kept in step with migrations/postgres.
ALTER TABLE runs ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1;
ALTER TABLE runs ADD COLUMN holder TEXT;
CREATE INDEX runs_pending_idx ON runs (run_id) WHERE status = 'pending';
