package store

import (
	"context"
	"encoding/json"
	"fmt"
)

type instanceRow struct {
	Instance
	ReleasesJSON string `db:"releases"`
}

// SetInstance records what runs on a host for a project now (insert or update). A zero Since
// is now. EINVALID when the project or host does not exist.
func (db *DB) SetInstance(ctx context.Context, in Instance) error {
	if in.ProjectID == 0 || in.HostID == 0 {
		return Errorf(EINVALID, "instance: project and host are required")
	}
	if in.Releases == nil {
		in.Releases = []string{}
	}
	releases, err := json.Marshal(in.Releases)
	if err != nil {
		return err
	}
	if in.Since.IsZero() {
		in.Since = db.now()
	}
	_, err = db.db.ExecContext(ctx, db.q(`INSERT INTO instances (project_id, host_id, environment_id, version, previous,
		releases, status, deployment_id, since) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (project_id, host_id) DO UPDATE SET environment_id = excluded.environment_id,
		version = excluded.version, previous = excluded.previous, releases = excluded.releases,
		status = excluded.status, deployment_id = excluded.deployment_id, since = excluded.since`),
		in.ProjectID, in.HostID, in.EnvironmentID, in.Version, in.Previous, string(releases), truncate(in.Status, 200),
		in.DeploymentID, in.Since.UTC())
	if isForeignKeyViolation(err) {
		return Errorf(EINVALID, "instance: project %d or host %d does not exist", in.ProjectID, in.HostID)
	}
	if err != nil {
		return fmt.Errorf("record instance of project %d on host %d: %w", in.ProjectID, in.HostID, err)
	}
	return nil
}

// ListInstances lists a project's instances with host and environment names, by host name.
func (db *DB) ListInstances(ctx context.Context, projectID int64) ([]*Instance, error) {
	var rows []*instanceRow
	err := db.db.SelectContext(ctx, &rows, db.q(`SELECT i.project_id, i.host_id, h.name AS host, i.environment_id,
		COALESCE(e.name, '') AS environment, i.version, i.previous, i.releases, i.status, i.deployment_id, i.since
		FROM instances i JOIN hosts h ON h.id = i.host_id LEFT JOIN environments e ON e.id = i.environment_id
		WHERE i.project_id = ? ORDER BY h.name`), projectID)
	if err != nil {
		return nil, fmt.Errorf("list instances: %w", err)
	}
	out := make([]*Instance, 0, len(rows))
	for _, r := range rows {
		in := r.Instance
		if err := json.Unmarshal([]byte(r.ReleasesJSON), &in.Releases); err != nil {
			return nil, fmt.Errorf("instance on host %s: releases: %w", in.Host, err)
		}
		if in.Releases == nil {
			in.Releases = []string{}
		}
		in.Since = in.Since.UTC()
		out = append(out, &in)
	}
	return out, nil
}

// ReleaseVersion returns the project's version named like a release found on a host, also
// when retention removed its artifact (its .ferry.yml is kept with the row); ENOTFOUND when
// the project has no version of that name.
func (db *DB) ReleaseVersion(ctx context.Context, projectID int64, name string) (*Version, error) {
	return db.getVersion(ctx, db.db, "version "+name, `v.project_id = ? AND v.name = ?`, projectID, name)
}
