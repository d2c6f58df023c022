DROP INDEX checkpoints_run_id_idx;
ALTER TABLE checkpoint_blobs DROP COLUMN value;
