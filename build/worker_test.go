package build

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"ferry/build/gitlabtest"
	"ferry/store"
	"ferry/store/storetest"
)

// workerEnv is a project on a real git repository, a fake GitLab and a store, for worker tests.
type workerEnv struct {
	t       *testing.T
	db      *store.DB
	origin  *testRepo
	project *store.Project
	gitlab  *gitlabtest.Server
	dataDir string
}

func newWorkerEnv(t *testing.T, db *store.DB) *workerEnv {
	t.Helper()
	e := &workerEnv{t: t, db: db, origin: newTestRepo(t), gitlab: gitlabtest.New(t, "api-token"), dataDir: t.TempDir()}
	e.gitlab.AddProject("group/app")
	e.project = &store.Project{
		Name: "app", GitLabPath: "group/app", CloneURL: e.origin.Dir, Trigger: store.DefaultTrigger(),
		KeepVersions: 20, WebhookSecret: "hook-secret",
	}
	must(t, db.CreateProject(context.Background(), e.project))
	return e
}

func must(tb testing.TB, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatal(err)
	}
}

func (e *workerEnv) config(owner string) WorkerConfig {
	return WorkerConfig{
		DB: e.db, DataDir: e.dataDir, Owner: owner, Workers: 2, LeaseTTL: 3 * time.Second, // renewals must reach a database the whole suite loads
		PollInterval: 50 * time.Millisecond, KillGrace: time.Second, BaseURL: "https://ferry.example.com",
		GitLab: GitLabConfig{BaseURL: e.gitlab.URL, Token: "api-token", Backoff: 10 * time.Millisecond},
	}
}

// start runs a worker until the test ends or the returned stop is called; stop waits for Run.
func (e *workerEnv) start(cfg WorkerConfig) (w *Worker, stop func()) {
	w = NewWorker(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Run(ctx)
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	e.t.Cleanup(stop)
	return w, stop
}

// queue adds a pending build of sha on branch.
func (e *workerEnv) queue(sha, branch string) *store.Build {
	e.t.Helper()
	b, err := e.db.CreateBuild(context.Background(), store.NewBuild{ProjectID: e.project.ID, Ref: branch, Branch: branch, SHA: sha, TriggeredBy: "test"})
	must(e.t, err)
	return b
}

// wait polls a build until its status is one of want (or it ends), for at most a minute.
func (e *workerEnv) wait(id int64, want ...string) *store.Build {
	e.t.Helper()
	var b *store.Build
	if !storetest.Eventually(time.Minute, func() bool {
		var err error
		b, err = e.db.GetBuild(context.Background(), id)
		must(e.t, err)
		return slices.Contains(want, b.Status)
	}) {
		e.t.Fatalf("build %d is %s after a minute, want %v; log:\n%s", id, b.Status, want, e.log(id))
	}
	return b
}

func (e *workerEnv) waitEnd(id int64) *store.Build {
	e.t.Helper()
	return e.wait(id, store.BuildSuccess, store.BuildFailed, store.BuildTimeout, store.BuildCanceled, store.BuildDuplicate)
}

func (e *workerEnv) log(id int64) string {
	lines, err := e.db.ReadLog(context.Background(), store.JobBuild, id, 0, "", 100000)
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(l.Stream + "| " + l.Text + "\n")
	}
	return b.String()
}

// waitLog polls until the build's log holds text.
func (e *workerEnv) waitLog(id int64, text string) {
	e.t.Helper()
	if !storetest.Eventually(time.Minute, func() bool { return strings.Contains(e.log(id), text) }) {
		e.t.Fatalf("build %d log never showed %q:\n%s", id, text, e.log(id))
	}
}

