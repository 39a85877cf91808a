// Package storetest opens real databases for tests: a fresh SQLite file, and a fresh PostgreSQL
// database on the server named by FERRY_TEST_POSTGRES_URL (default: the local server at
// 127.0.0.1:5432 as user postgres). A test fails, never skips, when PostgreSQL cannot be reached.
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"github.com/jmoiron/sqlx"

	"ferry/store"
)

// DefaultPostgresURL is used when FERRY_TEST_POSTGRES_URL is not set.
const DefaultPostgresURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// Dialects lists the databases every store test runs on.
var Dialects = []store.Dialect{store.SQLite, store.Postgres}

// Key is the fixed secret key of test stores.
var Key = []byte("0123456789abcdef0123456789abcdef")

// PostgresURL returns the server URL tests use.
func PostgresURL() string {
	if u := os.Getenv("FERRY_TEST_POSTGRES_URL"); u != "" {
		return u
	}
	return DefaultPostgresURL
}

// URL returns a database URL of a new, empty database of dialect d, dropped when tb ends.
func URL(tb testing.TB, d store.Dialect) string {
	tb.Helper()
	if d == store.SQLite {
		return "sqlite:" + filepath.Join(tb.TempDir(), "ferry.db")
	}
	admin, err := sqlx.Open("postgres", PostgresURL())
	if err != nil {
		tb.Fatalf("open PostgreSQL %s: %v", PostgresURL(), err)
	}
	defer admin.Close()
	b := make([]byte, 6)
	rand.Read(b)
	name := "ferry_test_" + hex.EncodeToString(b)
	if _, err := admin.Exec("CREATE DATABASE " + name); err != nil {
		tb.Fatalf("PostgreSQL at %s is needed for this test (set FERRY_TEST_POSTGRES_URL): %v", PostgresURL(), err)
	}
	tb.Cleanup(func() {
		admin, err := sqlx.Open("postgres", PostgresURL())
		if err != nil {
			return
		}
		defer admin.Close()
		admin.Exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)")
	})
	u, err := url.Parse(PostgresURL())
	if err != nil {
		tb.Fatalf("FERRY_TEST_POSTGRES_URL: %v", err)
	}
	u.Path = "/" + name
	return u.String()
}

// Open returns a migrated store on a new database of dialect d, closed when tb ends.
// Passwords are hashed with the lowest cost to keep tests quick.
func Open(tb testing.TB, d store.Dialect) *store.DB {
	tb.Helper()
	return OpenURL(tb, URL(tb, d))
}

// OpenURL returns a migrated store on the database at u, closed when tb ends.
func OpenURL(tb testing.TB, u string) *store.DB {
	tb.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, store.Options{URL: u, DataDir: tb.TempDir(), Key: Key})
	if err != nil {
		tb.Fatalf("open store: %v", err)
	}
	tb.Cleanup(func() { db.Close() })
	if _, err := db.Migrate(ctx); err != nil {
		tb.Fatalf("migrate: %v", err)
	}
	db.PasswordCost = 4
	return db
}

// Each runs fn as a subtest on a fresh store of every dialect.
func Each(t *testing.T, fn func(t *testing.T, db *store.DB)) {
	t.Helper()
	for _, d := range Dialects {
		t.Run(string(d), func(t *testing.T) {
			fn(t, Open(t, d))
		})
	}
}

// Name returns a short unique name with the given prefix, for rows made by tests.
func Name(prefix string) string {
	b := make([]byte, 4)
	rand.Read(b)
	return fmt.Sprintf("%s-%s", prefix, hex.EncodeToString(b))
}
