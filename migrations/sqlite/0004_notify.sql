-- Notification channels (per project, or global defaults with project_id NULL) and the
-- deliveries the notify worker sends: one per outbox entry and matching channel.
-- A channel's lease makes one process at a time the sender for it, so its rate limit is
-- counted in one place; paused_until holds a pause the platform asked for.
CREATE TABLE channels (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id   INTEGER REFERENCES projects(id) ON DELETE CASCADE,
    kind         TEXT NOT NULL,
    url_enc      TEXT NOT NULL,
    secret_enc   TEXT NOT NULL DEFAULT '',
    events       TEXT NOT NULL DEFAULT '[]',
    recipients   TEXT NOT NULL DEFAULT '[]',
    keyword      TEXT NOT NULL DEFAULT '',
    format       TEXT NOT NULL DEFAULT '',
    enabled      BOOLEAN NOT NULL DEFAULT TRUE,
    lease_owner  TEXT NOT NULL DEFAULT '',
    lease_until  TIMESTAMP,
    paused_until TIMESTAMP,
    created_at   TIMESTAMP NOT NULL,
    updated_at   TIMESTAMP NOT NULL
);
CREATE INDEX channels_project ON channels(project_id);

CREATE TABLE deliveries (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    channel_id   INTEGER NOT NULL REFERENCES channels(id) ON DELETE CASCADE,
    project_id   INTEGER REFERENCES projects(id) ON DELETE CASCADE,
    outbox_id    INTEGER,
    event        TEXT NOT NULL,
    job_kind     TEXT NOT NULL DEFAULT '',
    job_id       INTEGER NOT NULL DEFAULT 0,
    status       TEXT NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_try_at  TIMESTAMP NOT NULL,
    last_error   TEXT NOT NULL DEFAULT '',
    title        TEXT NOT NULL DEFAULT '',
    message      TEXT NOT NULL DEFAULT '',
    merged_into  INTEGER,
    merged_count INTEGER NOT NULL DEFAULT 0,
    created_at   TIMESTAMP NOT NULL,
    sent_at      TIMESTAMP,
    UNIQUE (outbox_id, channel_id)
);
CREATE INDEX deliveries_due ON deliveries(channel_id, status, next_try_at);
CREATE INDEX deliveries_sent ON deliveries(channel_id, sent_at);
CREATE INDEX deliveries_project ON deliveries(project_id, id);
