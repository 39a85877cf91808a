-- Clone URL credentials move out of clone_url into their own encrypted column (existing rows are
-- split by ferry itself after this migration, since the key is not known to SQL), and failed
-- logins are counted in the database, so that every process sees the same counts and a restart
-- forgets none of them.
ALTER TABLE projects ADD COLUMN clone_credentials_enc TEXT NOT NULL DEFAULT '';

-- One row per login attempt, written before the password is checked. ok is set when the password
-- was right; such a row marks the address as one the user logs in from.
CREATE TABLE login_attempts (
    id   INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    addr TEXT NOT NULL,
    at   TIMESTAMP NOT NULL,
    ok   BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX login_attempts_name ON login_attempts (name, at);
CREATE INDEX login_attempts_addr ON login_attempts (addr, at);
