-- Webhook events, builds, versions, deployments with their host steps, instances and log lines.
-- The builds and deployments tables are the job queue: workers claim rows with a lease.
CREATE TABLE events (
    id           BIGSERIAL PRIMARY KEY,
    project_id   BIGINT REFERENCES projects(id) ON DELETE CASCADE,
    delivery_key TEXT UNIQUE,
    kind         TEXT NOT NULL,
    ref          TEXT NOT NULL DEFAULT '',
    sha          TEXT NOT NULL DEFAULT '',
    author       TEXT NOT NULL DEFAULT '',
    message      TEXT NOT NULL DEFAULT '',
    decision     TEXT NOT NULL,
    reason       TEXT NOT NULL DEFAULT '',
    build_id     BIGINT,
    received_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX events_project ON events(project_id, id);

CREATE TABLE builds (
    id             BIGSERIAL PRIMARY KEY,
    project_id     BIGINT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
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
    version_id     BIGINT,
    error          TEXT NOT NULL DEFAULT '',
    queued_at      TIMESTAMPTZ NOT NULL,
    started_at     TIMESTAMPTZ,
    finished_at    TIMESTAMPTZ,
    lease_owner    TEXT NOT NULL DEFAULT '',
    lease_until    TIMESTAMPTZ,
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
    id         BIGSERIAL PRIMARY KEY,
    project_id BIGINT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    build_id   BIGINT NOT NULL,
    name       TEXT NOT NULL,
    sha        TEXT NOT NULL,
    ref        TEXT NOT NULL DEFAULT '',
    sha256     TEXT NOT NULL,
    size       BIGINT NOT NULL,
    path       TEXT NOT NULL,
    pipeline   TEXT NOT NULL DEFAULT '',
    created_at TIMESTAMPTZ NOT NULL,
    deleted_at TIMESTAMPTZ,
    UNIQUE (project_id, name)
);
CREATE INDEX versions_sha ON versions(project_id, sha);

CREATE TABLE deployments (
    id             BIGSERIAL PRIMARY KEY,
    project_id     BIGINT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    environment_id BIGINT NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
    version_id     BIGINT NOT NULL REFERENCES versions(id),
    status         TEXT NOT NULL,
    strategy       TEXT NOT NULL DEFAULT '{}',
    triggered_by   TEXT NOT NULL DEFAULT '',
    build_id       BIGINT,
    error          TEXT NOT NULL DEFAULT '',
    queued_at      TIMESTAMPTZ NOT NULL,
    started_at     TIMESTAMPTZ,
    finished_at    TIMESTAMPTZ,
    lease_owner    TEXT NOT NULL DEFAULT '',
    lease_until    TIMESTAMPTZ,
    attempts       INTEGER NOT NULL DEFAULT 0,
    cancel_requested BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX deployments_status ON deployments(status, id);
CREATE INDEX deployments_project ON deployments(project_id, id);
CREATE INDEX deployments_queue ON deployments(environment_id, status, id);
-- One running deployment per environment.
CREATE UNIQUE INDEX deployments_one_running ON deployments(environment_id) WHERE status = 'running';

CREATE TABLE host_steps (
    id            BIGSERIAL PRIMARY KEY,
    deployment_id BIGINT NOT NULL REFERENCES deployments(id) ON DELETE CASCADE,
    host_id       BIGINT NOT NULL,
    host_name     TEXT NOT NULL,
    position      INTEGER NOT NULL,
    status        TEXT NOT NULL,
    step          TEXT NOT NULL DEFAULT '',
    bytes_sent    BIGINT NOT NULL DEFAULT 0,
    bytes_total   BIGINT NOT NULL DEFAULT 0,
    error         TEXT NOT NULL DEFAULT '',
    started_at    TIMESTAMPTZ,
    finished_at   TIMESTAMPTZ,
    UNIQUE (deployment_id, host_id)
);

CREATE TABLE instances (
    project_id     BIGINT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    host_id        BIGINT NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
    environment_id BIGINT,
    version        TEXT NOT NULL DEFAULT '',
    previous       TEXT NOT NULL DEFAULT '',
    releases       TEXT NOT NULL DEFAULT '[]',
    status         TEXT NOT NULL DEFAULT '',
    deployment_id  BIGINT,
    since          TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (project_id, host_id)
);

CREATE TABLE log_lines (
    job_kind TEXT NOT NULL,
    job_id   BIGINT NOT NULL,
    seq      BIGINT NOT NULL,
    at       TIMESTAMPTZ NOT NULL,
    stream   TEXT NOT NULL,
    host     TEXT NOT NULL DEFAULT '',
    text     TEXT NOT NULL,
    PRIMARY KEY (job_kind, job_id, seq)
);
CREATE INDEX log_lines_at ON log_lines(at);
