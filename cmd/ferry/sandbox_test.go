package main

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"ferry/store"
)

// startWithProject starts ferry on in, adds a token and the project orders on repo (built on
// pushes to main whose message says devops, deployed nowhere), and returns the server and API.
func startWithProject(t *testing.T, in instance, repo *gitRepo) (*server, *client) {
	t.Helper()
	srv := startServer(t, in.env)
	res := runFerry(t, in.env, "", "token", "add", "admin")
	if res.code != 0 {
		t.Fatalf("ferry token add admin: exit %d: %s", res.code, res.stderr)
	}
	api := newClient(t, srv.URL, strings.TrimSpace(res.stdout))
	api.api(http.StatusCreated, "POST", "/api/v1/projects", map[string]any{"name": "orders", "gitlab_path": "shop/orders",
		"clone_url": repo.dir, "webhook_secret": "hook-secret-123456",
		"trigger": map[string]any{"keyword": "devops", "branches": []string{"main"}}}, nil)
	return srv, api
}

// pushBuild sends GitLab's push webhook for sha on main and returns the build it queued.
func pushBuild(t testing.TB, srv *server, repo *gitRepo, sha, delivery string) int64 {
	t.Helper()
	req, err := http.NewRequest("POST", srv.URL+"/hooks/gitlab", strings.NewReader(pushPayload(t, repo, sha)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Gitlab-Event", "Push Hook")
	req.Header.Set("X-Gitlab-Token", "hook-secret-123456")
	req.Header.Set("X-Gitlab-Event-UUID", delivery)
	hook := newClient(t, srv.URL, "").send(req)
	var answer struct{ Build int64 }
	if err := json.Unmarshal([]byte(hook.body), &answer); err != nil || hook.status/100 != 2 || answer.Build == 0 {
		t.Fatalf("webhook for %s: status %d %s, want a queued build", sha, hook.status, hook.body)
	}
	return answer.Build
}

func modeOf(t *testing.T, path string) fs.FileMode {
	t.Helper()
	info, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return info.Mode().Perm()
}

// TestDataDirIsPrivate: the data dir is ferry's alone, 0700, and what ferry keeps in it has no
// rights for group or others, also when an older ferry made it world-readable.
func TestDataDirIsPrivate(t *testing.T) {
	in := newInstance(t, store.SQLite)
	old := map[string]string{"artifacts/old/v1.tar.gz": "old artifact", "repos/old.git/config": "[core]", "secret.key": "an-older-ferrys-key-0123456789\n"}
	for name, content := range old {
		file := filepath.Join(in.dataDir, name)
		if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(file, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(in.dataDir, 0o755); err != nil {
		t.Fatal(err)
	}
	repo := newGitRepo(t)
	srv, api := startWithProject(t, in, repo)
	id := pushBuild(t, srv, repo, repo.commit("first devops"), "private-1")
	if b := waitBuild(t, api, id); b.Status != store.BuildSuccess {
		t.Fatalf("build ended %s: %s", b.Status, b.Error)
	}

	if m := modeOf(t, in.dataDir); m != 0o700 {
		t.Errorf("data dir mode %o, want 700", m)
	}
	for _, name := range []string{"ferry.db", "ferry.db-wal", "ferry.db-shm", "secret.key"} {
		if _, err := os.Stat(filepath.Join(in.dataDir, name)); err != nil && name != "ferry.db-wal" && name != "ferry.db-shm" {
			t.Errorf("%s: %v", name, err)
		} else if err == nil && modeOf(t, filepath.Join(in.dataDir, name)) != 0o600 {
			t.Errorf("%s mode %o, want 600", name, modeOf(t, filepath.Join(in.dataDir, name)))
		}
	}
	for _, dir := range []string{"artifacts", "artifacts/orders", "artifacts/old", "repos", "repos/old.git", "repos/orders.git", "workspaces", "caches", "caches/orders"} {
		if m := modeOf(t, filepath.Join(in.dataDir, dir)); m != 0o700 {
			t.Errorf("%s mode %o, want 700", dir, m)
		}
	}
	filepath.WalkDir(filepath.Join(in.dataDir, "artifacts"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && modeOf(t, p) != 0o600 {
			t.Errorf("artifact %s mode %o, want 600", p, modeOf(t, p))
		}
		return err
	})
	if m := modeOf(t, filepath.Join(in.dataDir, "repos/old.git/config")); m != 0o600 {
		t.Errorf("a file of the old data dir kept mode %o, want 600", m)
	}
	if code := srv.stop(); code != 0 {
		t.Fatalf("after SIGTERM ferry exited %d", code)
	}
}

// findProcesses returns the live processes whose command line is exactly argv.
func findProcesses(argv ...string) []int {
	want := strings.Join(argv, "\x00") + "\x00"
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		stat, _ := os.ReadFile("/proc/" + e.Name() + "/stat")
		_, rest, _ := strings.Cut(string(stat), ") ")
		if err == nil && string(cmdline) == want && !strings.HasPrefix(rest, "Z") {
			pids = append(pids, pid)
		}
	}
	return pids
}

// TestBuildDiesWithFerry is issue 12's crash: ferry is killed with SIGKILL mid-build. The
// script's processes (one left with setsid) end with it, the next start removes the dead
// attempt's workspace, and the takeover runs in a workspace of its own.
func TestBuildDiesWithFerry(t *testing.T) {
	in := newInstance(t, store.SQLite)
	tag := strconv.Itoa(300000 + int(time.Now().UnixNano()%100000))
	daemon, script := []string{"sleep", tag + "1"}, []string{"sleep", tag + "2"}
	pipeline := `build:
  script:
    - 'if [ -e "$FERRY_CACHE_DIR/attempted" ]; then sleep 3; cp -R service dist; else touch "$FERRY_CACHE_DIR/attempted"; setsid ` + strings.Join(daemon, " ") + ` > /dev/null 2>&1 & ` + strings.Join(script, " ") + `; fi'
  artifact: dist
`
	repo := newGitRepo(t)
	if err := os.WriteFile(filepath.Join(repo.dir, ".ferry.yml"), []byte(pipeline), 0o644); err != nil {
		t.Fatal(err)
	}
	srv, api := startWithProject(t, in, repo)
	id := pushBuild(t, srv, repo, repo.commit("crash devops"), "crash-1")
	waitFor(t, "the build script's processes", func() bool {
		return len(findProcesses(daemon...)) > 0 && len(findProcesses(script...)) > 0
	})
	first := filepath.Join(in.dataDir, "workspaces", "orders", fmt.Sprintf("%d-1", id))
	if _, err := os.Stat(first); err != nil {
		t.Errorf("the first attempt has no workspace of its own at %s: %v", first, err)
	}

	if err := srv.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-srv.exited
	killed := time.Now()
	for time.Since(killed) < 5*time.Second && len(findProcesses(daemon...))+len(findProcesses(script...)) > 0 {
		time.Sleep(20 * time.Millisecond)
	}
	left := append(findProcesses(daemon...), findProcesses(script...)...)
	for _, pid := range left {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	if len(left) > 0 {
		t.Fatalf("processes %v of the build outlived ferry's SIGKILL by 5s", left)
	}
	t.Logf("the build's processes ended %s after ferry's SIGKILL", time.Since(killed).Round(time.Millisecond))

	srv = startServer(t, in.env)
	api = newClient(t, srv.URL, api.token)
	waitFor(t, "the dead attempt's workspace to be removed", func() bool {
		_, err := os.Stat(first)
		return os.IsNotExist(err)
	})
	second := filepath.Join(in.dataDir, "workspaces", "orders", fmt.Sprintf("%d-2", id))
	waitFor(t, "the takeover's own workspace", func() bool {
		_, err := os.Stat(second)
		return err == nil
	})
	b := waitBuild(t, api, id)
	if b.Status != store.BuildSuccess || b.Attempts != 2 {
		t.Errorf("build = %s after %d attempts (%s), want success on the second", b.Status, b.Attempts, b.Error)
	}
	if code := srv.stop(); code != 0 {
		t.Fatalf("after SIGTERM ferry exited %d", code)
	}
}

// TestBuildWithoutBwrapFailsButFerryServes: on a machine without bubblewrap ferry still starts
// (warning), and each build fails saying to install it or turn the sandbox off.
func TestBuildWithoutBwrapFailsButFerryServes(t *testing.T) {
	in := newInstance(t, store.SQLite)
	in.env = append(in.env, "FERRY_BWRAP=/nonexistent/bwrap")
	repo := newGitRepo(t)
	srv, api := startWithProject(t, in, repo)
	id := pushBuild(t, srv, repo, repo.commit("no sandbox devops"), "nobwrap-1")
	b := waitBuild(t, api, id)
	if !strings.Contains(srv.logs.String(), "builds will fail until the build sandbox works") {
		t.Errorf("ferry did not warn that the build sandbox is missing:\n%s", srv.logs.String())
	}
	if b.Status != store.BuildFailed || !strings.Contains(b.Error, "install the bubblewrap package") || !strings.Contains(b.Error, "FERRY_BUILD_SANDBOX=off") {
		t.Errorf("build = %s %q, want failed saying to install bubblewrap or set FERRY_BUILD_SANDBOX=off", b.Status, b.Error)
	}
	if code := srv.stop(); code != 0 {
		t.Fatalf("after SIGTERM ferry exited %d", code)
	}
}
