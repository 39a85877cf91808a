-- Each project's last build number, taken by the transaction that stores a build (on
-- PostgreSQL in a short transaction of its own; see store/buildnumbers.go).
CREATE TABLE build_numbers (
    project_id  INTEGER PRIMARY KEY REFERENCES projects(id) ON DELETE CASCADE,
    last_number INTEGER NOT NULL
);
INSERT INTO build_numbers (project_id, last_number)
    SELECT project_id, MAX(number) FROM builds GROUP BY project_id;
