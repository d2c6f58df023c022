ALTER TABLE checkpoint_writes DROP COLUMN value;
ALTER TABLE worker_graphs DROP COLUMN state_defaults;
ALTER TABLE worker_graphs DROP COLUMN subgraphs;
ALTER TABLE worker_graphs DROP COLUMN drawing_xray;
