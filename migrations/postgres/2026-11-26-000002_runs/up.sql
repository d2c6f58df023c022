-- A run executes a graph on a thread. Run ids are UUIDv7, so a thread's runs list by key.
CREATE TABLE runs (
    run_id             TEXT PRIMARY KEY,
    thread_id          TEXT NOT NULL REFERENCES threads (thread_id) ON DELETE CASCADE,
    assistant_id       TEXT NOT NULL,
    status             TEXT NOT NULL DEFAULT 'pending',
    metadata           JSONB NOT NULL DEFAULT '{}',
    kwargs             JSONB NOT NULL DEFAULT '{}',
    multitask_strategy TEXT NOT NULL DEFAULT 'reject',
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX runs_thread_idx ON runs (thread_id, run_id);