func TestWorkerBuildsExactCommitAndReportsToGitLab(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newWorkerEnv(t, db)
		first := e.origin.commit("v1 devops", map[string]string{".ferry.yml": pipelineFile, "app.txt": "one"})
		e.origin.commit("v2", map[string]string{"app.txt": "two"})
		e.gitlab.FailNext(2) // the running status needs a retry; the build does not notice
		e.start(e.config("w1"))

		b := e.waitEnd(e.queue(first, "main").ID)
		if b.Status != store.BuildSuccess || b.Version == "" {
			t.Fatalf("build = %s %q (%s); log:\n%s", b.Status, b.Version, b.Error, e.log(b.ID))
		}
		v, err := db.GetVersion(context.Background(), *b.VersionID)
		must(t, err)
		if files := readArchive(t, v.Path); files["app.txt"].content != "one" {
			t.Errorf("artifact app.txt = %q, want the built commit's %q", files["app.txt"].content, "one")
		}
		if want := VersionName(b.QueuedAt, "main", first, ""); !strings.HasSuffix(v.Name, "-main-"+store.ShortSHA(first)) || len(v.Name) != len(want) {
			t.Errorf("version name %q, want like %q", v.Name, want)
		}
		if !strings.Contains(e.log(b.ID), "built "+v.Name) {
			t.Errorf("FERRY_VERSION did not reach the script; log:\n%s", e.log(b.ID))
		}
		eventually(func() bool { return len(e.gitlab.Tags("group/app")) > 0 }) // GitLab is told beside the build
		var states []string
		for _, s := range e.gitlab.Statuses("group/app") {
			states = append(states, s.State)
			if s.SHA != first || s.TargetURL != "https://ferry.example.com/builds/"+strconv.FormatInt(b.ID, 10) {
				t.Errorf("status %+v: wrong commit or link", s)
			}
		}
		if strings.Join(states, ",") != "running,success" {
			t.Errorf("GitLab saw states %v, want running then success", states)
		}
		tags := e.gitlab.Tags("group/app")
		if len(tags) != 1 || tags[0].Name != "ferry-"+v.Name || tags[0].SHA != first || !MadeByFerry("", tags[0].Name, tags[0].Message) {
			t.Errorf("GitLab tags = %+v, want ferry-%s on %s", tags, v.Name, store.ShortSHA(first))
		}

		dup := e.waitEnd(e.queue(first, "main").ID)
		if dup.Status != store.BuildDuplicate || dup.VersionID == nil || *dup.VersionID != v.ID {
			t.Errorf("second build of one commit = %s (version %v), want duplicate of version %d", dup.Status, dup.VersionID, v.ID)
		}
		if dup.FinishedAt != nil && dup.StartedAt != nil {
			t.Logf("duplicate detected in %s", dup.FinishedAt.Sub(*dup.StartedAt))
		}
	})
}

func TestWorkerFailsBadBuildsInWords(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newWorkerEnv(t, db)
		passwd, err := os.Stat("/etc/passwd")
		must(t, err)
		broken := e.origin.commit("broken", map[string]string{".ferry.yml": "build:\n  script: [\"true\"]\n\tartifact: x\n"})
		climbing := e.origin.commit("climb", map[string]string{".ferry.yml": "build:\n  script: [\"true\"]\n  artifact: ../../etc/passwd\n"})
		absolute := e.origin.commit("abs", map[string]string{".ferry.yml": "build:\n  script: [\"true\"]\n  artifact: /etc/passwd\n"})
		failing := e.origin.commit("fail", map[string]string{".ferry.yml": "build:\n  script: [\"echo about to fail\", \"exit 3\"]\n  artifact: x\n"})
		missing := e.origin.commit("none", map[string]string{".ferry.yml": "build:\n  script: [\"true\"]\n  artifact: dist\n"})
		slow := e.origin.commit("slow", map[string]string{".ferry.yml": "build:\n  script: [\"sleep 30\"]\n  artifact: x\n  timeout: 1s\n"})
		e.start(e.config("w1"))

		cases := []struct {
			name, sha, status, want string
		}{
			{"broken .ferry.yml", broken, store.BuildFailed, ".ferry.yml line 3"},
			{"artifact climbs out", climbing, store.BuildFailed, "leaves the checkout"},
			{"absolute artifact", absolute, store.BuildFailed, "must be relative"},
			{"script fails", failing, store.BuildFailed, "exit status 3"},
			{"artifact not made", missing, store.BuildFailed, "was not produced"},
			{"timeout", slow, store.BuildTimeout, "timed out after 1s"},
			{"commit gone", strings.Repeat("ab", 20), store.BuildFailed, "not found"},
		}
		for _, c := range cases {
			b := e.waitEnd(e.queue(c.sha, "main").ID)
			if b.Status != c.status || !strings.Contains(b.Error, c.want) {
				t.Errorf("%s: build = %s %q, want %s with %q; log:\n%s", c.name, b.Status, b.Error, c.status, c.want, e.log(b.ID))
			}
			if !strings.Contains(e.log(b.ID), c.want) {
				t.Errorf("%s: the log does not say %q:\n%s", c.name, c.want, e.log(b.ID))
			}
		}
		after, err := os.Stat("/etc/passwd")
		must(t, err)
		if !after.ModTime().Equal(passwd.ModTime()) {
			t.Errorf("/etc/passwd changed during the builds")
		}
		entries, _ := os.ReadDir(filepath.Join(e.dataDir, "workspaces", "app"))
		if len(entries) != 0 {
			t.Errorf("workspaces left behind: %v", entries)
		}
		countFailed := func() (n int) {
			for _, s := range e.gitlab.Statuses("group/app") {
				if s.State == StateFailed {
					n++
				}
			}
			return n
		}
		eventually(func() bool { return countFailed() == len(cases) })
		failed := countFailed()
		if failed != len(cases) {
			t.Errorf("GitLab got %d failed statuses, want %d: %+v", failed, len(cases), e.gitlab.Statuses("group/app"))
		}
	})
}

