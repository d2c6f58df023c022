-- The events of a resumable run's stream, so any replica can replay them (`Last-Event-ID`).
-- `seq` is the SSE id: strictly increasing within a run.
CREATE TABLE run_events (
    run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    seq    BIGINT NOT NULL,
    event  TEXT NOT NULL,
    data   TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
);
-- runs still going, found quickly by the sweeper
CREATE INDEX runs_unfinished_idx ON runs (created_at) WHERE status IN ('pending', 'running');
