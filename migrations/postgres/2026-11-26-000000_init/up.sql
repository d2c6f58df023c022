-- Threads own everything else: deleting a thread removes its checkpoints, blobs and writes in
-- the same statement (ON DELETE CASCADE), so nothing is ever orphaned.
CREATE TABLE threads (
    thread_id        TEXT PRIMARY KEY,
    metadata         JSONB NOT NULL DEFAULT '{}',
    status           TEXT NOT NULL DEFAULT 'idle',
    config           JSONB NOT NULL DEFAULT '{}',
    state_values     JSONB,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    state_updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX threads_metadata_idx ON threads USING gin (metadata jsonb_path_ops);
CREATE INDEX threads_created_at_idx ON threads (created_at);

CREATE TABLE checkpoints (
    thread_id            TEXT NOT NULL REFERENCES threads (thread_id) ON DELETE CASCADE,
    checkpoint_ns        TEXT NOT NULL DEFAULT '',
    checkpoint_id        TEXT NOT NULL,
    parent_checkpoint_id TEXT,
    checkpoint           JSONB NOT NULL,
    metadata             JSONB NOT NULL DEFAULT '{}',
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id)
);

CREATE TABLE checkpoint_blobs (
    thread_id     TEXT NOT NULL REFERENCES threads (thread_id) ON DELETE CASCADE,
    checkpoint_ns TEXT NOT NULL DEFAULT '',
    channel       TEXT NOT NULL,
    version       TEXT NOT NULL,
    type          TEXT NOT NULL,
    blob          BYTEA,
    PRIMARY KEY (thread_id, checkpoint_ns, channel, version)
);

CREATE TABLE checkpoint_writes (
    thread_id     TEXT NOT NULL REFERENCES threads (thread_id) ON DELETE CASCADE,
    checkpoint_ns TEXT NOT NULL DEFAULT '',
    checkpoint_id TEXT NOT NULL,
    task_id       TEXT NOT NULL,
    idx           INTEGER NOT NULL,
    channel       TEXT NOT NULL,
    type          TEXT NOT NULL,
    blob          BYTEA NOT NULL,
    task_path     TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id, task_id, idx)
);

-- The long-term store. prefix = namespace labels joined by '.'.
CREATE TABLE store (
    prefix      TEXT NOT NULL,
    key         TEXT NOT NULL,
    value       JSONB NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at  TIMESTAMPTZ,
    ttl_minutes DOUBLE PRECISION,
    PRIMARY KEY (prefix, key)
);
-- namespace-prefix search (LIKE 'a.b.%') whatever the database collation
CREATE INDEX store_prefix_pattern_idx ON store (prefix text_pattern_ops);
-- search results come newest first: walk this index and stop at the limit
CREATE INDEX store_updated_at_idx ON store (updated_at DESC);
-- the sweeper's scan
CREATE INDEX store_expires_at_idx ON store (expires_at) WHERE expires_at IS NOT NULL;
