-- Kept in step with migrations/postgres.
ALTER TABLE runs ADD COLUMN lease_expires_at TIMESTAMP;
CREATE INDEX runs_lease_idx ON runs (lease_expires_at) WHERE status IN ('pending', 'running');
