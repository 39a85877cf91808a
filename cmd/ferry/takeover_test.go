package main

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"ferry/deploy/sshtest"
	"ferry/store"
	"ferry/store/runner"
	"ferry/store/storetest"
)

// takeoverPipeline builds only where the project's build cache holds "go" (else its script
// sleeps, marked by scriptMarker, until its worker is killed), and deploys serially; a host
// holding shared/hold fails its health check until the file goes.
const scriptMarker = "86411"

const takeoverPipeline = `build:
  script:
    - 'if [ -e "$FERRY_CACHE_DIR/go" ]; then cp -R service dist && echo "$FERRY_VERSION" > dist/VERSION; else sleep ` + scriptMarker + `; fi'
  artifact: dist
deploy:
  path: ` + sshtest.DefaultDeployPath + `
  keep_releases: 3
  stop: { pid_file: run/app.pid, grace: 2s }
  start: bin/start.sh
  health: { command: 'test ! -e "$FERRY_SHARED_DIR/hold" && kill -0 "$(cat run/app.pid)"', timeout: 120s }
  strategy: { kind: serial }
`

// TestKilledProcessesWorkIsTakenOver runs ferry as a team that outgrew one machine does: four
// processes on one PostgreSQL, on two "machines" (data dirs). A takes webhooks and serves the
// API only; B (machine 1) builds; C (machine 2) builds and deploys; D (machine 1) deploys. Each
// kind of work is killed with SIGKILL in the middle and finished by another process, without a
// shared disk: B mid-build, once as soon as it claimed the build and once while the script runs
// (the script dies with it; C builds the commit again from its own mirror; a B stopped with
// SIGTERM instead hands the build over at once), C mid-deployment to three real sshd hosts (D carries on and leaves the host C had
// finished alone), and whichever process holds a notice channel mid-send (the other sends it).
// How long each takeover took is logged; BenchmarkTakeoverAfterKill measures it.
func TestKilledProcessesWorkIsTakenOver(t *testing.T) {
	if bound := runner.DefaultLease + runner.ReapEvery(runner.DefaultLease); bound > 10*time.Second {
		t.Fatalf("a dead process's job waits up to %s for the default lease to run out and be reaped, want at most 10s", bound)
	}
	dbURL := storetest.URL(t, store.Postgres)
	sql := mustSQL(t, dbURL)
	machine1, machine2 := filepath.Join(t.TempDir(), "machine-1"), filepath.Join(t.TempDir(), "machine-2")
	env := func(dataDir string, builds, deploys int) []string {
		return ferryEnv("FERRY_DATA_DIR="+dataDir, "FERRY_ADDR=127.0.0.1:0", "FERRY_DATABASE_URL="+dbURL,
			"FERRY_SECRET_KEY=shared-by-every-machine", "FERRY_CHANNEL_ALLOWED_NETS=127.0.0.1/32",
			fmt.Sprintf("FERRY_BUILD_WORKERS=%d", builds), fmt.Sprintf("FERRY_DEPLOY_WORKERS=%d", deploys))
	}
	cluster := sshtest.Start(t, 3, sshtest.Options{})
	repo := newGitRepo(t)
	if err := os.WriteFile(filepath.Join(repo.dir, ".ferry.yml"), []byte(takeoverPipeline), 0o644); err != nil {
		t.Fatal(err)
	}
	// Machine 2 may build; machine 1's scripts wait until killed.
	if err := os.MkdirAll(filepath.Join(machine2, "caches", "orders", "go"), 0o700); err != nil {
		t.Fatal(err)
	}

	a := startServer(t, env(machine1, 0, 0))
	res := runFerry(t, env(machine1, 0, 0), "", "token", "add", "admin")
	if res.code != 0 {
		t.Fatalf("ferry token add admin: exit %d: %s", res.code, res.stderr)
	}
	token := strings.TrimSpace(res.stdout)
	api := newClient(t, a.URL, token)
	for _, h := range cluster.Hosts() {
		api.api(http.StatusCreated, "POST", "/api/v1/hosts", map[string]any{"name": h.Name, "address": h.Addr(),
			"port": h.Port(), "user": "root", "private_key": string(cluster.ClientKeyPEM), "host_key": h.HostKey()}, nil)
	}
	api.api(http.StatusCreated, "POST", "/api/v1/projects", map[string]any{"name": "orders", "gitlab_path": "shop/orders",
		"clone_url": repo.dir, "webhook_secret": "hook-secret-123456",
		"trigger": map[string]any{"keyword": "devops", "branches": []string{"main"}}}, nil)
	api.api(http.StatusCreated, "POST", "/api/v1/projects/orders/environments",
		map[string]any{"name": "staging", "hosts": []string{"host-1", "host-2", "host-3"}}, nil)
	// host-2 keeps failing its health check until the test lets it pass.
	hold := cluster.Hosts()[1].Path("shared/hold")
	if err := os.MkdirAll(filepath.Dir(hold), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(hold, nil, 0o644); err != nil {
		t.Fatal(err)
	}

	// Builds: the webhook reaches A, B builds and is killed, C (machine 2) takes over. C is
	// paused (SIGSTOP) until B holds the build, so that B gets it.
	var c *server
	var built store.Build
	leftover := false // a script of the last B outlived it
	for i, point := range []string{"killed as soon as B claims it", "killed while its script runs", "stopped cleanly while its script runs"} {
		b := startServer(t, env(machine1, 1, 0))
		if leftover {
			// A ferry starting on the machine ends what a dead one left (its run records).
			storetest.WaitFor(t, 30*time.Second, "the next ferry on machine 1 ending the script the killed one left", func() bool { return len(scriptPIDs(t)) == 0 })
			leftover = false
		}
		if c != nil {
			sendSignal(t, c, syscall.SIGSTOP)
		}
		buildID := pushBuild(t, a, repo, repo.commit(fmt.Sprintf("release %d devops", i)), fmt.Sprintf("deliver-%d", i))
		storetest.WaitFor(t, time.Minute, "B holding build "+strconv.FormatInt(buildID, 10), func() bool {
			return holderPID(t, sql, "builds", buildID) == b.cmd.Process.Pid
		})
		if strings.HasSuffix(point, "while its script runs") {
			storetest.WaitFor(t, time.Minute, "B's build script running", func() bool { return len(scriptPIDs(t)) > 0 })
		}
		if c == nil {
			c = startServer(t, env(machine2, 1, 1))
		} else {
			sendSignal(t, c, syscall.SIGCONT)
		}
		var killed time.Time
		if strings.HasPrefix(point, "stopped cleanly") {
			killed = time.Now()
			if code := b.stop(); code != 0 {
				t.Fatalf("B exited %d after SIGTERM", code)
			}
		} else {
			killed = kill9(t, b)
		}
		storetest.WaitFor(t, time.Minute, "another process on build "+strconv.FormatInt(buildID, 10), func() bool {
			return holderPID(t, sql, "builds", buildID) == c.cmd.Process.Pid
		})
		t.Logf("build %s: taken over %s later", point, time.Since(killed).Round(10*time.Millisecond))
		// The script dies with B (Pdeathsig on bwrap, --die-with-parent inside). On a loaded
		// machine, B killed in the very moment bwrap starts has once left bwrap running with
		// its script (parent 1): then the next ferry on the machine ends it by the run's record
		// (above), as a restarted ferry (or systemd, KillMode=mixed) does in production.
		if !storetest.Eventually(10*time.Second, func() bool { return len(scriptPIDs(t)) == 0 }) {
			n := len(scriptPIDs(t))
			if i == 2 {
				t.Fatalf("B stopped cleanly, and its build script still runs 10 s later")
			}
			t.Logf("build %s: %d script process(es) outlived B (killed while the sandbox started)", point, n)
			leftover = true
		}
		built = waitBuild(t, api, buildID)
		if built.Status != store.BuildSuccess || built.Attempts != 2 {
			t.Fatalf("build %s ended %s after %d attempts (%s), want success on the second\n%s", point, built.Status, built.Attempts, built.Error, c.logs.String())
		}
		var log struct{ Lines []store.LogLine }
		api.api(http.StatusOK, "GET", fmt.Sprintf("/api/v1/builds/%d/log", buildID), nil, &log)
		handedOver := slices.ContainsFunc(log.Lines, func(l store.LogLine) bool { return l.Text == store.Released })
		if want := strings.HasPrefix(point, "stopped cleanly"); handedOver != want {
			t.Errorf("build %s: a %q line in its log is %v, want %v (a stopped process hands its build over, a killed one cannot)",
				point, store.Released, handedOver, want)
		}
	}

	// A deployment of the last version: C deploys, and is killed with host-1 done and host-2
	// waiting for its health check.
	var deployment store.Deployment
	api.api(http.StatusCreated, "POST", "/api/v1/projects/orders/deployments",
		map[string]any{"environment": "staging", "version": built.Version}, &deployment)
	deployID := deployment.ID
	storetest.WaitFor(t, 2*time.Minute, "host-2 at its health check", func() bool {
		d := getDeployment(t, api, deployID)
		return len(d.Hosts) == 3 && d.Hosts[0].Status == store.HostSucceeded && d.Hosts[1].Step == "health"
	})
	if pid := holderPID(t, sql, "deployments", deployID); pid != c.cmd.Process.Pid {
		t.Fatalf("deployment %d is held by process %d, want C (%d)", deployID, pid, c.cmd.Process.Pid)
	}
	host1PID := readFile(t, cluster.Hosts()[0].Path("current/run/app.pid"))
	d := startServer(t, env(machine1, 0, 1))
	killed := kill9(t, c)
	if err := os.Remove(hold); err != nil {
		t.Fatal(err)
	}
	storetest.WaitFor(t, time.Minute, "another process on deployment "+strconv.FormatInt(deployID, 10), func() bool {
		return holderPID(t, sql, "deployments", deployID) == d.cmd.Process.Pid
	})
	t.Logf("deployment taken over %s after kill -9", time.Since(killed).Round(10*time.Millisecond))
	done := waitDeployment(t, api, deployID)
	if done.Status != store.DeploymentSuccess || done.Attempts != 2 {
		t.Fatalf("deployment ended %s after %d attempts (%s), want success on the second\n%s", done.Status, done.Attempts, done.Error, d.logs.String())
	}
	for _, h := range cluster.Hosts() {
		assertRunning(t, h, built.Version)
	}
	if got := readFile(t, cluster.Hosts()[0].Path("current/run/app.pid")); got != host1PID {
		t.Errorf("host-1 was restarted again after the takeover (pid %s, then %s): work done twice on a host", host1PID, got)
	}

	// A notice: the first send hangs in whichever process claimed the channel; it is killed.
	// Notices of what happened before the channel existed are not its to send.
	storetest.WaitFor(t, time.Minute, "the outbox taken in", func() bool {
		var waiting int
		if err := sql.Get(&waiting, `SELECT COUNT(*) FROM outbox WHERE done_at IS NULL`); err != nil {
			t.Fatal(err)
		}
		return waiting == 0
	})
	recv := newHangingReceiver(t)
	api.api(http.StatusCreated, "POST", "/api/v1/projects/orders/channels", map[string]any{"kind": "webhook", "url": recv.URL,
		"events": []string{store.OutboxDeploymentSucceeded}}, nil)
	var again store.Deployment
	api.api(http.StatusCreated, "POST", "/api/v1/projects/orders/deployments",
		map[string]any{"environment": "staging", "version": built.Version}, &again)
	if got := waitDeployment(t, api, again.ID); got.Status != store.DeploymentSuccess {
		t.Fatalf("the second deployment ended %s: %s", got.Status, got.Error)
	}
	storetest.WaitFor(t, time.Minute, "the notice sent", func() bool { return recv.count() == 1 })
	sender := a
	holder := holderPID(t, sql, "channels", 0)
	if holder == d.cmd.Process.Pid {
		sender = d
	}
	survivor := map[*server]*server{a: d, d: a}[sender]
	killed = kill9(t, sender)
	if !storetest.Eventually(time.Minute, func() bool { return recv.count() == 2 }) {
		var rows []struct {
			Owner string     `db:"lease_owner"`
			Until *time.Time `db:"lease_until"`
		}
		sql.Select(&rows, `SELECT lease_owner, lease_until FROM channels`)
		t.Fatalf("the notice was not sent again by the other process within a minute; channel holder was %d (A %d, D %d), channels now %+v\nsurvivor:\n%s",
			holder, a.cmd.Process.Pid, d.cmd.Process.Pid, rows, survivor.logs.String())
	}
	t.Logf("notice taken over %s after kill -9", time.Since(killed).Round(10*time.Millisecond))
	var deliveries []store.Delivery
	if !storetest.Eventually(30*time.Second, func() bool {
		newClient(t, survivor.URL, token).api(http.StatusOK, "GET", "/api/v1/projects/orders/deliveries", nil, &deliveries)
		return len(deliveries) == 1 && deliveries[0].Status == store.DeliverySent
	}) {
		t.Fatalf("deliveries %+v, want the one notice sent\nsurvivor:\n%s", deliveries, survivor.logs.String())
	}
	if deliveries[0].Attempts != 1 {
		t.Errorf("delivery %+v: want sent on its first recorded try (the killed sender recorded nothing)", deliveries[0])
	}
	if first, second := recv.body(0), recv.body(1); first != second {
		t.Errorf("the notice sent again differs from the first try:\n%s\n%s", first, second)
	}
}

// mustSQL opens the database at url for reading what the API does not show (lease holders).
func mustSQL(tb testing.TB, url string) *sqlx.DB {
	db, err := sqlx.Open("postgres", url)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

// sendSignal sends sig to s.
func sendSignal(t testing.TB, s *server, sig syscall.Signal) {
	t.Helper()
	if err := s.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

// kill9 kills s with SIGKILL, as a crash or the OOM killer would, waits for it and returns when.
func kill9(t testing.TB, s *server) time.Time {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	at := time.Now()
	<-s.exited
	return at
}

// leasePID reads the process id out of a lease token ("host:pid:worker/token" for builds and
// deployments, "host-pid:worker/token" for notice channels).
var leasePID = regexp.MustCompile(`[:-](\d+):\d+/[0-9a-f]+$`)

// holderPID returns the process id of the lease holder of row id of table (channels: any row
// with a lease), or 0 when none holds it.
func holderPID(t testing.TB, db *sqlx.DB, table string, id int64) int {
	t.Helper()
	var owners []string
	var err error
	if table == "channels" {
		err = db.Select(&owners, `SELECT lease_owner FROM channels WHERE lease_owner <> ''`)
	} else {
		err = db.Select(&owners, `SELECT lease_owner FROM `+table+` WHERE id = $1 AND status = 'running'`, id)
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range owners {
		if m := leasePID.FindStringSubmatch(o); m != nil {
			pid, _ := strconv.Atoi(m[1])
			return pid
		}
	}
	return 0
}

// scriptPIDs returns the processes of this machine running the test's build script.
func scriptPIDs(t testing.TB) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if strings.Join(strings.Split(string(cmdline), "\x00"), " ") == "sleep "+scriptMarker+" " {
			pids = append(pids, pid)
		}
	}
	return pids
}

func getDeployment(t *testing.T, api *client, id int64) store.Deployment {
	t.Helper()
	var d store.Deployment
	api.api(http.StatusOK, "GET", fmt.Sprintf("/api/v1/deployments/%d", id), nil, &d)
	return d
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(data))
}

// hangingReceiver is a webhook endpoint that never answers its first request and answers
// every later one 200.
type hangingReceiver struct {
	*httptest.Server
	mu     sync.Mutex
	bodies []string
	hang   chan struct{}
}

func newHangingReceiver(t *testing.T) *hangingReceiver {
	r := &hangingReceiver{hang: make(chan struct{})}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.bodies = append(r.bodies, string(body))
		first := len(r.bodies) == 1
		r.mu.Unlock()
		if first {
			select {
			case <-r.hang:
			case <-req.Context().Done():
			}
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(func() {
		close(r.hang)
		r.Close()
	})
	return r
}

func (r *hangingReceiver) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.bodies)
}

func (r *hangingReceiver) body(i int) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.bodies[i]
}
