-- What a graph worker also tells of each graph: its drawing with subgraphs expanded
-- (`/assistants/{id}/graph?xray=true`) and its subgraphs' schemas by namespace
-- (`/assistants/{id}/subgraphs`).
ALTER TABLE worker_graphs ADD COLUMN drawing_xray JSONB;
ALTER TABLE worker_graphs ADD COLUMN subgraphs JSONB;
-- the values its state channels hold before any write (a list reducer's `[]`), shown in its states
ALTER TABLE worker_graphs ADD COLUMN state_defaults JSONB;
-- A JSON rendering of a pending write stored as opaque bytes (a Python graph's msgpack), sent by
-- the writer so that a task's result can be shown in state and history, as for blobs.
ALTER TABLE checkpoint_writes ADD COLUMN value JSONB;
