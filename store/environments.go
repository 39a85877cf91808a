package store

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jmoiron/sqlx"
)

// EnvironmentUpdate holds the fields of an environment to change; nil fields stay as they are.
type EnvironmentUpdate struct {
	Name      *string
	Hosts     *[]string
	Protected *bool
	Strategy  *Strategy
	// ApprovalsRequired and Freezes are the change-control gates (see gates.go).
	ApprovalsRequired *int
	Freezes           *[]Freeze
}

type environmentRow struct {
	Environment
	StrategyJSON string `db:"strategy"`
	FreezesJSON  string `db:"freezes"`
}

const environmentColumns = `id, project_id, name, protected, strategy, approvals_required, freezes, created_at, updated_at`

// freezesJSON encodes an environment's freezes for its row.
func freezesJSON(fs []Freeze) string {
	if fs == nil {
		fs = []Freeze{}
	}
	b, _ := json.Marshal(fs)
	return string(b)
}

// CreateEnvironment stores e, with its hosts named in e.Hosts, for the project e.ProjectID.
// A host name that does not exist is EINVALID.
func (db *DB) CreateEnvironment(ctx context.Context, e *Environment) error {
	if e.Hosts == nil {
		e.Hosts = []string{}
	}
	if e.Freezes == nil {
		e.Freezes = []Freeze{}
	}
	if err := e.Validate(); err != nil {
		return err
	}
	strategy, err := json.Marshal(e.Strategy)
	if err != nil {
		return err
	}
	return db.Transact(ctx, func(tx *sqlx.Tx) error {
		p, err := db.getProject(ctx, tx, `id = ?`, e.ProjectID, "project")
		if err != nil {
			return err
		}
		e.CreatedAt, e.UpdatedAt = db.now(), db.now()
		err = tx.GetContext(ctx, &e.ID, db.q(`INSERT INTO environments (project_id, name, protected, strategy, approvals_required, freezes,
			created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`), e.ProjectID, e.Name, e.Protected, string(strategy),
			e.ApprovalsRequired, freezesJSON(e.Freezes), e.CreatedAt, e.UpdatedAt)
		if isUniqueViolation(err) {
			return Errorf(ECONFLICT, "name: project %s already has an environment named %q", p.Name, e.Name)
		}
		if err != nil {
			return err
		}
		if err := db.setEnvironmentHosts(ctx, tx, e.ID, e.Hosts); err != nil {
			return err
		}
		if err := db.checkSharedHosts(ctx, tx, e); err != nil {
			return err
		}
		if err := db.forgetFirstUseKeys(ctx, tx, e); err != nil {
			return err
		}
		return db.audit(ctx, tx, "environment.create", envTarget(p.Name, e.Name), environmentDetail(e))
	})
}

func envTarget(project, env string) string { return "project/" + project + "/environment/" + env }

func environmentDetail(e *Environment) string {
	s := fmt.Sprintf("hosts %v", e.Hosts)
	if e.Protected {
		s += ", protected"
	}
	if e.ApprovalsRequired > 0 {
		s += fmt.Sprintf(", %d approvals required", e.ApprovalsRequired)
	}
	if len(e.Freezes) > 0 {
		s += ", freezes " + freezesJSON(e.Freezes)
	}
	return s
}

func (db *DB) setEnvironmentHosts(ctx context.Context, tx *sqlx.Tx, envID int64, hosts []string) error {
	if _, err := tx.ExecContext(ctx, db.q(`DELETE FROM environment_hosts WHERE environment_id = ?`), envID); err != nil {
		return err
	}
	for i, name := range hosts {
		var hostID int64
		err := tx.GetContext(ctx, &hostID, db.q(`SELECT id FROM hosts WHERE name = ?`), name)
		if IsNotFound(formatError(err, "host")) {
			return Errorf(EINVALID, "hosts: no host named %q", name)
		}
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, db.q(`INSERT INTO environment_hosts (environment_id, host_id, position) VALUES (?, ?, ?)`), envID, hostID, i); err != nil {
			return err
		}
	}
	return nil
}

// GetEnvironment returns the project's environment called name, or ENOTFOUND.
func (db *DB) GetEnvironment(ctx context.Context, projectID int64, name string) (*Environment, error) {
	return db.getEnvironment(ctx, db.db, projectID, name)
}

func (db *DB) getEnvironment(ctx context.Context, q queryer, projectID int64, name string) (*Environment, error) {
	var row environmentRow
	err := q.GetContext(ctx, &row, db.q(`SELECT `+environmentColumns+` FROM environments WHERE project_id = ? AND name = ?`), projectID, name)
	if err != nil {
		return nil, formatError(err, "environment "+name)
	}
	return db.openEnvironment(ctx, q, &row)
}

