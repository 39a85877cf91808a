-- A job run waiting for approval ends when nobody approved it in time (FERRY_APPROVAL_EXPIRY),
-- as deployments do.
ALTER TABLE job_runs ADD COLUMN approval_expires_at TIMESTAMP;
