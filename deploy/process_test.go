package deploy_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"ferry/deploy"
	"ferry/deploy/sshtest"
	"ferry/store"
	"ferry/store/storetest"
)

// workerProcessEnv, set to a database URL, makes the test binary a deploy worker process on
// that database instead of running tests, so a test can kill a real process with SIGKILL.
const workerProcessEnv = "FERRY_DEPLOY_TEST_WORKER_DB"

// runWorkerProcess runs a deploy worker with short leases until SIGTERM or SIGKILL.
func runWorkerProcess(url string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	db, err := store.Open(ctx, store.Options{URL: url, DataDir: os.TempDir(), Key: storetest.Key})
	if err != nil {
		fmt.Fprintln(os.Stderr, "open the store:", err)
		return 1
	}
	defer db.Close()
	w := deploy.NewWorker(deploy.WorkerConfig{DB: db, Owner: fmt.Sprintf("process-%d", os.Getpid()), Workers: 1,
		LeaseTTL: 900 * time.Millisecond, Poll: 100 * time.Millisecond, MaxAttempts: 3,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err := w.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "deploy worker:", err)
		return 1
	}
	return 0
}

// workerProcess is a deploy worker running as its own process (this test binary).
type workerProcess struct {
	cmd    *exec.Cmd
	out    *lockedBuffer
	exited chan struct{}
}

// startWorkerProcess starts a worker process on the database at url; it is killed when t ends.
func startWorkerProcess(t *testing.T, url string) *workerProcess {
	t.Helper()
	p := &workerProcess{cmd: exec.Command(os.Args[0]), out: &lockedBuffer{}, exited: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), workerProcessEnv+"="+url)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	must(t, p.cmd.Start())
	go func() { p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("worker process %d:\n%s", p.cmd.Process.Pid, p.out.String())
		}
	})
	return p
}

// kill ends the process with SIGKILL, as a crash or the OOM killer would, and waits for it.
func (p *workerProcess) kill() {
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// A ferry process killed with SIGKILL while the new release waits for its health check leaves
// the host on that release; the process that takes over goes back to the release the host
// ran before (recorded before anything was stopped), or keeps the new one only once it passes.
func TestATakeoverAfterSIGKILLGoesBackToTheRecordedRelease(t *testing.T) {
	url := storetest.URL(t, store.Postgres)
	f := newDeployFixture(t, storetest.OpenURL(t, url), 1, workerOptions{noWorker: true})
	h := f.cluster.Hosts()[0]
	pipeline := testPipeline(`{ kind: serial }`, `{ command: 'test ! -e "$FERRY_SHARED_DIR/hold-$FERRY_VERSION"', timeout: 4s }`)
	for _, v := range []string{"a", "b", "c"} {
		f.version(v, artifact{}, pipeline)
	}
	first := startWorkerProcess(t, url)
	f.waitEnded(f.deploy(`{"environment":"staging","version":"a"}`), store.DeploymentSuccess)

	// b never passes its health check, and ferry dies while it waits for it.
	hold(t, h, "b")
	id := f.deploy(`{"environment":"staging","version":"b"}`)
	f.hostAt(id, "host-1", deploy.StepHealth)
	first.kill()
	assertCurrent(t, h, "b")
	second := startWorkerProcess(t, url)
	d := f.waitEnded(id, store.DeploymentFailed)
	if !strings.Contains(d.Error, "switched back to release a, which is running again") || strings.Contains(d.Error, "no previous release") {
		t.Errorf("deployment error %q, want a switch back to a", d.Error)
	}
	log := f.log(id, "")
	for _, want := range []string{"attempt 2: taking over from a worker that stopped",
		"taking over an interrupted attempt at step health: before it, the host ran a",
		"current already points at b, which was started: checking its health again"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	assertServing(t, h, "a")

	// c passes once the hold is lifted: the next takeover checks it again and keeps it,
	// without starting it a second time.
	unhold := hold(t, h, "c")
	id = f.deploy(`{"environment":"staging","version":"c"}`)
	f.hostAt(id, "host-1", deploy.StepHealth)
	second.kill()
	unhold()
	startWorkerProcess(t, url)
	f.waitEnded(id, store.DeploymentSuccess)
	assertServing(t, h, "c")
	out, err := os.ReadFile(h.Path("shared/logs/c.log"))
	must(t, err)
	if n := strings.Count(string(out), "listening on"); n != 1 {
		t.Errorf("c was started %d times, want once:\n%s", n, out)
	}
}

// ferry killed while it switches a host back (the failed release's stop hangs): the process
// that takes over finishes going back to the recorded release, with each release's own steps.
func TestATakeoverFinishesGoingBackToTheRecordedRelease(t *testing.T) {
	url := storetest.URL(t, store.Postgres)
	f := newDeployFixture(t, storetest.OpenURL(t, url), 1, workerOptions{noWorker: true})
	h := f.cluster.Hosts()[0]
	f.version("a", artifact{}, testPipeline(`{ kind: serial }`, ""))
	f.version("b", artifact{unhealthy: true}, `build:
  script: [ "true" ]
  artifact: app
deploy:
  path: `+sshtest.DefaultDeployPath+`
  stop: { command: 'while [ -e "$FERRY_SHARED_DIR/hold-stop" ]; do sleep 0.1; done; kill $(cat run/app.pid)', grace: 30s }
  start: bin/app
  health: { http: "http://127.0.0.1:8080/health", timeout: 2s }
`)
	first := startWorkerProcess(t, url)
	f.waitEnded(f.deploy(`{"environment":"staging","version":"a"}`), store.DeploymentSuccess)

	must(t, os.WriteFile(h.Path("shared/hold-stop"), nil, 0o644))
	id := f.deploy(`{"environment":"staging","version":"b"}`)
	f.hostAt(id, "host-1", deploy.StepRollback)
	first.kill()
	must(t, os.Remove(h.Path("shared/hold-stop")))
	startWorkerProcess(t, url)
	d := f.waitEnded(id, store.DeploymentFailed)
	for _, want := range []string{"ferry stopped while going back to release a", "switched back to release a, which is running again"} {
		if !strings.Contains(d.Error, want) {
			t.Errorf("deployment error %q does not say %q", d.Error, want)
		}
	}
	if log := f.log(id, ""); !strings.Contains(log, "taking over an interrupted attempt at step rollback: before it, the host ran a") {
		t.Errorf("log lacks the takeover at step rollback:\n%s", log)
	}
	assertServing(t, h, "a")
}
