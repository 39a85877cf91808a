-- A counter that read caches key on: every change to projects or to project memberships, by
-- any process and in the same transaction (triggers), bumps "projects", so a process tells with
-- one small read whether a project list it keeps is still what the database holds.
CREATE TABLE generations (
    name TEXT PRIMARY KEY,
    n    BIGINT NOT NULL
);
INSERT INTO generations (name, n) VALUES ('projects', 0);

CREATE FUNCTION bump_projects_generation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE generations SET n = n + 1 WHERE name = 'projects';
    RETURN NULL;
END
$$;
CREATE TRIGGER projects_generation AFTER INSERT OR UPDATE OR DELETE ON projects
    FOR EACH STATEMENT EXECUTE FUNCTION bump_projects_generation();
CREATE TRIGGER project_members_generation AFTER INSERT OR UPDATE OR DELETE ON project_members
    FOR EACH STATEMENT EXECUTE FUNCTION bump_projects_generation();
