package store

import (
	"context"
	"fmt"
	"regexp"
	"strings"

	"github.com/jmoiron/sqlx"
)

const versionColumns = `v.id, v.project_id, p.name AS project, v.build_id, v.name, v.sha, v.ref, v.sha256, v.size,
	v.path, v.pipeline, v.created_at, v.deleted_at, v.artifact_id`

const versionFrom = ` FROM versions v JOIN projects p ON p.id = v.project_id`

var (
	versionNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$`)
	sha256RE      = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

func (nv *NewVersion) validate() error {
	switch {
	case !versionNameRE.MatchString(nv.Name) || strings.Contains(nv.Name, ".."):
		return Errorf(EINVALID, "version name: %q must be 1-200 ASCII letters, digits, '.', '_' or '-'", truncate(nv.Name, 80))
	case !sha256RE.MatchString(nv.SHA256):
		return Errorf(EINVALID, "version %s: sha256 %q is not 64 lowercase hex digits", nv.Name, truncate(nv.SHA256, 80))
	case nv.Size < 0:
		return Errorf(EINVALID, "version %s: size %d is negative", nv.Name, nv.Size)
	case nv.Path == "":
		return Errorf(EINVALID, "version %s: the artifact path is required", nv.Name)
	}
	return nil
}

func (db *DB) insertVersion(ctx context.Context, tx *sqlx.Tx, projectID, buildID int64, nv *NewVersion) (int64, error) {
	if nv.ArtifactID != nil {
		if err := db.checkArtifact(ctx, tx, projectID, nv); err != nil {
			return 0, err
		}
	}
	var id int64
	err := tx.GetContext(ctx, &id, db.q(`INSERT INTO versions (project_id, build_id, name, sha, ref, sha256, size, path,
		pipeline, created_at, artifact_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`),
		projectID, buildID, nv.Name, nv.SHA, nv.Ref, nv.SHA256, nv.Size, nv.Path, nv.Pipeline, db.now(), nv.ArtifactID)
	if isUniqueViolation(err) {
		return 0, Errorf(ECONFLICT, "version %s already exists in this project", nv.Name)
	}
	return id, err
}

func (db *DB) getVersion(ctx context.Context, q queryer, what, where string, args ...any) (*Version, error) {
	var v Version
	if err := q.GetContext(ctx, &v, db.q(`SELECT `+versionColumns+versionFrom+` WHERE `+where), args...); err != nil {
		return nil, formatError(err, what)
	}
	v.fixTimes()
	return &v, nil
}

func (v *Version) fixTimes() {
	v.CreatedAt = v.CreatedAt.UTC()
	utc(v.DeletedAt)
}

// GetVersion returns a version by id (deleted ones too, with DeletedAt set); ENOTFOUND if
// there is none.
func (db *DB) GetVersion(ctx context.Context, id int64) (*Version, error) {
	return db.getVersion(ctx, db.db, fmt.Sprintf("version %d", id), `v.id = ?`, id)
}

// GetVersionByName returns a project's version by name; ENOTFOUND if there is none or it was
// deleted by retention.
func (db *DB) GetVersionByName(ctx context.Context, projectID int64, name string) (*Version, error) {
	v, err := db.getVersion(ctx, db.db, "version "+name, `v.project_id = ? AND v.name = ?`, projectID, name)
	if err != nil {
		return nil, err
	}
	if v.DeletedAt != nil {
		return nil, Errorf(ENOTFOUND, "version %s was removed by retention", name)
	}
	return v, nil
}

// VersionBySHA returns the newest kept version built from a commit; ENOTFOUND if none.
func (db *DB) VersionBySHA(ctx context.Context, projectID int64, sha string) (*Version, error) {
	return db.getVersion(ctx, db.db, "version of commit "+truncate(sha, 64),
		`v.project_id = ? AND v.sha = ? AND v.deleted_at IS NULL ORDER BY v.id DESC LIMIT 1`, projectID, sha)
}

// ListVersions lists a project's kept versions newest first (with deleted ones when asked).
func (db *DB) ListVersions(ctx context.Context, projectID int64, withDeleted bool) ([]*Version, error) {
	query := `SELECT ` + versionColumns + versionFrom + ` WHERE v.project_id = ?`
	if !withDeleted {
		query += ` AND v.deleted_at IS NULL`
	}
	versions := []*Version{}
	if err := db.db.SelectContext(ctx, &versions, db.q(query+` ORDER BY v.id DESC`), projectID); err != nil {
		return nil, fmt.Errorf("list versions: %w", err)
	}
	for _, v := range versions {
		v.fixTimes()
	}
	return versions, nil
}

// PruneVersions marks deleted all but the newest keep versions of a project, sparing those
// that an instance runs or keeps as previous and those a queued or running deployment needs,
// and returns the ones it marked (oldest first) so the caller removes their files. An artifact
// kept in the database is deleted with its version, in the same transaction. Versions spared
// beyond the newest keep stay in addition to them. EINVALID when keep < 1.
func (db *DB) PruneVersions(ctx context.Context, projectID int64, keep int) ([]*Version, error) {
	if keep < 1 {
		return nil, Errorf(EINVALID, "keep_versions: must be at least 1")
	}
	marked := []*Version{}
	err := db.Transact(ctx, func(tx *sqlx.Tx) error {
		marked = marked[:0]
		var old []*Version
		err := tx.SelectContext(ctx, &old, db.q(`SELECT `+versionColumns+versionFrom+`
			WHERE v.project_id = ? AND v.deleted_at IS NULL
			AND v.name NOT IN (SELECT version FROM instances WHERE project_id = ?)
			AND v.name NOT IN (SELECT previous FROM instances WHERE project_id = ?)
			AND v.id NOT IN (SELECT version_id FROM deployments WHERE project_id = ? AND status IN (?, ?, ?, ?))
			AND v.id NOT IN (SELECT k.id FROM versions k WHERE k.project_id = ? AND k.deleted_at IS NULL ORDER BY k.id DESC LIMIT ?)
			ORDER BY v.id`), projectID, projectID, projectID, projectID, DeploymentQueued, DeploymentRunning,
			DeploymentAwaitingApproval, DeploymentScheduled, projectID, keep)
		if err != nil {
			return err
		}
		now := db.now()
		for _, v := range old {
			if _, err := tx.ExecContext(ctx, db.q(`UPDATE versions SET deleted_at = ? WHERE id = ?`), now, v.ID); err != nil {
				return err
			}
			if v.ArtifactID != nil {
				if _, err := tx.ExecContext(ctx, db.q(`DELETE FROM artifacts WHERE id = ?`), *v.ArtifactID); err != nil {
					return err
				}
				v.ArtifactID = nil
			}
			v.fixTimes()
			v.DeletedAt = &now
			marked = append(marked, v)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("prune versions: %w", err)
	}
	return marked, nil
}
