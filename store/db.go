// Package store holds ferry's domain types and all of its SQL. It runs on PostgreSQL (lib/pq)
// and on an embedded SQLite file (a pure-Go driver), with the same methods on both.
package store

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
	_ "github.com/lib/pq"  // PostgreSQL driver "postgres"
	_ "modernc.org/sqlite" // SQLite driver "sqlite", pure Go
)

// Dialect names the SQL database behind a DB.
type Dialect string

// The dialects ferry runs on.
const (
	Postgres Dialect = "postgres"
	SQLite   Dialect = "sqlite"
)

// DB is ferry's store: a connection pool plus the cipher for secrets at rest.
type DB struct {
	db      *sqlx.DB
	dialect Dialect
	cipher  *Cipher
	// Now returns the current time; tests replace it.
	Now func() time.Time
	// PasswordCost is the bcrypt cost for new password hashes.
	PasswordCost int
	// ApprovalExpiry is how long a deployment waits for approval; 0 means DefaultApprovalExpiry.
	ApprovalExpiry time.Duration
	// logs fans stored log lines out to subscribers (loghub.go).
	logs logHub
	// writeTurn, on SQLite, lets one transaction at a time begin (see takeWriteTurn).
	writeTurn chan struct{}
	// numbers, on PostgreSQL, are connections whose commits do not wait for the WAL flush,
	// used only to take build numbers (buildnumbers.go).
	numbers *sqlx.DB
	// prepared holds the statements of the webhook path (prepared.go).
	prepared preparedStatements
	// checkpoints, on SQLite, copies the write-ahead log into the database (checkpoint.go).
	checkpoints *checkpointer
}

// Options configure Open.
type Options struct {
	// URL is "postgres://…", "sqlite:PATH", or empty for an SQLite file ferry.db in DataDir.
	URL     string
	DataDir string
	// Key is the 32-byte key that encrypts secrets at rest.
	Key []byte
}

// Open connects to the database named by opts and checks that it answers. It does not migrate.
func Open(ctx context.Context, opts Options) (*DB, error) {
	cipher, err := NewCipher(opts.Key)
	if err != nil {
		return nil, err
	}
	driver, dsn, dialect, err := dataSource(opts)
	if err != nil {
		return nil, err
	}
	db, err := sqlx.Open(driver, dsn)
	if err != nil {
		return nil, fmt.Errorf("open %s database: %w", dialect, err)
	}
	if dialect == SQLite {
		// One writer at a time is SQLite's rule; a small pool avoids "database is locked" churn.
		db.SetMaxOpenConns(4)
	} else {
		// Every connection may stay open while idle: under a burst of webhooks, a pool that
		// closed connections beyond a smaller idle limit opened new ones moments later, each a
		// new PostgreSQL backend that has to prepare every statement again (over a hundred in a
		// 20 s run at 200 pushes a second). A connection idle for a while is closed instead.
		db.SetMaxOpenConns(maxPostgresConns)
		db.SetMaxIdleConns(maxPostgresConns)
		db.SetConnMaxIdleTime(postgresIdleTime)
	}
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := db.PingContext(pingCtx); err != nil {
		db.Close()
		return nil, fmt.Errorf("connect to %s database: %w", dialect, err)
	}
	store := &DB{db: db, dialect: dialect, cipher: cipher, Now: time.Now, PasswordCost: 10}
	if dialect == SQLite {
		store.writeTurn = make(chan struct{}, 1)
		store.startCheckpoints()
	} else if store.numbers, err = openNumbers(dsn); err != nil {
		db.Close()
		return nil, err
	}
	store.logs.dsn, store.logs.origin = dsn, RandomSecret(8)
	return store, nil
}

func dataSource(opts Options) (driver, dsn string, dialect Dialect, err error) {
	u := opts.URL
	switch {
	case strings.HasPrefix(u, "postgres://"), strings.HasPrefix(u, "postgresql://"):
		return "postgres", u, Postgres, nil
	case u == "" || strings.HasPrefix(u, "sqlite:"):
		path := strings.TrimPrefix(u, "sqlite:")
		if path == "" {
			path = filepath.Join(opts.DataDir, "ferry.db")
		}
		if dir := filepath.Dir(path); dir != "" {
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return "", "", "", fmt.Errorf("create database directory: %w", err)
			}
		}
		// Created here with 0600, not by SQLite with 0644; SQLite gives -wal and -shm the
		// database file's mode.
		if path != ":memory:" {
			f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
			if err != nil {
				return "", "", "", fmt.Errorf("create database file: %w", err)
			}
			f.Close()
		}
		q := url.Values{}
		q.Add("_pragma", "foreign_keys(1)")
		q.Add("_pragma", "journal_mode(WAL)")
		q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", sqliteBusyTimeout.Milliseconds()))
		q.Add("_pragma", "synchronous(NORMAL)")
		q.Add("_pragma", "wal_autocheckpoint(0)") // checkpoint.go does it, outside commits
		q.Set("_txlock", "immediate")
		return "sqlite", "file:" + path + "?" + q.Encode(), SQLite, nil
	default:
		return "", "", "", fmt.Errorf("database URL %q: want postgres://…, sqlite:PATH or empty", redactURL(u))
	}
}

