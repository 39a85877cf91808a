-- Who may send a build's version to a protected environment is decided from how the build was
-- asked for: "push" (a GitLab webhook) or "api" (a person, requested_by). Builds made before
-- this migration have neither, and so never reach a protected environment by themselves.
ALTER TABLE builds ADD COLUMN source TEXT NOT NULL DEFAULT '';
ALTER TABLE builds ADD COLUMN requested_by INTEGER REFERENCES users(id) ON DELETE SET NULL;

-- GitLab's webhook signing token (Standard Webhooks), encrypted like the webhook secret.
ALTER TABLE projects ADD COLUMN webhook_signing_token_enc TEXT NOT NULL DEFAULT '';
