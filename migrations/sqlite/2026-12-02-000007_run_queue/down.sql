DROP INDEX runs_pending_idx;
ALTER TABLE runs DROP COLUMN holder;
ALTER TABLE runs DROP COLUMN attempt;
