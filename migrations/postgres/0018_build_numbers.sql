-- Each project's last build number. A push takes its build's number from here in a short
-- transaction of its own, instead of locking the project row until the push is stored, so that
-- pushes to one project are stored side by side rather than one after another (issue 13).
CREATE TABLE build_numbers (
    project_id  BIGINT PRIMARY KEY REFERENCES projects(id) ON DELETE CASCADE,
    last_number INTEGER NOT NULL
);
INSERT INTO build_numbers (project_id, last_number)
    SELECT project_id, MAX(number) FROM builds GROUP BY project_id;
