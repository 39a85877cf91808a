-- Change control: approvals, schedules and freezes are gates a deployment passes before it is
-- queued. An environment says how many approvals it needs and when it is frozen (a JSON list of
-- fixed and recurring windows); a deployment records who asked, when it should run, what it
-- waits for, and every decision on it.
ALTER TABLE environments ADD COLUMN approvals_required INTEGER NOT NULL DEFAULT 0;
ALTER TABLE environments ADD COLUMN freezes TEXT NOT NULL DEFAULT '[]';

ALTER TABLE deployments ADD COLUMN requested_by TEXT NOT NULL DEFAULT '';
ALTER TABLE deployments ADD COLUMN requested_by_id INTEGER;
ALTER TABLE deployments ADD COLUMN scheduled_at TIMESTAMP;
ALTER TABLE deployments ADD COLUMN approvals_required INTEGER NOT NULL DEFAULT 0;
ALTER TABLE deployments ADD COLUMN approval_expires_at TIMESTAMP;
ALTER TABLE deployments ADD COLUMN frozen_by TEXT NOT NULL DEFAULT '';
ALTER TABLE deployments ADD COLUMN override_reason TEXT NOT NULL DEFAULT '';

-- One decision per person per deployment.
CREATE TABLE deployment_approvals (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    deployment_id INTEGER NOT NULL REFERENCES deployments(id) ON DELETE CASCADE,
    user_id       INTEGER NOT NULL,
    user_name     TEXT NOT NULL,
    decision      TEXT NOT NULL,
    comment       TEXT NOT NULL DEFAULT '',
    at            TIMESTAMP NOT NULL,
    UNIQUE (deployment_id, user_id)
);
