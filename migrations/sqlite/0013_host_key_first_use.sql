-- Whether a host's pinned key was trusted on first use (pinned by a deployment, checked by
-- nobody) rather than set or accepted by an administrator. Such a key is forgotten when the
-- host joins a protected environment, whose hosts trust only keys an administrator checked.
-- Keys pinned before this migration are taken as checked, as before.
ALTER TABLE hosts ADD COLUMN host_key_first_use BOOLEAN NOT NULL DEFAULT FALSE;
