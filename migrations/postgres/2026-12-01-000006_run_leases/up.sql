-- A pending or running run is held by the process that executes (or queues) it, for as long as
-- that process renews its lease; a run whose lease expired (or that has none, from before
-- leases) is ended by any process.
ALTER TABLE runs ADD COLUMN lease_expires_at TIMESTAMPTZ;
CREATE INDEX runs_lease_idx ON runs (lease_expires_at) WHERE status IN ('pending', 'running');
