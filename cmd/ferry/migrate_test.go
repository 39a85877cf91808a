package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"ferry/store"
	"ferry/store/storetest"
)

var appliedLine = regexp.MustCompile(`^applied (\d+) migration\(s\); the (\w+) database is up to date\n$`)

// migrateOnce runs `ferry migrate` and returns how many migrations it says it applied.
func migrateOnce(t *testing.T, env []string) int {
	t.Helper()
	return appliedCount(t, runFerry(t, env, "", "migrate"))
}

// appliedCount returns how many migrations a `ferry migrate` says it applied.
func appliedCount(t *testing.T, res result) int {
	t.Helper()
	m := appliedLine.FindStringSubmatch(res.stdout)
	if res.code != 0 || m == nil {
		t.Fatalf("ferry migrate: exit %d, stdout %q, stderr:\n%s", res.code, res.stdout, res.stderr)
	}
	var n int
	fmt.Sscan(m[1], &n)
	return n
}

// TestMigrateTwice: the second `ferry migrate` applies nothing, and a server on the migrated
// database is ready at once.
func TestMigrateTwice(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			in := newInstance(t, d)
			all, err := store.Migrations(d)
			if err != nil {
				t.Fatal(err)
			}
			if n := migrateOnce(t, in.env); n != len(all) {
				t.Errorf("first ferry migrate applied %d migrations, want all %d", n, len(all))
			}
			if n := migrateOnce(t, in.env); n != 0 {
				t.Errorf("second ferry migrate applied %d migrations, want 0", n)
			}
			srv := startServer(t, in.env)
			if code := srv.stop(); code != 0 {
				t.Errorf("ferry serve after migrate: exit %d", code)
			}
		})
	}
}

// TestMigrateConcurrently: two `ferry migrate` at once against one fresh PostgreSQL database
// both succeed, and between them every migration is applied exactly once.
func TestMigrateConcurrently(t *testing.T) {
	dbURL := storetest.URL(t, store.Postgres)
	env := ferryEnv("FERRY_DATA_DIR="+t.TempDir(), "FERRY_DATABASE_URL="+dbURL, "FERRY_SECRET_KEY=concurrent-migrate-test-key")
	all, err := store.Migrations(store.Postgres)
	if err != nil {
		t.Fatal(err)
	}
	const processes = 3
	ferryBinary(t) // build before the race starts
	results := make([]result, processes)
	var wg sync.WaitGroup
	for i := range processes {
		wg.Go(func() { results[i] = runFerry(t, env, "", "migrate") })
	}
	wg.Wait()
	applied := make([]int, processes)
	total := 0
	for i, res := range results {
		applied[i] = appliedCount(t, res)
		total += applied[i]
	}
	if total != len(all) {
		t.Errorf("%d concurrent ferry migrate applied %v migrations, %d in all; want %d in all", processes, applied, total, len(all))
	}
	db := storetest.OpenURL(t, dbURL)
	if n, err := db.Pending(context.Background()); err != nil || n != 0 {
		t.Errorf("after concurrent migrations: %d pending (%v), want 0", n, err)
	}
}

// TestBadConfig: a configuration ferry cannot run with ends the command with a non-zero exit and
// one line that says what is wrong, and leaves no trace in the data dir.
func TestBadConfig(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  []string
		want string // in the error line
	}{
		{"mysql URL", []string{"serve"}, []string{"FERRY_DATABASE_URL=mysql://root:hunter2@db/ferry"}, `FERRY_DATABASE_URL: "mysql" databases are not supported`},
		{"not a URL", []string{"migrate"}, []string{"FERRY_DATABASE_URL=ferry.db"}, "FERRY_DATABASE_URL: not a database URL"},
		{"unreachable postgres", []string{"serve"}, []string{"FERRY_DATABASE_URL=postgres://postgres:hunter2@127.0.0.1:1/ferry?sslmode=disable", "FERRY_SECRET_KEY=a-key-of-enough-length"}, "connect to postgres database"},
		{"unreachable postgres, migrate", []string{"migrate"}, []string{"FERRY_DATABASE_URL=postgres://postgres@127.0.0.1:1/ferry?sslmode=disable", "FERRY_SECRET_KEY=a-key-of-enough-length"}, "connect to postgres database"},
		{"short secret key", []string{"serve"}, []string{"FERRY_SECRET_KEY=short"}, "FERRY_SECRET_KEY: must be at least 16 characters"},
		{"base URL", []string{"serve"}, []string{"FERRY_BASE_URL=ftp://ferry.example.com"}, "FERRY_BASE_URL"},
		{"workers", []string{"serve"}, []string{"FERRY_BUILD_WORKERS=1000"}, "FERRY_BUILD_WORKERS"},
		{"build sandbox", []string{"serve"}, []string{"FERRY_BUILD_SANDBOX=maybe"}, `FERRY_BUILD_SANDBOX "maybe": want bwrap`},
		{"address", []string{"serve"}, []string{"FERRY_ADDR=127.0.0.1:99999"}, "listen on 127.0.0.1:99999"},
		{"token for nobody", []string{"token", "add", "nobody"}, []string{"FERRY_SECRET_KEY=a-key-of-enough-length"}, "token for nobody"},
		{"trusted proxies", []string{"serve"}, []string{"FERRY_TRUSTED_PROXIES=10.0.0.0/8, proxy.example.com"}, `FERRY_TRUSTED_PROXIES: "proxy.example.com" is not an IP address`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dataDir := filepath.Join(t.TempDir(), "data")
			env := append(ferryEnv("FERRY_DATA_DIR="+dataDir, "FERRY_ADDR=127.0.0.1:0"), tt.env...)
			res := runFerry(t, env, "", tt.args...)
			if res.code == 0 {
				t.Fatalf("exit 0, want an error; stderr:\n%s", res.stderr)
			}
			var errLines []string
			for line := range strings.Lines(res.stderr) {
				if strings.HasPrefix(line, "ferry: ") {
					errLines = append(errLines, strings.TrimSpace(line))
				}
			}
			if len(errLines) != 1 || !strings.Contains(errLines[0], tt.want) {
				t.Fatalf("stderr %q: want one line \"ferry: …\" containing %q", res.stderr, tt.want)
			}
			if strings.Contains(res.stderr, "hunter2") || strings.Contains(res.stderr, "goroutine ") {
				t.Errorf("stderr shows a password or a stack:\n%s", res.stderr)
			}
			if res.stdout != "" {
				t.Errorf("stdout %q, want nothing", res.stdout)
			}
			if tt.name == "mysql URL" || tt.name == "not a URL" || tt.name == "address" {
				if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
					t.Errorf("a bad database URL created the data dir %s (%v)", dataDir, err)
				}
			}
		})
	}
}

// TestServePortTaken: when the address is taken, ferry says so and exits before it touches the
// data dir, so the first admin's one-time password is not spent on a start that never served.
func TestServePortTaken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dataDir := filepath.Join(t.TempDir(), "data")
	res := runFerry(t, ferryEnv("FERRY_DATA_DIR="+dataDir, "FERRY_ADDR="+ln.Addr().String()), "", "serve")
	if res.code == 0 || !strings.Contains(res.stderr, "ferry: listen on "+ln.Addr().String()) {
		t.Errorf("exit %d, stderr %q: want an error naming the address", res.code, res.stderr)
	}
	if strings.Contains(res.stderr, "password") {
		t.Errorf("a start that could not listen created admin: %s", res.stderr)
	}
	if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
		t.Errorf("a start that could not listen created the data dir (%v)", err)
	}
}
