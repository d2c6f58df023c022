-- Kept in step with migrations/postgres.
ALTER TABLE worker_graphs ADD COLUMN drawing_xray TEXT;
ALTER TABLE worker_graphs ADD COLUMN subgraphs TEXT;
-- the values its state channels hold before any write (a list reducer's `[]`), shown in its states
ALTER TABLE worker_graphs ADD COLUMN state_defaults TEXT;
-- A JSON rendering of a pending write stored as opaque bytes (a Python graph's msgpack), sent by
-- the writer so that a task's result can be shown in state and history, as for blobs.
ALTER TABLE checkpoint_writes ADD COLUMN value TEXT;
