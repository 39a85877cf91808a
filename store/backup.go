package store

import (
	"context"
	"fmt"
)

// CopyTo writes a consistent copy of an SQLite database to path (which must not exist) while
// ferry runs, with VACUUM INTO. On PostgreSQL it fails with EINVALID: use pg_dump there, which
// copies the artifacts kept in the database too.
func (db *DB) CopyTo(ctx context.Context, path string) error {
	if db.dialect != SQLite {
		return Errorf(EINVALID, "the database is PostgreSQL: back it up with pg_dump (it holds the artifacts too)")
	}
	if _, err := db.db.ExecContext(ctx, `VACUUM INTO ?`, path); err != nil {
		return fmt.Errorf("copy the SQLite database to %s: %w", path, err)
	}
	return nil
}

// MoveArtifacts points every version's artifact path where place says, for a data dir restored
// elsewhere than where it was backed up. It returns how many paths changed.
func (db *DB) MoveArtifacts(ctx context.Context, place func(project, version string) string) (int, error) {
	var rows []struct {
		ID      int64  `db:"id"`
		Project string `db:"project"`
		Name    string `db:"name"`
		Path    string `db:"path"`
	}
	if err := db.db.SelectContext(ctx, &rows, `SELECT v.id, p.name AS project, v.name, v.path
		FROM versions v JOIN projects p ON p.id = v.project_id`); err != nil {
		return 0, fmt.Errorf("list artifact paths: %w", err)
	}
	changed := 0
	for _, r := range rows {
		path := place(r.Project, r.Name)
		if path == r.Path {
			continue
		}
		if _, err := db.db.ExecContext(ctx, db.q(`UPDATE versions SET path = ? WHERE id = ?`), path, r.ID); err != nil {
			return changed, fmt.Errorf("move the artifact path of version %s: %w", r.Name, err)
		}
		changed++
	}
	return changed, nil
}

// ArtifactsInDatabase returns the versions whose artifact the database keeps (so pg_dump backs
// it up), as "<project>/<version>.tar.gz", the artifact file's name under a data dir's
// artifacts/. Kept and removed versions alike: a removed one has no artifact any more.
func (db *DB) ArtifactsInDatabase(ctx context.Context) (map[string]bool, error) {
	var names []string
	if err := db.db.SelectContext(ctx, &names, `SELECT p.name || '/' || v.name || '.tar.gz'
		FROM versions v JOIN projects p ON p.id = v.project_id WHERE v.artifact_id IS NOT NULL`); err != nil {
		return nil, fmt.Errorf("list the artifacts kept in the database: %w", err)
	}
	kept := make(map[string]bool, len(names))
	for _, n := range names {
		kept[n] = true
	}
	return kept, nil
}
