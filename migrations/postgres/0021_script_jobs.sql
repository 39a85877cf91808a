-- Jobs (BlueKing's "everything is a job"): execution accounts, versioned scripts, jobs of
-- ordered steps, their runs with per-step and per-host status, schedules and host labels.
-- A run is a job queue row like builds and deployments (claimed with a lease); its log lines
-- are log_lines of job_kind 'run'.

CREATE TABLE exec_accounts (
    id              BIGSERIAL PRIMARY KEY,
    project_id      BIGINT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    name            TEXT NOT NULL,
    username        TEXT NOT NULL,
    private_key_enc TEXT NOT NULL DEFAULT '',
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL,
    UNIQUE (project_id, name)
);

CREATE TABLE scripts (
    id         BIGSERIAL PRIMARY KEY,
    project_id BIGINT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    latest     INTEGER NOT NULL DEFAULT 0,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    UNIQUE (project_id, name)
);

CREATE TABLE script_versions (
    script_id  BIGINT NOT NULL REFERENCES scripts(id) ON DELETE CASCADE,
    version    INTEGER NOT NULL,
    language   TEXT NOT NULL,
    body       TEXT NOT NULL,
    params     TEXT NOT NULL DEFAULT '[]',
    created_by TEXT NOT NULL DEFAULT '',
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (script_id, version)
);

CREATE TABLE script_jobs (
    id                   BIGSERIAL PRIMARY KEY,
    project_id           BIGINT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    name                 TEXT NOT NULL,
    description          TEXT NOT NULL DEFAULT '',
    params               TEXT NOT NULL DEFAULT '[]',
    steps                TEXT NOT NULL DEFAULT '[]',
    trigger_token_hash   TEXT NOT NULL DEFAULT '',
    trigger_token_prefix TEXT NOT NULL DEFAULT '',
    trigger_token_by     BIGINT REFERENCES users(id) ON DELETE SET NULL,
    created_at           TIMESTAMPTZ NOT NULL,
    updated_at           TIMESTAMPTZ NOT NULL,
    UNIQUE (project_id, name)
);
CREATE INDEX script_jobs_trigger ON script_jobs(trigger_token_hash);

CREATE TABLE job_files (
    id         BIGSERIAL PRIMARY KEY,
    project_id BIGINT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    sha256     TEXT NOT NULL,
    size       BIGINT NOT NULL,
    content    BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    UNIQUE (project_id, name)
);

CREATE TABLE host_labels (
    host_id BIGINT NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
    label   TEXT NOT NULL,
    PRIMARY KEY (host_id, label)
);
CREATE INDEX host_labels_label ON host_labels(label);

CREATE TABLE job_runs (
    id               BIGSERIAL PRIMARY KEY,
    job_id           BIGINT NOT NULL REFERENCES script_jobs(id) ON DELETE CASCADE,
    project_id       BIGINT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    job_name         TEXT NOT NULL,
    status           TEXT NOT NULL,
    params           TEXT NOT NULL DEFAULT '{}',
    plan             TEXT NOT NULL DEFAULT '[]',
    next_step        INTEGER NOT NULL DEFAULT 0,
    triggered_by     TEXT NOT NULL DEFAULT '',
    schedule_id      BIGINT,
    error            TEXT NOT NULL DEFAULT '',
    queued_at        TIMESTAMPTZ NOT NULL,
    started_at       TIMESTAMPTZ,
    finished_at      TIMESTAMPTZ,
    attempts         INTEGER NOT NULL DEFAULT 0,
    lease_owner      TEXT NOT NULL DEFAULT '',
    lease_until      TIMESTAMPTZ,
    cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
    -- Change control: a run reaching an environment that needs approvals waits for them
    -- (status awaiting_approval) from people other than the one it acts for.
    approvals_required INTEGER NOT NULL DEFAULT 0,
    requested_by_id    BIGINT REFERENCES users(id) ON DELETE SET NULL
);
CREATE INDEX job_runs_status ON job_runs(status, id);
CREATE INDEX job_runs_job ON job_runs(job_id, id);

CREATE TABLE job_run_steps (
    run_id      BIGINT NOT NULL REFERENCES job_runs(id) ON DELETE CASCADE,
    position    INTEGER NOT NULL,
    name        TEXT NOT NULL,
    kind        TEXT NOT NULL,
    status      TEXT NOT NULL,
    error       TEXT NOT NULL DEFAULT '',
    started_at  TIMESTAMPTZ,
    finished_at TIMESTAMPTZ,
    PRIMARY KEY (run_id, position)
);

CREATE TABLE job_run_hosts (
    run_id      BIGINT NOT NULL REFERENCES job_runs(id) ON DELETE CASCADE,
    position    INTEGER NOT NULL,
    host_id     BIGINT NOT NULL,
    host_name   TEXT NOT NULL,
    host_order  INTEGER NOT NULL,
    status      TEXT NOT NULL,
    exit_code   INTEGER,
    error       TEXT NOT NULL DEFAULT '',
    started_at  TIMESTAMPTZ,
    finished_at TIMESTAMPTZ,
    PRIMARY KEY (run_id, position, host_id)
);

CREATE TABLE job_schedules (
    id          BIGSERIAL PRIMARY KEY,
    project_id  BIGINT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    job_id      BIGINT NOT NULL REFERENCES script_jobs(id) ON DELETE CASCADE,
    cron        TEXT NOT NULL,
    time_zone   TEXT NOT NULL,
    params      TEXT NOT NULL DEFAULT '{}',
    enabled     BOOLEAN NOT NULL DEFAULT TRUE,
    next_run_at TIMESTAMPTZ,
    last_run_id BIGINT,
    created_by  TEXT NOT NULL DEFAULT '',
    created_by_id BIGINT REFERENCES users(id) ON DELETE SET NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX job_schedules_due ON job_schedules(enabled, next_run_at);

CREATE TABLE job_run_approvals (
    run_id    BIGINT NOT NULL REFERENCES job_runs(id) ON DELETE CASCADE,
    user_id   BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    user_name TEXT NOT NULL,
    decision  TEXT NOT NULL,
    comment   TEXT NOT NULL DEFAULT '',
    at        TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (run_id, user_id)
);
