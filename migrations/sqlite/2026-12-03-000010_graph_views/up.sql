-- Kept in step with migrations/postgres.
ALTER TABLE worker_graphs ADD COLUMN drawing_xray TEXT;
ALTER TABLE worker_graphs ADD COLUMN subgraphs TEXT;
