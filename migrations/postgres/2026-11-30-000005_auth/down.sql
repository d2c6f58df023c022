DROP TABLE api_keys;
DROP INDEX threads_owner_idx;
ALTER TABLE threads DROP COLUMN owner;
