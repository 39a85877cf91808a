-- What a host ran before a deployment touched it, recorded before anything is stopped, so a
-- deployment taken over after a crash knows which release to go back to (and with which
-- .ferry.yml: previous_version_id, NULL when the release is not a version ferry knows).
ALTER TABLE host_steps ADD COLUMN previous_recorded BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE host_steps ADD COLUMN previous_release TEXT NOT NULL DEFAULT '';
ALTER TABLE host_steps ADD COLUMN previous_version_id INTEGER;

-- The host key a host offered on a first connection that ferry refused (a host in a protected
-- environment is never trusted on first use); an administrator accepts it by its fingerprint.
ALTER TABLE hosts ADD COLUMN offered_host_key TEXT NOT NULL DEFAULT '';
