-- The task list mnemo's agent manages, one list per user. Task ids are UUIDv7 (time-ordered),
-- so a user's list pages by key on (user_id, task_id).
CREATE TABLE tasks (
    task_id    TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL,
    title      TEXT NOT NULL,
    notes      TEXT NOT NULL DEFAULT '',
    status     TEXT NOT NULL DEFAULT 'todo' CHECK (status IN ('todo', 'doing', 'done')),
    due_date   DATE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX tasks_user_idx ON tasks (user_id, task_id);
