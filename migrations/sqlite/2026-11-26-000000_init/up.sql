-- Kept in step with migrations/postgres. JSON is TEXT, timestamps are TIMESTAMP text (UTC).
CREATE TABLE threads (
    thread_id        TEXT PRIMARY KEY NOT NULL,
    metadata         TEXT NOT NULL DEFAULT '{}',
    status           TEXT NOT NULL DEFAULT 'idle',
    config           TEXT NOT NULL DEFAULT '{}',
    state_values     TEXT,
    created_at       TIMESTAMP NOT NULL,
    updated_at       TIMESTAMP NOT NULL,
    state_updated_at TIMESTAMP NOT NULL
);
CREATE INDEX threads_created_at_idx ON threads (created_at);

CREATE TABLE checkpoints (
    thread_id            TEXT NOT NULL REFERENCES threads (thread_id) ON DELETE CASCADE,
    checkpoint_ns        TEXT NOT NULL DEFAULT '',
    checkpoint_id        TEXT NOT NULL,
    parent_checkpoint_id TEXT,
    checkpoint           TEXT NOT NULL,
    metadata             TEXT NOT NULL DEFAULT '{}',
    created_at           TIMESTAMP NOT NULL,
    PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id)
);

CREATE TABLE checkpoint_blobs (
    thread_id     TEXT NOT NULL REFERENCES threads (thread_id) ON DELETE CASCADE,
    checkpoint_ns TEXT NOT NULL DEFAULT '',
    channel       TEXT NOT NULL,
    version       TEXT NOT NULL,
    type          TEXT NOT NULL,
    blob          BLOB,
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
    blob          BLOB NOT NULL,
    task_path     TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id, task_id, idx)
);

CREATE TABLE store (
    prefix      TEXT NOT NULL,
    key         TEXT NOT NULL,
    value       TEXT NOT NULL,
    created_at  TIMESTAMP NOT NULL,
    updated_at  TIMESTAMP NOT NULL,
    expires_at  TIMESTAMP,
    ttl_minutes DOUBLE,
    PRIMARY KEY (prefix, key)
);
CREATE INDEX store_updated_at_idx ON store (updated_at DESC);
CREATE INDEX store_expires_at_idx ON store (expires_at) WHERE expires_at IS NOT NULL;
