-- Variables at project, environment and host level (the narrower wins at deploy), rendered
-- into config templates and passed to hooks. Exactly one owner column is set. A secret's value
-- is sealed in value_enc (bound to variables/value_enc/<id>) and value stays empty.
CREATE TABLE variables (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id     INTEGER REFERENCES projects(id) ON DELETE CASCADE,
    environment_id INTEGER REFERENCES environments(id) ON DELETE CASCADE,
    host_id        INTEGER REFERENCES hosts(id) ON DELETE CASCADE,
    name           TEXT NOT NULL,
    value          TEXT NOT NULL DEFAULT '',
    value_enc      TEXT NOT NULL DEFAULT '',
    secret         BOOLEAN NOT NULL DEFAULT FALSE,
    updated_at     TIMESTAMP NOT NULL,
    CHECK ((CASE WHEN project_id IS NULL THEN 0 ELSE 1 END) + (CASE WHEN environment_id IS NULL THEN 0 ELSE 1 END)
         + (CASE WHEN host_id IS NULL THEN 0 ELSE 1 END) = 1)
);
CREATE UNIQUE INDEX variables_project ON variables(project_id, name) WHERE project_id IS NOT NULL;
CREATE UNIQUE INDEX variables_environment ON variables(environment_id, name) WHERE environment_id IS NOT NULL;
CREATE UNIQUE INDEX variables_host ON variables(host_id, name) WHERE host_id IS NOT NULL;
