-- Kept in step with migrations/postgres.
CREATE TABLE worker_graphs (
    graph_id TEXT PRIMARY KEY,
    description TEXT,
    schemas TEXT NOT NULL,
    drawing TEXT NOT NULL,
    served_until TIMESTAMP NOT NULL
);
