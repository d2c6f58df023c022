ALTER TABLE runs DROP COLUMN graph_id;
DROP TABLE assistant_versions;
DROP TABLE assistants;
