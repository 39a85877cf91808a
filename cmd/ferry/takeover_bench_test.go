package main

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"ferry/store"
	"ferry/store/storetest"
)

// BenchmarkTakeoverAfterKill measures how long a build waits, after the ferry process running
// it is killed with SIGKILL, until another process holds it: 10 kills on PostgreSQL with the
// default lease, at varying points of the build (0, 0.5 and 1 s after the claim), reported as
// the median (takeover-median-s) and the slowest (takeover-max-s) of the ten.
//
//	go test -run '^$' -bench TakeoverAfterKill -benchtime 1x ./cmd/ferry/
func BenchmarkTakeoverAfterKill(b *testing.B) {
	dbURL := storetest.URL(b, store.Postgres)
	sql := mustSQL(b, dbURL)
	machine1, machine2 := filepath.Join(b.TempDir(), "machine-1"), filepath.Join(b.TempDir(), "machine-2")
	env := func(dataDir string, builds int) []string {
		return ferryEnv("FERRY_DATA_DIR="+dataDir, "FERRY_ADDR=127.0.0.1:0", "FERRY_DATABASE_URL="+dbURL,
			"FERRY_SECRET_KEY=shared-by-every-machine", fmt.Sprintf("FERRY_BUILD_WORKERS=%d", builds), "FERRY_DEPLOY_WORKERS=0")
	}
	repo := newGitRepo(b)
	if err := os.WriteFile(filepath.Join(repo.dir, ".ferry.yml"), []byte(takeoverPipeline), 0o644); err != nil {
		b.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(machine2, "caches", "orders", "go"), 0o700); err != nil {
		b.Fatal(err)
	}
	a := startServer(b, env(machine1, 0))
	res := runFerry(b, env(machine1, 0), "", "token", "add", "admin")
	if res.code != 0 {
		b.Fatalf("ferry token add admin: exit %d: %s", res.code, res.stderr)
	}
	api := newClient(b, a.URL, strings.TrimSpace(res.stdout))
	api.api(http.StatusCreated, "POST", "/api/v1/projects", map[string]any{"name": "orders", "gitlab_path": "shop/orders",
		"clone_url": repo.dir, "webhook_secret": "hook-secret-123456",
		"trigger": map[string]any{"keyword": "devops", "branches": []string{"main"}}}, nil)
	survivor := startServer(b, env(machine2, 1))
	round := 0
	for range b.N {
		var times []time.Duration
		for i := range 10 {
			round++
			sendSignal(b, survivor, syscall.SIGSTOP) // so that the process to kill claims the build
			victim := startServer(b, env(machine1, 1))
			id := pushBuild(b, a, repo, repo.commit(fmt.Sprintf("round %d devops", round)), fmt.Sprintf("bench-%d", round))
			storetest.WaitFor(b, time.Minute, "the build claimed", func() bool { return holderPID(b, sql, "builds", id) == victim.cmd.Process.Pid })
			time.Sleep(time.Duration(i%3) * 500 * time.Millisecond)
			sendSignal(b, survivor, syscall.SIGCONT)
			killed := kill9(b, victim)
			storetest.WaitFor(b, time.Minute, "the build taken over", func() bool { return holderPID(b, sql, "builds", id) == survivor.cmd.Process.Pid })
			times = append(times, time.Since(killed))
			storetest.WaitFor(b, time.Minute, "the build ended", func() bool {
				var bd store.Build
				api.api(http.StatusOK, "GET", fmt.Sprintf("/api/v1/builds/%d", id), nil, &bd)
				return bd.Status != store.BuildPending && bd.Status != store.BuildRunning
			})
		}
		slices.Sort(times)
		b.ReportMetric((times[4]+times[5]).Seconds()/2, "takeover-median-s")
		b.ReportMetric(times[9].Seconds(), "takeover-max-s")
		b.Logf("takeover times after kill -9: %v", times)
	}
}
