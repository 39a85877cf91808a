package store

import (
	"context"
	"os"
	"testing"
	"time"
)

// The gates read PostgreSQL's clock in production; it agrees with this machine's here.
func TestClockReadsTheDatabase(t *testing.T) {
	u := os.Getenv("FERRY_TEST_POSTGRES_URL")
	if u == "" {
		u = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	}
	db, err := Open(context.Background(), Options{URL: u,
		Key: []byte("0123456789abcdef0123456789abcdef")})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	got, err := db.clock(context.Background(), db.db)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(got); d < -time.Second || d > time.Second {
		t.Fatalf("database clock %s is %s from this machine's", got, d)
	}
	db.Now = func() time.Time { return time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC) }
	if got, _ := db.clock(context.Background(), db.db); got.Year() != 2030 {
		t.Fatalf("a test's clock was ignored: %s", got)
	}
}
