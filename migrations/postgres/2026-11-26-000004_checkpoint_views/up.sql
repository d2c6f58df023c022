-- A JSON rendering of a channel value stored as opaque bytes (a Python graph's msgpack), sent by
-- the writer so the value can be shown through /threads/{id}/state; the bytes stay authoritative.
ALTER TABLE checkpoint_blobs ADD COLUMN value JSONB;
-- checkpoints of given runs, across threads (the checkpointer's delete_for_runs)
CREATE INDEX checkpoints_run_id_idx ON checkpoints ((metadata ->> 'run_id'));
