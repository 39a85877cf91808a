package store

import (
	"context"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/jmoiron/sqlx"

	"ferry/migrations"
)

// migrationLockID is the PostgreSQL advisory lock that keeps two processes from migrating at once.
const migrationLockID = 7_301_942_118

// Migration is one numbered schema change.
type Migration struct {
	Version int
	Name    string
	SQL     string
}

// Migrations returns the embedded migrations of the dialect, in order.
func Migrations(d Dialect) ([]Migration, error) {
	dir := string(d)
	entries, err := fs.ReadDir(migrations.FS, dir)
	if err != nil {
		return nil, fmt.Errorf("read migrations: %w", err)
	}
	var out []Migration
	for _, e := range entries {
		name := e.Name()
		num, _, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || !strings.HasSuffix(name, ".sql") {
			return nil, fmt.Errorf("migration file %s: want NNNN_name.sql", name)
		}
		body, err := fs.ReadFile(migrations.FS, path.Join(dir, name))
		if err != nil {
			return nil, err
		}
		out = append(out, Migration{Version: v, Name: name, SQL: string(body)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	for i := 1; i < len(out); i++ {
		if out[i].Version == out[i-1].Version {
			return nil, fmt.Errorf("two migrations numbered %d", out[i].Version)
		}
	}
	return out, nil
}

// Migrate applies every migration not yet recorded, each in its own transaction, and returns how
// many it applied, then reseals secrets of the old format bound to their rows (ResealSecrets).
// On PostgreSQL an advisory lock makes concurrent starts wait for each other,
// so a migration is applied once.
func (db *DB) Migrate(ctx context.Context) (int, error) {
	all, err := Migrations(db.dialect)
	if err != nil {
		return 0, err
	}
	conn, err := db.db.Connx(ctx)
	if err != nil {
		return 0, fmt.Errorf("migrate: %w", err)
	}
	defer conn.Close()
	if db.dialect == Postgres {
		if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock($1)`, migrationLockID); err != nil {
			return 0, fmt.Errorf("migrate: take lock: %w", err)
		}
		defer conn.ExecContext(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, migrationLockID)
	}
	if _, err := conn.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)`); err != nil {
		return 0, fmt.Errorf("migrate: create schema_migrations: %w", err)
	}
	applied := 0
	for _, m := range all {
		done, err := migrationApplied(ctx, conn, db, m.Version)
		if err != nil {
			return applied, err
		}
		if done {
			continue
		}
		if err := db.applyMigration(ctx, conn, m); err != nil {
			return applied, err
		}
		applied++
	}
	if err := db.splitStoredCloneURLs(ctx); err != nil {
		return applied, fmt.Errorf("migrate: %w", err)
	}
	if _, err := db.ResealSecrets(ctx); err != nil {
		return applied, fmt.Errorf("migrate: %w", err)
	}
	return applied, nil
}

func migrationApplied(ctx context.Context, conn *sqlx.Conn, db *DB, version int) (bool, error) {
	var n int
	err := conn.GetContext(ctx, &n, db.q(`SELECT COUNT(*) FROM schema_migrations WHERE version = ?`), version)
	if err != nil {
		return false, fmt.Errorf("migrate: read schema_migrations: %w", err)
	}
	return n > 0, nil
}

func (db *DB) applyMigration(ctx context.Context, conn *sqlx.Conn, m Migration) error {
	tx, err := conn.BeginTxx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migrate %s: %w", m.Name, err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
		return fmt.Errorf("migrate %s: %w", m.Name, err)
	}
	if _, err := tx.ExecContext(ctx, db.q(`INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`),
		m.Version, m.Name, db.now().Format("2006-01-02T15:04:05Z")); err != nil {
		return fmt.Errorf("migrate %s: record: %w", m.Name, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migrate %s: commit: %w", m.Name, err)
	}
	return nil
}

// Pending returns how many migrations are not applied yet; /readyz wants zero.
func (db *DB) Pending(ctx context.Context) (int, error) {
	all, err := Migrations(db.dialect)
	if err != nil {
		return 0, err
	}
	var versions []int
	if err := db.db.SelectContext(ctx, &versions, `SELECT version FROM schema_migrations`); err != nil {
		return len(all), fmt.Errorf("read schema_migrations: %w", err)
	}
	have := map[int]bool{}
	for _, v := range versions {
		have[v] = true
	}
	n := 0
	for _, m := range all {
		if !have[m.Version] {
			n++
		}
	}
	return n, nil
}
