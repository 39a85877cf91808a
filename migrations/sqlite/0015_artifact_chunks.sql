-- Artifacts kept in the database (see the PostgreSQL migration). ferry on SQLite runs on one
-- machine and keeps artifacts as files in its data dir; the tables exist so that both dialects
-- share one schema and one set of store tests.
CREATE TABLE artifacts (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    sha256     TEXT NOT NULL DEFAULT '',
    size       INTEGER NOT NULL DEFAULT 0,
    chunks     INTEGER NOT NULL DEFAULT 0,
    complete   BOOLEAN NOT NULL DEFAULT FALSE,
    created_at TIMESTAMP NOT NULL
);

CREATE TABLE artifact_chunks (
    artifact_id INTEGER NOT NULL REFERENCES artifacts(id) ON DELETE CASCADE,
    seq         INTEGER NOT NULL,
    data        BLOB NOT NULL,
    PRIMARY KEY (artifact_id, seq)
);

ALTER TABLE versions ADD COLUMN artifact_id INTEGER REFERENCES artifacts(id) ON DELETE SET NULL;
