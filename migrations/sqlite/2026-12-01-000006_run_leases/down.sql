DROP INDEX runs_lease_idx;
ALTER TABLE runs DROP COLUMN lease_expires_at;
