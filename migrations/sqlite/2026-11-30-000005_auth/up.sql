-- Kept in step with migrations/postgres.
ALTER TABLE threads ADD COLUMN owner TEXT;
UPDATE threads SET owner = json_extract(metadata, '$.user_id') WHERE json_type(metadata, '$.user_id') = 'text';
CREATE INDEX threads_owner_idx ON threads (owner, created_at);

CREATE TABLE api_keys (
    key_id       TEXT PRIMARY KEY NOT NULL,
    name         TEXT NOT NULL,
    user_id      TEXT,
    key_hash     TEXT NOT NULL,
    created_at   TIMESTAMP NOT NULL,
    last_used_at TIMESTAMP,
    expires_at   TIMESTAMP,
    revoked_at   TIMESTAMP
);
CREATE INDEX api_keys_revoked_at_idx ON api_keys (revoked_at) WHERE revoked_at IS NOT NULL;
