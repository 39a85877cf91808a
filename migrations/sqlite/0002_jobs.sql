-- Webhook events, builds, versions, deployments with their host steps, instances and log lines.
-- The builds and deployments tables are the job queue: workers claim rows with a lease.
CREATE TABLE events (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id   INTEGER REFERENCES projects(id) ON DELETE CASCADE,
    delivery_key TEXT UNIQUE,
    kind         TEXT NOT NULL,
    ref          TEXT NOT NULL DEFAULT '',
    sha          TEXT NOT NULL DEFAULT '',
    author       TEXT NOT NULL DEFAULT '',
    message      TEXT NOT NULL DEFAULT '',
    decision     TEXT NOT NULL,
    reason       TEXT NOT NULL DEFAULT '',
    build_id     INTEGER,
    received_at  TIMESTAMP NOT NULL
);
CREATE INDEX events_project ON events(project_id, id);

CREATE TABLE builds (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id     INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    number         INTEGER NOT NULL,
    status         TEXT NOT NULL,
    ref            TEXT NOT NULL DEFAULT '',
    branch         TEXT NOT NULL DEFAULT '',
    tag            TEXT NOT NULL DEFAULT '',
    sha            TEXT NOT NULL DEFAULT '',
    commit_title   TEXT NOT NULL DEFAULT '',
    commit_author  TEXT NOT NULL DEFAULT '',
    commit_url     TEXT NOT NULL DEFAULT '',
    triggered_by   TEXT NOT NULL DEFAULT '',
    version_id     INTEGER,
    error          TEXT NOT NULL DEFAULT '',
    queued_at      TIMESTAMP NOT NULL,
    started_at     TIMESTAMP,
    finished_at    TIMESTAMP,
    lease_owner    TEXT NOT NULL DEFAULT '',
    lease_until    TIMESTAMP,
    attempts       INTEGER NOT NULL DEFAULT 0,
    cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
    UNIQUE (project_id, number)
);
CREATE INDEX builds_status ON builds(status, id);
-- The claim looks up the waiting and running builds of one project.
CREATE INDEX builds_queue ON builds(project_id, status, id);
-- One running build per project: a second claim for the same project fails on this index.
CREATE UNIQUE INDEX builds_one_running ON builds(project_id) WHERE status = 'running';

CREATE TABLE versions (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    build_id   INTEGER NOT NULL,
    name       TEXT NOT NULL,
    sha        TEXT NOT NULL,
    ref        TEXT NOT NULL DEFAULT '',
    sha256     TEXT NOT NULL,
    size       INTEGER NOT NULL,
    path       TEXT NOT NULL,
    pipeline   TEXT NOT NULL DEFAULT '',
    created_at TIMESTAMP NOT NULL,
    deleted_at TIMESTAMP,
    UNIQUE (project_id, name)
);
CREATE INDEX versions_sha ON versions(project_id, sha);

CREATE TABLE deployments (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id     INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    environment_id INTEGER NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
    version_id     INTEGER NOT NULL REFERENCES versions(id),
    status         TEXT NOT NULL,
    strategy       TEXT NOT NULL DEFAULT '{}',
    triggered_by   TEXT NOT NULL DEFAULT '',
    build_id       INTEGER,
    error          TEXT NOT NULL DEFAULT '',
    queued_at      TIMESTAMP NOT NULL,
    started_at     TIMESTAMP,
    finished_at    TIMESTAMP,
    lease_owner    TEXT NOT NULL DEFAULT '',
    lease_until    TIMESTAMP,
    attempts       INTEGER NOT NULL DEFAULT 0,
    cancel_requested BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX deployments_status ON deployments(status, id);
CREATE INDEX deployments_project ON deployments(project_id, id);
CREATE INDEX deployments_queue ON deployments(environment_id, status, id);
-- One running deployment per environment.
CREATE UNIQUE INDEX deployments_one_running ON deployments(environment_id) WHERE status = 'running';

CREATE TABLE host_steps (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    deployment_id INTEGER NOT NULL REFERENCES deployments(id) ON DELETE CASCADE,
    host_id       INTEGER NOT NULL,
    host_name     TEXT NOT NULL,
    position      INTEGER NOT NULL,
    status        TEXT NOT NULL,
    step          TEXT NOT NULL DEFAULT '',
    bytes_sent    INTEGER NOT NULL DEFAULT 0,
    bytes_total   INTEGER NOT NULL DEFAULT 0,
    error         TEXT NOT NULL DEFAULT '',
    started_at    TIMESTAMP,
    finished_at   TIMESTAMP,
    UNIQUE (deployment_id, host_id)
);

CREATE TABLE instances (
    project_id     INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    host_id        INTEGER NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
    environment_id INTEGER,
    version        TEXT NOT NULL DEFAULT '',
    previous       TEXT NOT NULL DEFAULT '',
    releases       TEXT NOT NULL DEFAULT '[]',
    status         TEXT NOT NULL DEFAULT '',
    deployment_id  INTEGER,
    since          TIMESTAMP NOT NULL,
    PRIMARY KEY (project_id, host_id)
);

CREATE TABLE log_lines (
    job_kind TEXT NOT NULL,
    job_id   INTEGER NOT NULL,
    seq      INTEGER NOT NULL,
    at       TIMESTAMP NOT NULL,
    stream   TEXT NOT NULL,
    host     TEXT NOT NULL DEFAULT '',
    text     TEXT NOT NULL,
    PRIMARY KEY (job_kind, job_id, seq)
);
CREATE INDEX log_lines_at ON log_lines(at);
