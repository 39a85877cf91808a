-- A counter that read caches key on: every change to projects or to project memberships, by
-- any process and in the same transaction (triggers), bumps "projects", so a process tells with
-- one small read whether a project list it keeps is still what the database holds.
CREATE TABLE generations (
    name TEXT PRIMARY KEY,
    n    INTEGER NOT NULL
);
INSERT INTO generations (name, n) VALUES ('projects', 0);

CREATE TRIGGER projects_generation_insert AFTER INSERT ON projects
BEGIN UPDATE generations SET n = n + 1 WHERE name = 'projects'; END;
CREATE TRIGGER projects_generation_update AFTER UPDATE ON projects
BEGIN UPDATE generations SET n = n + 1 WHERE name = 'projects'; END;
CREATE TRIGGER projects_generation_delete AFTER DELETE ON projects
BEGIN UPDATE generations SET n = n + 1 WHERE name = 'projects'; END;
CREATE TRIGGER project_members_generation_insert AFTER INSERT ON project_members
BEGIN UPDATE generations SET n = n + 1 WHERE name = 'projects'; END;
CREATE TRIGGER project_members_generation_update AFTER UPDATE ON project_members
BEGIN UPDATE generations SET n = n + 1 WHERE name = 'projects'; END;
CREATE TRIGGER project_members_generation_delete AFTER DELETE ON project_members
BEGIN UPDATE generations SET n = n + 1 WHERE name = 'projects'; END;
