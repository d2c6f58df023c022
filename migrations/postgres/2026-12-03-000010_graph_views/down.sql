ALTER TABLE worker_graphs DROP COLUMN subgraphs;
ALTER TABLE worker_graphs DROP COLUMN drawing_xray;