func TestWorkerUnreachableRemote(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newWorkerEnv(t, db)
		bad := "/nonexistent/nowhere.git"
		_, err := db.UpdateProject(context.Background(), "app", store.ProjectUpdate{CloneURL: &bad})
		must(t, err)
		e.start(e.config("w1"))
		b := e.waitEnd(e.queue(strings.Repeat("cd", 20), "main").ID)
		if b.Status != store.BuildFailed || !strings.Contains(b.Error, "unreachable") {
			t.Errorf("build = %s %q, want failed saying the remote is unreachable", b.Status, b.Error)
		}
	})
}

func TestWorkerPassesBranchAsDataAndKillsDaemons(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newWorkerEnv(t, db)
		outside := t.TempDir()
		pidFile := filepath.Join(outside, "daemon.pid")
		pipeline := "build:\n  script:\n    - 'echo \"branch=$FERRY_BRANCH commit=$FERRY_COMMIT\"'\n" +
			"    - 'setsid sleep 300 > /dev/null 2>&1 & echo $! > " + pidFile + "'\n" +
			"    - mkdir out && echo ok > out/ok\n  artifact: out\n"
		sha := e.origin.commit("daemon", map[string]string{".ferry.yml": pipeline})
		cfg := e.config("w1")
		cfg.NoSandbox = true // the pid file is outside the checkout; TestSandboxDaemonEndsWithScript is the sandboxed case
		e.start(cfg)

		b := e.waitEnd(e.queue(sha, "$(id)").ID)
		log := e.log(b.ID)
		if b.Status != store.BuildSuccess {
			t.Fatalf("build = %s %q; log:\n%s", b.Status, b.Error, log)
		}
		if !strings.Contains(log, "branch=$(id) commit="+sha) || strings.Contains(log, "uid=") {
			t.Errorf("the branch name was not passed as plain data; log:\n%s", log)
		}
		if strings.Contains(b.Version, "$") || strings.Contains(b.Version, "(") {
			t.Errorf("version name %q holds shell characters", b.Version)
		}
		data, err := os.ReadFile(pidFile)
		must(t, err)
		pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
		must(t, err)
		storetest.Eventually(10*time.Second, func() bool { return !running(pid) })
		if running(pid) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Errorf("the daemon the script left behind (pid %d) still runs after the build", pid)
		}
	})
}

// eventually waits up to 10 seconds for cond.
func eventually(cond func() bool) { storetest.Eventually(10*time.Second, cond) }

// running reports whether a process runs (a zombie does not count).
func running(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(stat), ") ")
	return !strings.HasPrefix(rest, "Z")
}

func TestWorkerCancelEndsRunningBuild(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newWorkerEnv(t, db)
		sha := e.origin.commit("sleepy", map[string]string{".ferry.yml": "build:\n  script: [\"sleep 600\"]\n  artifact: x\n"})
		e.start(e.config("w1"))
		b := e.queue(sha, "main")
		e.waitLog(b.ID, "$ sleep 600")
		asked := time.Now()
		_, err := db.CancelBuild(context.Background(), b.ID)
		must(t, err)
		got := e.waitEnd(b.ID)
		t.Logf("cancel of a running sleep 600 took %s", time.Since(asked).Round(time.Millisecond))
		if got.Status != store.BuildCanceled {
			t.Errorf("build = %s %q, want canceled", got.Status, got.Error)
		}
		lastState := func() string {
			s := e.gitlab.Statuses("group/app")
			if len(s) == 0 {
				return ""
			}
			return s[len(s)-1].State
		}
		// GitLab is told beside the build, maybe just after it ends.
		storetest.Eventually(10*time.Second, func() bool { return lastState() == StateCanceled })
		if s := e.gitlab.Statuses("group/app"); lastState() != StateCanceled {
			t.Errorf("GitLab statuses %+v, want the last canceled", s)
		}
	})
}

