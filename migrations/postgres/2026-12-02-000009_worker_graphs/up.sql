-- Graphs served by graph workers (`mnemo-langgraph worker`): what they registered, and until
-- when a worker serves each (refreshed while one claims its runs).
CREATE TABLE worker_graphs (
    graph_id TEXT PRIMARY KEY,
    description TEXT,
    schemas JSONB NOT NULL,
    drawing JSONB NOT NULL,
    served_until TIMESTAMPTZ NOT NULL
);
