-- The outbox tells the notifier what happened to builds and deployments. Rows are written in the
-- same transaction as the change they report; the notifier marks them done.
CREATE TABLE outbox (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    event      TEXT NOT NULL,
    project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    job_kind   TEXT NOT NULL,
    job_id     INTEGER NOT NULL,
    created_at TIMESTAMP NOT NULL,
    done_at    TIMESTAMP
);
CREATE INDEX outbox_undone ON outbox(id) WHERE done_at IS NULL;
