-- The outbox tells the notifier what happened to builds and deployments. Rows are written in the
-- same transaction as the change they report; the notifier marks them done.
CREATE TABLE outbox (
    id         BIGSERIAL PRIMARY KEY,
    event      TEXT NOT NULL,
    project_id BIGINT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    job_kind   TEXT NOT NULL,
    job_id     BIGINT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    done_at    TIMESTAMPTZ
);
CREATE INDEX outbox_undone ON outbox(id) WHERE done_at IS NULL;
