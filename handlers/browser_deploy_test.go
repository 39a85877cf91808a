package handlers_test

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"ferry/deploy"
	"ferry/deploy/sshtest"
	"ferry/store"
	"ferry/store/storetest"
)

// realPipeline is the .ferry.yml of the versions the browser tests deploy to real sshd hosts:
// a start script and no health check, so a deployment takes a few seconds.
const realPipeline = `build:
  script: [ "true" ]
  artifact: app
deploy:
  path: ` + sshtest.DefaultDeployPath + `
  keep_releases: 3
  start: bin/start
`

// startDeployWorker runs a deploy worker against db until the test ends.
func startDeployWorker(t *testing.T, db *store.DB) *deploy.Worker {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(testLog{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	w := deploy.NewWorker(deploy.WorkerConfig{DB: db, Owner: storetest.Name("browser-worker"), Workers: 2,
		LeaseTTL: 5 * time.Second, Poll: 100 * time.Millisecond, Logger: logger})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := w.Run(ctx); err != nil {
			t.Errorf("deploy worker: %v", err)
		}
	})
	t.Cleanup(func() { cancel(); wg.Wait() })
	return w
}

// testLog sends a logger's lines to the test log.
type testLog struct{ t *testing.T }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// moveToRealHosts points the fixture's hosts web-1 and web-2 at real sshd hosts, with their
// host keys pinned, and returns the cluster.
func moveToRealHosts(t *testing.T, db *store.DB, f *pageFixture) *sshtest.Cluster {
	t.Helper()
	cluster := sshtest.Start(t, 2, sshtest.Options{})
	for i, name := range []string{"web-1", "web-2"} {
		h := cluster.Hosts()[i]
		addr, port, user, key, hostKey := h.Addr(), h.Port(), "root", string(cluster.ClientKeyPEM), h.HostKey()
		_, err := db.UpdateHost(context.Background(), name, store.HostUpdate{Address: &addr, Port: &port, User: &user,
			PrivateKey: &key, HostKey: &hostKey})
		must(t, err)
	}
	return cluster
}

// realVersion makes a kept version named name of the project whose artifact is a real tar.gz
// the hosts can run, the way a build does.
func realVersion(t *testing.T, db *store.DB, projectID int64, name string) *store.Version {
	t.Helper()
	ctx := context.Background()
	path, sum, size := packRelease(t, name)
	sha := make([]byte, 20)
	rand.Read(sha)
	b, err := db.CreateBuild(ctx, store.NewBuild{ProjectID: projectID, Ref: "main", Branch: "main", SHA: hex.EncodeToString(sha),
		CommitTitle: "Ship " + name, CommitAuthor: "Ann Author", TriggeredBy: "push by ann"})
	must(t, err)
	for {
		got, err := db.ClaimBuild(ctx, "browser-test", time.Minute)
		must(t, err)
		if got == nil {
			t.Fatalf("build %d could not be claimed", b.ID)
		}
		if got.ID == b.ID {
			break
		}
		_, err = db.FinishBuild(ctx, got.ID, "browser-test", store.BuildResult{Status: store.BuildCanceled, Error: "test"})
		must(t, err)
	}
	_, err = db.FinishBuild(ctx, b.ID, "browser-test", store.BuildResult{Status: store.BuildSuccess, Version: &store.NewVersion{
		Name: name, SHA: b.SHA, Ref: "main", SHA256: sum, Size: size, Path: path, Pipeline: realPipeline}})
	must(t, err)
	v, err := db.GetVersionByName(ctx, projectID, name)
	must(t, err)
	return v
}

// packRelease writes a tar.gz holding bin/start and VERSION and returns its path, sha256 and size.
func packRelease(t *testing.T, version string) (path, sum string, size int64) {
	t.Helper()
	path = filepath.Join(t.TempDir(), version+".tar.gz")
	f, err := os.Create(path)
	must(t, err)
	hash := sha256.New()
	gz := gzip.NewWriter(io.MultiWriter(f, hash))
	tw := tar.NewWriter(gz)
	for _, m := range []struct {
		name, body string
		mode       int64
	}{
		{"bin/start", "#!/bin/sh\necho \"started $(cat VERSION)\"\n", 0o755},
		{"VERSION", version + "\n", 0o644},
	} {
		must(t, tw.WriteHeader(&tar.Header{Name: m.name, Mode: m.mode, Size: int64(len(m.body)), ModTime: time.Now()}))
		_, err := tw.Write([]byte(m.body))
		must(t, err)
	}
	must(t, tw.Close())
	must(t, gz.Close())
	must(t, f.Close())
	fi, err := os.Stat(path)
	must(t, err)
	return path, hex.EncodeToString(hash.Sum(nil)), fi.Size()
}
