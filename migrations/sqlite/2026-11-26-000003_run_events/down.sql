DROP TABLE run_events;
DROP INDEX runs_unfinished_idx;
