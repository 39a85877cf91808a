-- Artifacts kept in the database, so that ferry processes on several machines, each with its
-- own data dir, can all deploy and download every version. An artifact is written chunk by
-- chunk while the build packs it and marked complete (with its size and sha256) at the end; a
-- version points at its artifact. Retention deletes the artifact (its chunks go with it); an
-- artifact no version took (its build died) is swept after a day.
CREATE TABLE artifacts (
    id         BIGSERIAL PRIMARY KEY,
    project_id BIGINT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    sha256     TEXT NOT NULL DEFAULT '',
    size       BIGINT NOT NULL DEFAULT 0,
    chunks     INTEGER NOT NULL DEFAULT 0,
    complete   BOOLEAN NOT NULL DEFAULT FALSE,
    created_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE artifact_chunks (
    artifact_id BIGINT NOT NULL REFERENCES artifacts(id) ON DELETE CASCADE,
    seq         INTEGER NOT NULL,
    data        BYTEA NOT NULL,
    PRIMARY KEY (artifact_id, seq)
);
-- A tar.gz does not compress again: store the chunks out of line without trying.
ALTER TABLE artifact_chunks ALTER COLUMN data SET STORAGE EXTERNAL;

ALTER TABLE versions ADD COLUMN artifact_id BIGINT REFERENCES artifacts(id) ON DELETE SET NULL;
