-- What a graph worker also tells of each graph: its drawing with subgraphs expanded
-- (`/assistants/{id}/graph?xray=true`) and its subgraphs' schemas by namespace
-- (`/assistants/{id}/subgraphs`).
ALTER TABLE worker_graphs ADD COLUMN drawing_xray JSONB;
ALTER TABLE worker_graphs ADD COLUMN subgraphs JSONB;
