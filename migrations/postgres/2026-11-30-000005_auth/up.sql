-- Every thread has an owner: the user it belongs to (NULL: a service's thread, which no user
-- principal reaches). Kept out of metadata, which clients may patch.
ALTER TABLE threads ADD COLUMN owner TEXT;
-- threads made before authentication existed were their creator's by convention
UPDATE threads SET owner = metadata ->> 'user_id' WHERE jsonb_typeof(metadata -> 'user_id') = 'string';
CREATE INDEX threads_owner_idx ON threads (owner, created_at);

-- API keys, stored only as the SHA-256 of the whole key. `user_id` NULL is a service key.
CREATE TABLE api_keys (
    key_id       TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    user_id      TEXT,
    key_hash     TEXT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_used_at TIMESTAMPTZ,
    expires_at   TIMESTAMPTZ,
    revoked_at   TIMESTAMPTZ
);
CREATE INDEX api_keys_revoked_at_idx ON api_keys (revoked_at) WHERE revoked_at IS NOT NULL;
