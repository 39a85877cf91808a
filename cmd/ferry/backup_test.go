package main

import (
	"archive/tar"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"ferry/store"
	"ferry/store/storetest"
)

// TestBackupRestoreDeploysKeptVersion backs up a running ferry, restores the backup into an
// empty data dir (the old one is removed), starts ferry there and deploys the version kept
// before the backup to real hosts: the database, the secret key (the hosts' SSH keys are
// sealed with it) and the artifact all came through. With PostgreSQL the database stays
// where it is (pg_dump's job) with the artifact kept in it, and the backup carries the rest:
// the restored ferry deploys the version from the database.
func TestBackupRestoreDeploysKeptVersion(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(string(d), func(t *testing.T) {
			testBackupRestore(t, d)
		})
	}
}

func testBackupRestore(t *testing.T, d store.Dialect) {
	s := newCLISetup(t, d)
	s.env = append(s.env, "FERRY_URL="+s.srv.URL, "FERRY_TOKEN="+s.token)
	s.repo.commit("the release to keep")
	kept := s.build(t)

	file := filepath.Join(t.TempDir(), "ferry-backup.tar.gz")
	res := s.ferryEnv(t, s.in.env, 0, "", "backup", file) // while ferry serves
	artifacts := "1 artifacts"
	if d == store.Postgres {
		artifacts = "0 artifacts" // the database keeps it
	}
	if !strings.Contains(res.stdout, artifacts) {
		t.Errorf("ferry backup: %q, want %s", res.stdout, artifacts)
	}
	names := tarNames(t, file)
	want := []string{"ferry-backup.json", "secret.key"}
	if d == store.SQLite {
		want = append(want, "ferry.db", "artifacts/orders/"+kept+".tar.gz")
	} else if !strings.Contains(res.stderr, "pg_dump") || !strings.Contains(res.stderr, "artifacts too") {
		t.Errorf("a PostgreSQL backup does not say to use pg_dump, which holds the artifacts: %q", res.stderr)
	}
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Errorf("the backup holds %v, want %v", names, want)
	}
	s.ferryEnv(t, s.in.env, 1, "", "backup", file) // never overwrites
	if code := s.srv.stop(); code != 0 {
		t.Fatalf("ferry serve exited %d", code)
	}
	if err := os.RemoveAll(s.in.dataDir); err != nil {
		t.Fatal(err)
	}

	restored := filepath.Join(t.TempDir(), "restored")
	env := replaceEnv(s.in.env, "FERRY_DATA_DIR", restored)
	res = s.ferryEnv(t, env, 0, "", "restore", file)
	if !strings.Contains(res.stdout, artifacts+", 1 versions pointed at them") {
		t.Errorf("ferry restore: %q", res.stdout)
	}
	res = s.ferryEnv(t, env, 1, "", "restore", file)
	if !strings.Contains(res.stderr, "not empty") {
		t.Errorf("a restore into a used data dir: %q", res.stderr)
	}
	info, err := os.Stat(filepath.Join(restored, "secret.key"))
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("restored secret key: %v %v, want mode 0600", err, info)
	}

	srv := startServer(t, env)
	clientEnv := replaceEnv(s.env, "FERRY_URL", srv.URL)
	res = s.ferryEnv(t, clientEnv, 0, "", "versions", "orders")
	if !strings.Contains(res.stdout, kept) {
		t.Fatalf("the restored ferry does not list %s:\n%s", kept, res.stdout)
	}
	s.ferryEnv(t, clientEnv, 0, "", "deploy", "orders", "staging", kept, "--follow")
	for _, h := range s.cluster.Hosts() {
		assertRunning(t, h, kept)
	}
}

// TestRestoreRefusesForeignFiles checks that a backup cannot write outside the data dir.
func TestRestoreRefusesForeignFiles(t *testing.T) {
	file := filepath.Join(t.TempDir(), "evil.tar.gz")
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	gz := gzip.NewWriter(f)
	tw := tar.NewWriter(gz)
	for name, body := range map[string]string{
		"ferry-backup.json": `{"format": 1, "database": "sqlite", "secret_key": "file"}`,
		"../escaped":        "x",
	} {
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: int64(len(body))})
		tw.Write([]byte(body))
	}
	tw.Close()
	gz.Close()
	f.Close()
	dataDir := filepath.Join(t.TempDir(), "data")
	res := runFerry(t, ferryEnv("FERRY_DATA_DIR="+dataDir), "", "restore", file)
	if res.code != 1 || !strings.Contains(res.stderr, `"../escaped"`) {
		t.Errorf("restore of a backup naming ../escaped: exit %d, %q", res.code, res.stderr)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(dataDir), "escaped")); err == nil {
		t.Error("the restore wrote outside the data dir")
	}
	if entries, _ := os.ReadDir(dataDir); len(entries) != 0 {
		t.Errorf("a failed restore left %v in the data dir", entries)
	}
}

func tarNames(t *testing.T, file string) []string {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
	}
	slices.Sort(names)
	return names
}

// replaceEnv returns env with NAME set to value.
func replaceEnv(env []string, name, value string) []string {
	out := slices.DeleteFunc(slices.Clone(env), func(kv string) bool { return strings.HasPrefix(kv, name+"=") })
	return append(out, name+"="+value)
}