// A build whose process stops is taken over by another process and built again in a workspace
// of its own (a process killed with kill -9 is cmd/ferry's TestKilledProcessesWorkIsTakenOver).
func TestWorkerLostBuildIsTakenOver(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newWorkerEnv(t, db)
		// The project's cache is the one place both attempts' sandboxes share.
		marker := filepath.Join(e.dataDir, "caches", "app", "first-attempt")
		script := `if [ -e "$FERRY_CACHE_DIR/first-attempt" ]; then mkdir out && echo second > out/x; else touch "$FERRY_CACHE_DIR/first-attempt"; sleep 600; fi`
		sha := e.origin.commit("flaky", map[string]string{".ferry.yml": "build:\n  script:\n    - '" + script + "'\n  artifact: out\n"})
		_, stopA := e.start(e.config("dies"))
		b := e.queue(sha, "main")
		e.waitLog(b.ID, "$ if")
		eventually(func() bool { _, err := os.Stat(marker); return err == nil })
		if _, err := os.Stat(marker); err != nil {
			t.Fatalf("the first attempt never wrote its marker; log:\n%s", e.log(b.ID))
		}
		first := filepath.Join(e.dataDir, "workspaces", "app", fmt.Sprintf("%d-1", b.ID))
		if _, err := os.Stat(first); err != nil {
			t.Errorf("the first attempt does not run in its own workspace %s: %v", first, err)
		}
		stopA() // the process stops cleanly: it hands its build back at once, lease or not
		if got := e.wait(b.ID, store.BuildPending); got.Attempts != 1 {
			t.Fatalf("attempts = %d", got.Attempts)
		}
		e.start(e.config("survivor"))
		got := e.waitEnd(b.ID)
		if got.Status != store.BuildSuccess || got.Attempts != 2 {
			t.Errorf("build = %s after %d attempts (%s), want success on the second; log:\n%s", got.Status, got.Attempts, got.Error, e.log(b.ID))
		}
	})
}

func TestWorkerRetentionRemovesOldArtifacts(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newWorkerEnv(t, db)
		keep := 2
		_, err := db.UpdateProject(context.Background(), "app", store.ProjectUpdate{KeepVersions: &keep})
		must(t, err)
		e.start(e.config("w1"))
		var paths []string
		for i := range 3 {
			sha := e.origin.commit("v"+strconv.Itoa(i), map[string]string{".ferry.yml": pipelineFile, "app.txt": strconv.Itoa(i)})
			b := e.waitEnd(e.queue(sha, "main").ID)
			if b.Status != store.BuildSuccess {
				t.Fatalf("build %d = %s %s", i, b.Status, b.Error)
			}
			v, err := db.GetVersion(context.Background(), *b.VersionID)
			must(t, err)
			paths = append(paths, v.Path)
		}
		storetest.Eventually(10*time.Second, func() bool { // retention runs just after the build ends
			_, err := os.Stat(paths[0])
			return err != nil
		})
		if _, err := os.Stat(paths[0]); !os.IsNotExist(err) {
			t.Errorf("the oldest artifact %s is still there (err %v)", paths[0], err)
		}
		for _, p := range paths[1:] {
			if _, err := os.Stat(p); err != nil {
				t.Errorf("a kept artifact is gone: %v", err)
			}
		}
	})
}

func TestTagTemplates(t *testing.T) {
	v := TagVars{Version: "20260101120000-main-abcdef12", Branch: "feature/x y", SHA: strings.Repeat("a", 40), Number: 7, Project: "app"}
	for _, c := range []struct{ template, want string }{
		{"", "ferry-20260101120000-main-abcdef12"},
		{"release-{number}", "release-7"},
		{"{branch}/{short_sha}", "feature-x-y/aaaaaaaa"},
	} {
		got, err := TagName(c.template, v)
		if err != nil || got != c.want {
			t.Errorf("TagName(%q) = %q, %v; want %q", c.template, got, err, c.want)
		}
		if !MadeByFerry(c.template, got, "") {
			t.Errorf("MadeByFerry(%q, %q) = false", c.template, got)
		}
	}
	if _, err := TagName("bad {nope} ..", v); err == nil {
		t.Error("TagName accepted a template giving an invalid tag")
	}
	if MadeByFerry("", "v1.0.0", "release notes") {
		t.Error("a person's tag v1.0.0 taken for ferry's")
	}
}