// redactURL hides a password in a database URL so it can be logged.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}

// openNumbers opens, without connecting yet, the PostgreSQL connections that take build
// numbers: every statement there commits with synchronous_commit off (a run-time parameter
// lib/pq passes on at connection start).
func openNumbers(dsn string) (*sqlx.DB, error) {
	u, err := url.Parse(dsn)
	if err != nil {
		return nil, fmt.Errorf("database URL %q: %w", redactURL(dsn), err)
	}
	q := u.Query()
	q.Set("synchronous_commit", "off")
	u.RawQuery = q.Encode()
	numbers, err := sqlx.Open("postgres", u.String())
	if err != nil {
		return nil, fmt.Errorf("open postgres database: %w", err)
	}
	numbers.SetMaxOpenConns(4)
	numbers.SetMaxIdleConns(4)
	return numbers, nil
}

// Close stops the log listener and closes the connection pools.
func (db *DB) Close() error {
	db.logs.close()
	db.stopCheckpoints()
	db.prepared.close()
	if db.numbers != nil {
		db.numbers.Close()
	}
	return db.db.Close()
}

// Dialect reports which database this is.
func (db *DB) Dialect() Dialect { return db.dialect }

// Cipher returns the cipher that seals secrets at rest.
func (db *DB) Cipher() *Cipher { return db.cipher }

// Ping checks that the database answers.
func (db *DB) Ping(ctx context.Context) error { return db.db.PingContext(ctx) }

// now returns the current time in UTC, truncated to microseconds so that it reads back equal
// from both databases.
func (db *DB) now() time.Time { return db.Now().UTC().Truncate(time.Microsecond) }

// Transact runs fn in a transaction and commits if fn returns nil. It rolls back on an error or
// a panic (which it re-raises).
func (db *DB) Transact(ctx context.Context, fn func(tx *sqlx.Tx) error) (err error) {
	release, err := db.takeWriteTurn(ctx)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	defer release()
	tx, err := db.db.BeginTxx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	defer func() {
		if p := recover(); p != nil {
			tx.Rollback()
			panic(p)
		}
		if err != nil {
			tx.Rollback()
			return
		}
		if cerr := tx.Commit(); cerr != nil {
			err = fmt.Errorf("commit: %w", cerr)
		}
	}()
	return fn(tx)
}

// maxPostgresConns bounds the main PostgreSQL pool; postgresIdleTime is how long one of its
// connections stays open unused.
const (
	maxPostgresConns = 32
	postgresIdleTime = 5 * time.Minute
)

// sqliteBusyTimeout is how long an SQLite statement waits for a lock another connection holds.
const sqliteBusyTimeout = 10 * time.Second

// takeWriteTurn waits, on SQLite, until no other transaction of this DB is open, and returns
// the function that ends the turn; on PostgreSQL it returns at once. Every SQLite transaction
// takes the write lock at BEGIN (_txlock=immediate), and one that found it taken would poll for
// it in SQLite's busy handler, sleeping 1, 2, 5, 10, 15, 20 ms… between tries: tens of
// milliseconds for a lock that was free again after one. Waiting here hands the turn on the
// moment it ends, in the order the transactions asked. Like busy_timeout, it gives up after
// sqliteBusyTimeout.
func (db *DB) takeWriteTurn(ctx context.Context) (release func(), err error) {
	if db.writeTurn == nil {
		return func() {}, nil
	}
	select {
	case db.writeTurn <- struct{}{}:
		return func() { <-db.writeTurn }, nil
	default:
	}
	wait := time.NewTimer(sqliteBusyTimeout)
	defer wait.Stop()
	select {
	case db.writeTurn <- struct{}{}:
		return func() { <-db.writeTurn }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-wait.C:
		return nil, fmt.Errorf("the database stayed locked by another transaction for %s", sqliteBusyTimeout)
	}
}

// queryer is what both *sqlx.DB and *sqlx.Tx offer, so read helpers serve in and out of a transaction.
type queryer interface {
	GetContext(ctx context.Context, dest any, query string, args ...any) error
	SelectContext(ctx context.Context, dest any, query string, args ...any) error
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryRowxContext(ctx context.Context, query string, args ...any) *sqlx.Row
	Rebind(query string) string
}

// q rebinds a query written with ? placeholders for the dialect of db.
func (db *DB) q(query string) string { return db.db.Rebind(query) }
