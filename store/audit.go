package store

import (
	"context"

	"github.com/jmoiron/sqlx"
)

// AuditFilter selects audit entries, newest first.
type AuditFilter struct {
	Limit    int    // default 100, at most 1000
	BeforeID int64  // only entries older than this id, for paging
	Target   string // only entries about this target, such as "project/orders"
}

// ListAudit returns audit entries matching f, newest first.
func (db *DB) ListAudit(ctx context.Context, f AuditFilter) ([]*AuditEntry, error) {
	if f.Limit <= 0 || f.Limit > 1000 {
		f.Limit = 100
	}
	query := `SELECT id, at, user_id, user_name, action, target, detail, remote_addr FROM audit_entries WHERE 1=1`
	var args []any
	if f.BeforeID > 0 {
		query += ` AND id < ?`
		args = append(args, f.BeforeID)
	}
	if f.Target != "" {
		query += ` AND target = ?`
		args = append(args, f.Target)
	}
	query += ` ORDER BY id DESC LIMIT ?`
	args = append(args, f.Limit)
	entries := []*AuditEntry{}
	if err := db.db.SelectContext(ctx, &entries, db.q(query), args...); err != nil {
		return nil, formatError(err, "audit entry")
	}
	for _, e := range entries {
		e.At = e.At.UTC()
	}
	return entries, nil
}

// RecordAudit writes an audit entry for an event that changes no row, such as a login.
func (db *DB) RecordAudit(ctx context.Context, action, target, detail string) error {
	return db.Transact(ctx, func(tx *sqlx.Tx) error {
		return db.audit(ctx, tx, action, target, detail)
	})
}

const insertAuditSQL = `INSERT INTO audit_entries (at, user_id, user_name, action, target, detail, remote_addr)
	VALUES (?, ?, ?, ?, ?, ?, ?)`

// audit records, inside tx, that the actor of ctx did action to target.
func (db *DB) audit(ctx context.Context, tx *sqlx.Tx, action, target, detail string) error {
	a := ActorFrom(ctx)
	var uid *int64
	if a.UserID != 0 {
		uid = &a.UserID
	}
	insert, err := db.stmt(ctx, db.db, tx, insertAuditSQL)
	if err != nil {
		return err
	}
	_, err = insert.ExecContext(ctx, db.now(), uid, a.Name, action, target, truncate(detail, 2000), a.RemoteAddr)
	return err
}
