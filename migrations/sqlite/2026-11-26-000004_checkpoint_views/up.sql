-- Kept in step with migrations/postgres.
ALTER TABLE checkpoint_blobs ADD COLUMN value TEXT;
CREATE INDEX checkpoints_run_id_idx ON checkpoints (json_extract(metadata, '$.run_id'));