func (db *DB) openEnvironment(ctx context.Context, q queryer, row *environmentRow) (*Environment, error) {
	e := row.Environment
	if err := json.Unmarshal([]byte(row.StrategyJSON), &e.Strategy); err != nil {
		return nil, fmt.Errorf("environment %s strategy: %w", e.Name, err)
	}
	e.Freezes = []Freeze{}
	if row.FreezesJSON != "" {
		if err := json.Unmarshal([]byte(row.FreezesJSON), &e.Freezes); err != nil {
			return nil, fmt.Errorf("environment %s freezes: %w", e.Name, err)
		}
	}
	e.Hosts = []string{}
	if err := q.SelectContext(ctx, &e.Hosts, db.q(`SELECT h.name FROM environment_hosts eh JOIN hosts h ON h.id = eh.host_id
		WHERE eh.environment_id = ? ORDER BY eh.position`), e.ID); err != nil {
		return nil, err
	}
	e.CreatedAt, e.UpdatedAt = e.CreatedAt.UTC(), e.UpdatedAt.UTC()
	return &e, nil
}

// ListEnvironments returns the project's environments by name.
func (db *DB) ListEnvironments(ctx context.Context, projectID int64) ([]*Environment, error) {
	var rows []*environmentRow
	if err := db.db.SelectContext(ctx, &rows, db.q(`SELECT `+environmentColumns+` FROM environments WHERE project_id = ? ORDER BY name`), projectID); err != nil {
		return nil, err
	}
	out := make([]*Environment, 0, len(rows))
	for _, r := range rows {
		e, err := db.openEnvironment(ctx, db.db, r)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// UpdateEnvironment changes the given fields of the project's environment called name.
func (db *DB) UpdateEnvironment(ctx context.Context, projectID int64, name string, upd EnvironmentUpdate) (*Environment, error) {
	var out *Environment
	err := db.Transact(ctx, func(tx *sqlx.Tx) error {
		p, err := db.getProject(ctx, tx, `id = ?`, projectID, "project")
		if err != nil {
			return err
		}
		e, err := db.getEnvironment(ctx, tx, projectID, name)
		if err != nil {
			return err
		}
		if upd.Name != nil {
			e.Name = *upd.Name
		}
		if upd.Hosts != nil {
			e.Hosts = append([]string{}, *upd.Hosts...)
		}
		if upd.Protected != nil {
			e.Protected = *upd.Protected
		}
		if upd.Strategy != nil {
			e.Strategy = *upd.Strategy
		}
		if upd.ApprovalsRequired != nil {
			e.ApprovalsRequired = *upd.ApprovalsRequired
		}
		if upd.Freezes != nil {
			e.Freezes = append([]Freeze{}, *upd.Freezes...)
		}
		if err := e.Validate(); err != nil {
			return err
		}
		strategy, _ := json.Marshal(e.Strategy)
		e.UpdatedAt = db.now()
		_, err = tx.ExecContext(ctx, db.q(`UPDATE environments SET name = ?, protected = ?, strategy = ?, approvals_required = ?,
			freezes = ?, updated_at = ? WHERE id = ?`), e.Name, e.Protected, string(strategy), e.ApprovalsRequired, freezesJSON(e.Freezes),
			e.UpdatedAt, e.ID)
		if isUniqueViolation(err) {
			return Errorf(ECONFLICT, "name: project %s already has an environment named %q", p.Name, e.Name)
		}
		if err != nil {
			return err
		}
		if upd.Hosts != nil {
			if err := db.setEnvironmentHosts(ctx, tx, e.ID, e.Hosts); err != nil {
				return err
			}
		}
		if err := db.checkSharedHosts(ctx, tx, e); err != nil {
			return err
		}
		if err := db.forgetFirstUseKeys(ctx, tx, e); err != nil {
			return err
		}
		out = e
		return db.audit(ctx, tx, "environment.update", envTarget(p.Name, e.Name), environmentDetail(e))
	})
	return out, err
}

// DeleteEnvironment removes the project's environment called name.
func (db *DB) DeleteEnvironment(ctx context.Context, projectID int64, name string) error {
	return db.Transact(ctx, func(tx *sqlx.Tx) error {
		p, err := db.getProject(ctx, tx, `id = ?`, projectID, "project")
		if err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, db.q(`DELETE FROM environments WHERE project_id = ? AND name = ?`), projectID, name)
		if err := mustAffect(res, err, "environment "+name); err != nil {
			return err
		}
		return db.audit(ctx, tx, "environment.delete", envTarget(p.Name, name), "")
	})
}
