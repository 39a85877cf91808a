package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/jmoiron/sqlx"
)

// checkSharedHosts refuses, with an EINVALID error naming the other environment, an
// environment e whose hosts also sit in an environment (of any project, e's own included) on
// the other side of protection: a protected environment's host in an unprotected environment
// would let that environment's members run their own start commands on it, walking around the
// production right. Call it inside the transaction that wrote e's row and hosts. On PostgreSQL
// the hosts' rows are locked first, so that two transactions changing environments that share
// a host check one after the other.
func (db *DB) checkSharedHosts(ctx context.Context, tx *sqlx.Tx, e *Environment) error {
	if db.dialect == Postgres {
		if _, err := tx.ExecContext(ctx, db.q(`SELECT id FROM hosts WHERE id IN
			(SELECT host_id FROM environment_hosts WHERE environment_id = ?) ORDER BY id FOR UPDATE`), e.ID); err != nil {
			return fmt.Errorf("lock the hosts of environment %s: %w", e.Name, err)
		}
	}
	var clash struct {
		Host    string `db:"host"`
		Project string `db:"project"`
		Env     string `db:"env"`
	}
	err := tx.GetContext(ctx, &clash, db.q(`SELECT h.name AS host, p.name AS project, o.name AS env
		FROM environment_hosts mine
		JOIN environment_hosts other ON other.host_id = mine.host_id AND other.environment_id <> mine.environment_id
		JOIN environments o ON o.id = other.environment_id
		JOIN projects p ON p.id = o.project_id
		JOIN hosts h ON h.id = mine.host_id
		WHERE mine.environment_id = ? AND o.protected <> ?
		ORDER BY h.name, p.name, o.name LIMIT 1`), e.ID, e.Protected)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("check the hosts of environment %s: %w", e.Name, err)
	}
	if e.Protected {
		return Errorf(EINVALID, "protected: host %s is also in the unprotected environment %s/%s, whose members could run their own commands on it; "+
			"protect %s/%s too, or take the host out of one of them", clash.Host, clash.Project, clash.Env, clash.Project, clash.Env)
	}
	return Errorf(EINVALID, "hosts: host %s is in the protected environment %s/%s; a host of a protected environment cannot also be in an unprotected one, "+
		"whose members could run their own commands on it. Protect this environment too, or use another host", clash.Host, clash.Project, clash.Env)
}

// forgetFirstUseKeys forgets the host keys that were trusted on first use (pinned by a
// deployment, checked by nobody) of the hosts of e when e is protected: a protected
// environment's hosts trust only keys an administrator set or accepted, and a host that was
// first reached from an unprotected environment must not bring its unchecked key along. The
// next connection is refused and keeps the offered key for an administrator to accept. Call it
// inside the transaction that wrote e's row and hosts.
func (db *DB) forgetFirstUseKeys(ctx context.Context, tx *sqlx.Tx, e *Environment) error {
	if !e.Protected {
		return nil
	}
	var names []string
	if err := tx.SelectContext(ctx, &names, db.q(`SELECT name FROM hosts WHERE host_key_first_use AND host_key <> ''
		AND id IN (SELECT host_id FROM environment_hosts WHERE environment_id = ?) ORDER BY name`), e.ID); err != nil {
		return fmt.Errorf("check the host keys of environment %s: %w", e.Name, err)
	}
	for _, name := range names {
		if _, err := tx.ExecContext(ctx, db.q(`UPDATE hosts SET host_key = '', host_key_first_use = FALSE, updated_at = ? WHERE name = ?`), db.now(), name); err != nil {
			return err
		}
		if err := db.audit(ctx, tx, "host.unpin_key", "host/"+name, fmt.Sprintf("the key trusted on first use is not trusted in the protected environment %s; accept the key the host offers next", e.Name)); err != nil {
			return err
		}
	}
	return nil
}
