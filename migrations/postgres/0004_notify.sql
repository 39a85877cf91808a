-- Notification channels (per project, or global defaults with project_id NULL) and the
-- deliveries the notify worker sends: one per outbox entry and matching channel.
-- A channel's lease makes one process at a time the sender for it, so its rate limit is
-- counted in one place; paused_until holds a pause the platform asked for.
CREATE TABLE channels (
    id           BIGSERIAL PRIMARY KEY,
    project_id   BIGINT REFERENCES projects(id) ON DELETE CASCADE,
    kind         TEXT NOT NULL,
    url_enc      TEXT NOT NULL,
    secret_enc   TEXT NOT NULL DEFAULT '',
    events       TEXT NOT NULL DEFAULT '[]',
    recipients   TEXT NOT NULL DEFAULT '[]',
    keyword      TEXT NOT NULL DEFAULT '',
    format       TEXT NOT NULL DEFAULT '',
    enabled      BOOLEAN NOT NULL DEFAULT TRUE,
    lease_owner  TEXT NOT NULL DEFAULT '',
    lease_until  TIMESTAMPTZ,
    paused_until TIMESTAMPTZ,
    created_at   TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL
);
CREATE INDEX channels_project ON channels(project_id);

CREATE TABLE deliveries (
    id           BIGSERIAL PRIMARY KEY,
    channel_id   BIGINT NOT NULL REFERENCES channels(id) ON DELETE CASCADE,
    project_id   BIGINT REFERENCES projects(id) ON DELETE CASCADE,
    outbox_id    BIGINT,
    event        TEXT NOT NULL,
    job_kind     TEXT NOT NULL DEFAULT '',
    job_id       BIGINT NOT NULL DEFAULT 0,
    status       TEXT NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_try_at  TIMESTAMPTZ NOT NULL,
    last_error   TEXT NOT NULL DEFAULT '',
    title        TEXT NOT NULL DEFAULT '',
    message      TEXT NOT NULL DEFAULT '',
    merged_into  BIGINT,
    merged_count INTEGER NOT NULL DEFAULT 0,
    created_at   TIMESTAMPTZ NOT NULL,
    sent_at      TIMESTAMPTZ,
    UNIQUE (outbox_id, channel_id)
);
CREATE INDEX deliveries_due ON deliveries(channel_id, status, next_try_at);
CREATE INDEX deliveries_sent ON deliveries(channel_id, sent_at);
CREATE INDEX deliveries_project ON deliveries(project_id, id);
