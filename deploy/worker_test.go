package deploy_test

import (
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	_ "github.com/lib/pq"

	"ferry/deploy"
	"ferry/deploy/sshtest"
	"ferry/store"
	"ferry/store/storetest"
)

// holdHealth is a health check that fails while the host holds shared/hold-<version>, so a
// test keeps one version on one host in its health step as long as it likes (see hold).
const holdHealth = `{ command: 'test ! -e "$FERRY_SHARED_DIR/hold-$FERRY_VERSION"', timeout: 30s }`

// hold keeps version failing holdHealth on h until the returned func is called.
func hold(t *testing.T, h *sshtest.Host, version string) (release func()) {
	t.Helper()
	must(t, os.MkdirAll(h.Path("shared"), 0o755))
	must(t, os.WriteFile(h.Path("shared/hold-"+version), nil, 0o644))
	return func() { os.Remove(h.Path("shared/hold-" + version)) }
}

func TestDeployRollbackAndInstancesThroughTheAPI(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		f := newDeployFixture(t, db, 3, workerOptions{unpinned: "host-3"})
		pipeline := testPipeline(`{ kind: rolling, batch: 2 }`, "")
		v1 := f.version("v1", artifact{}, pipeline)
		v2 := f.version("v2", artifact{}, pipeline)

		d := f.waitEnded(f.deploy(`{"environment":"staging","version":"v1"}`), store.DeploymentSuccess)
		for i, h := range f.cluster.Hosts() {
			hs := d.Hosts[i]
			if hs.Host != h.Name || hs.Status != store.HostSucceeded || hs.Step != deploy.StepDone || hs.BytesSent != v1.Size ||
				hs.StartedAt == nil || hs.FinishedAt == nil || hs.Error != "" {
				t.Errorf("host step %+v, want %s succeeded with %d bytes sent", hs, h.Name, v1.Size)
			}
			assertServing(t, h, "v1")
		}
		// Rolling by 2: host-3 starts only once host-1 and host-2 are done.
		for _, hs := range d.Hosts[:2] {
			if d.Hosts[2].StartedAt.Before(*hs.FinishedAt) {
				t.Errorf("host-3 started at %s, before %s finished at %s", d.Hosts[2].StartedAt, hs.Host, hs.FinishedAt)
			}
		}
		pinned, err := db.GetHost(context.Background(), "host-3")
		must(t, err)
		if pinned.HostKey != f.cluster.Hosts()[2].HostKey() {
			t.Errorf("host-3's key was not pinned on first use: %q", pinned.HostKey)
		}
		log := f.log(d.ID, "")
		for _, want := range []string{"deploying v1 to staging (rolling by 2) on host-1, host-2, host-3",
			"host-3 ferry: no host key was pinned for host-3: trusting SHA256:", "host-2 ferry: health check http://127.0.0.1:8080/health passed",
			"host-1 stdout: started in the background", "success: v1 is on every host"} {
			if !strings.Contains(log, want) {
				t.Errorf("log lacks %q:\n%s", want, log)
			}
		}
		for _, line := range strings.Split(f.log(d.ID, "host-2"), "\n") {
			if !strings.HasPrefix(line, "host-2 ") {
				t.Errorf("?host=host-2 gave another host's line: %s", line)
			}
		}

		d = f.waitEnded(f.deploy(`{"environment":"staging","version":"v2"}`), store.DeploymentSuccess)
		for i, h := range f.cluster.Hosts() {
			assertServing(t, h, "v2")
			// Only what v1 on the host lacks is sent: v2's VERSION, not the service binary.
			if d.Hosts[i].BytesSent <= 0 || d.Hosts[i].BytesSent >= v2.Size/10 {
				t.Errorf("%s: sent %d bytes of v2, want some but under a tenth of %d", h.Name, d.Hosts[i].BytesSent, v2.Size)
			}
		}

		// A rollback is a deployment of an older version: already on the hosts, nothing moves.
		d = f.waitEnded(f.deploy(`{"environment":"staging","version":"v1"}`), store.DeploymentSuccess)
		instances := f.instances()
		for i, h := range f.cluster.Hosts() {
			assertServing(t, h, "v1")
			if d.Hosts[i].BytesSent != 0 {
				t.Errorf("%s: the rollback to v1 sent %d bytes, want 0", h.Name, d.Hosts[i].BytesSent)
			}
			in := instances[h.Name]
			if in.Version != "v1" || in.Previous != "v2" || in.Environment != "staging" || in.Status != store.HostSucceeded ||
				!slices.Equal(in.Releases, []string{"v1", "v2"}) || in.DeploymentID == nil || *in.DeploymentID != d.ID || in.Since.IsZero() {
				t.Errorf("%s: instance %+v, want v1 (previous v2, releases [v1 v2]) by deployment %d", h.Name, in, d.ID)
			}
		}
	})
}

func TestAHealthCheckThatNeverPassesStopsTheRollout(t *testing.T) {
	f := newDeployFixture(t, storetest.Open(t, store.SQLite), 3, workerOptions{})
	f.version("v1", artifact{}, testPipeline(`{ kind: rolling, batch: 1 }`, ""))
	f.waitEnded(f.deploy(`{"environment":"staging","version":"v1"}`), store.DeploymentSuccess)
	f.version("bad", artifact{unhealthy: true}, testPipeline(`{ kind: rolling, batch: 1 }`,
		`{ http: "http://127.0.0.1:8080/health", timeout: 5s }`)) // room for a slow first answer on a busy machine

	d := f.waitEnded(f.deploy(`{"environment":"staging","version":"bad"}`), store.DeploymentFailed)
	for _, want := range []string{"1 of 3 hosts failed: host-1:", "health check http://127.0.0.1:8080/health did not pass within 5s",
		"answered 500 Internal Server Error unhealthy bad", "switched back to release v1", "not started: host-2, host-3"} {
		if !strings.Contains(d.Error, want) {
			t.Errorf("deployment error %q does not say %q", d.Error, want)
		}
	}
	want := []string{store.HostFailed, store.HostSkipped, store.HostSkipped}
	for i, hs := range d.Hosts {
		if hs.Status != want[i] || hs.Error == "" {
			t.Errorf("%s: %s (%q), want %s with a reason", hs.Host, hs.Status, hs.Error, want[i])
		}
	}
	for _, h := range f.cluster.Hosts() {
		assertServing(t, h, "v1")
	}
	if in := f.instances()["host-1"]; in.Version != "v1" || in.Status != store.HostFailed {
		t.Errorf("host-1 instance %+v, want v1 running after a failed deployment", in)
	}
}

func TestCancelInTheMiddleOfARolloutThroughTheAPI(t *testing.T) {
	f := newDeployFixture(t, storetest.Open(t, store.SQLite), 3, workerOptions{})
	pipeline := testPipeline(`{ kind: serial }`, holdHealth)
	f.version("v1", artifact{}, pipeline)
	f.version("v2", artifact{}, pipeline)
	f.waitEnded(f.deploy(`{"environment":"staging","version":"v1"}`), store.DeploymentSuccess)

	unhold := hold(t, f.cluster.Hosts()[1], "v2")
	id := f.deploy(`{"environment":"staging","version":"v2"}`)
	f.hostAt(id, "host-2", deploy.StepHealth)
	f.api.must(http.StatusOK, "POST", fmt.Sprintf("/api/v1/deployments/%d/cancel", id), "")
	// The hold stays until the cancel has been acted on: released earlier, host-2 could pass
	// its health check in the second before the worker notices the cancel.
	d := f.waitEnded(id, store.DeploymentCanceled)
	unhold()
	if !strings.Contains(d.Error, "canceled on request: 1 of 3 hosts done") {
		t.Errorf("deployment error %q does not say it was canceled after one host", d.Error)
	}
	want := []string{store.HostSucceeded, store.HostCanceled, store.HostCanceled}
	for i, hs := range d.Hosts {
		if hs.Status != want[i] {
			t.Errorf("%s: %s (%q), want %s", hs.Host, hs.Status, hs.Error, want[i])
		}
	}
	if d.Hosts[2].Error != "not started: the deployment was canceled" {
		t.Errorf("host-3 says %q", d.Hosts[2].Error)
	}
	assertServing(t, f.cluster.Hosts()[0], "v2")
	for _, h := range f.cluster.Hosts()[1:] {
		assertServing(t, h, "v1")
	}
	if got := releaseEntries(t, f.cluster.Hosts()[2]); !slices.Equal(got, []string{"v1"}) {
		t.Errorf("host-3 holds %v after the cancel, want only [v1]", got)
	}
	f.api.must(http.StatusConflict, "POST", fmt.Sprintf("/api/v1/deployments/%d/cancel", id), "")
}

func TestRetryDeploysOnlyTheFailedHosts(t *testing.T) {
	f := newDeployFixture(t, storetest.Open(t, store.SQLite), 3, workerOptions{})
	pipeline := testPipeline(`{ kind: parallel, continue_on_failure: true }`,
		`{ command: 'test ! -e "$FERRY_SHARED_DIR/hold-$FERRY_VERSION"', timeout: 1s }`)
	f.version("v1", artifact{}, pipeline)
	f.version("v2", artifact{}, pipeline)
	f.waitEnded(f.deploy(`{"environment":"staging","version":"v1"}`), store.DeploymentSuccess)

	unhold := hold(t, f.cluster.Hosts()[1], "v2")
	d := f.waitEnded(f.deploy(`{"environment":"staging","version":"v2"}`), store.DeploymentFailed)
	if !strings.HasPrefix(d.Error, "1 of 3 hosts failed: host-2: ") {
		t.Errorf("deployment error %q, want host-2 named as the one failure", d.Error)
	}
	assertServing(t, f.cluster.Hosts()[1], "v1")
	unhold()

	var retry store.Deployment
	f.api.must(http.StatusCreated, "POST", fmt.Sprintf("/api/v1/deployments/%d/retry", d.ID), "").decode(&retry)
	if len(retry.Hosts) != 1 || retry.Hosts[0].Host != "host-2" || retry.Version != "v2" {
		t.Fatalf("retry %+v, want v2 on host-2 only", retry)
	}
	f.waitEnded(retry.ID, store.DeploymentSuccess)
	for _, h := range f.cluster.Hosts() {
		assertServing(t, h, "v2")
	}
	f.api.must(http.StatusBadRequest, "POST", fmt.Sprintf("/api/v1/deployments/%d/retry", retry.ID), "")
}

// A worker that stops in the middle of a deployment hands it back at once (its lease need not
// run out), and another worker finishes it. A worker killed outright is deploy/process_test.go's
// and cmd/ferry's; one that runs out of attempts is store's TestReapDeployments.
func TestADeploymentOfAStoppedWorkerIsHandedOver(t *testing.T) {
	db := storetest.Open(t, store.SQLite)
	f := newDeployFixture(t, db, 2, workerOptions{})
	pipeline := testPipeline(`{ kind: serial }`, holdHealth)
	for _, v := range []string{"v1", "v2"} {
		f.version(v, artifact{}, pipeline)
	}
	f.waitEnded(f.deploy(`{"environment":"staging","version":"v1"}`), store.DeploymentSuccess)

	// ferry stops while host-1 waits for its health check.
	unhold := hold(t, f.cluster.Hosts()[0], "v2")
	id := f.deploy(`{"environment":"staging","version":"v2"}`)
	f.hostAt(id, "host-1", deploy.StepHealth)
	f.stop()
	unhold()
	if d := f.deployment(id); d.Status != store.DeploymentQueued {
		t.Fatalf("after the worker stopped, deployment %d is %s, want queued again at once", id, d.Status)
	}
	f.startWorker(workerOptions{maxAttempts: 2})
	d := f.waitEnded(id, store.DeploymentSuccess)
	if log := f.log(id, ""); d.Attempts != 2 || !strings.Contains(log, store.Released) {
		t.Errorf("attempts %d, log:\n%s", d.Attempts, log)
	}
	for _, h := range f.cluster.Hosts() {
		assertServing(t, h, "v2")
	}
}

func TestDeploymentsToOneEnvironmentWaitInOrder(t *testing.T) {
	f := newDeployFixture(t, storetest.Open(t, store.SQLite), 1, workerOptions{})
	pipeline := testPipeline(`{ kind: serial }`, holdHealth)
	f.version("v1", artifact{}, pipeline)
	f.version("v2", artifact{}, pipeline)

	unhold := hold(t, f.cluster.Hosts()[0], "v1")
	first := f.deploy(`{"environment":"staging","version":"v1"}`)
	f.hostAt(first, "host-1", deploy.StepHealth)
	second := f.deploy(`{"environment":"staging","version":"v2"}`)
	time.Sleep(300 * time.Millisecond) // three polls of the worker: it must not start it
	waiting := f.deployment(second)
	if want := fmt.Sprintf("deployment %d (running) to staging", first); waiting.Status != store.DeploymentQueued || waiting.WaitingFor != want {
		t.Errorf("second deployment is %s waiting for %q, want queued waiting for %q", waiting.Status, waiting.WaitingFor, want)
	}
	unhold()
	a := f.waitEnded(first, store.DeploymentSuccess)
	b := f.waitEnded(second, store.DeploymentSuccess)
	if b.StartedAt.Before(*a.FinishedAt) {
		t.Errorf("the second deployment started at %s, before the first finished at %s", b.StartedAt, a.FinishedAt)
	}
	assertServing(t, f.cluster.Hosts()[0], "v2")
}

func TestVersionsThatCannotBeDeployedAndChangedHostKeys(t *testing.T) {
	url := storetest.URL(t, store.Postgres)
	f := newDeployFixture(t, storetest.OpenURL(t, url), 1, workerOptions{})
	h := f.cluster.Hosts()[0]
	pipeline := testPipeline(`{ kind: serial }`, "")
	gone := f.version("gone", artifact{}, pipeline)
	f.version("v1", artifact{}, pipeline)
	f.version("v2", artifact{}, pipeline)

	must(t, os.Remove(gone.Artifact))
	d := f.waitEnded(f.deploy(`{"environment":"staging","version":"gone"}`), store.DeploymentFailed)
	if !strings.Contains(d.Error, "the artifact of version gone is missing from the artifact store") {
		t.Errorf("deployment error %q does not say the artifact is missing", d.Error)
	}

	// Retention removes v1 between the request and the worker's start.
	f.stop()
	id := f.deploy(`{"environment":"staging","version":"v1"}`)
	raw, err := sql.Open("postgres", url)
	must(t, err)
	defer raw.Close()
	_, err = raw.Exec(`UPDATE versions SET deleted_at = now() WHERE name = 'v1'`)
	must(t, err)
	f.startWorker(workerOptions{})
	d = f.waitEnded(id, store.DeploymentFailed)
	if !strings.Contains(d.Error, "version v1 was removed by retention on ") {
		t.Errorf("deployment error %q does not say v1 was removed", d.Error)
	}
	r := f.api.must(http.StatusBadRequest, "POST", "/api/v1/projects/shop/deployments", `{"environment":"staging","version":"v1"}`)
	if !strings.Contains(r.body, "v1 of shop was removed by retention") {
		t.Errorf("deploying a removed version says %s", r.body)
	}

	f.waitEnded(f.deploy(`{"environment":"staging","version":"v2"}`), store.DeploymentSuccess)
	old := h.HostKey()
	h.RegenerateHostKey(t)
	d = f.waitEnded(f.deploy(`{"environment":"staging","version":"v2"}`), store.DeploymentFailed)
	wantError(t, errorOf(d.Hosts[0].Error), "host key of host-1", "changed: expected "+fingerprint(t, old)+", got "+fingerprint(t, h.HostKey()))
	if !strings.HasPrefix(d.Error, "1 of 1 hosts failed: host-1: host key of host-1") {
		t.Errorf("deployment error %q", d.Error)
	}
	assertServing(t, h, "v2")
}

func TestAGoodBuildIsDeployedWhereTheTriggerSays(t *testing.T) {
	f := newDeployFixture(t, storetest.Open(t, store.SQLite), 2, workerOptions{})
	f.version("20260301120000-main-3f2a9c1d", artifact{}, testPipeline(`{ kind: parallel }`, ""),
		store.NewDeployment{ProjectID: f.project.ID, EnvironmentID: f.env.ID, TriggeredBy: "build of main"})
	var list []store.Deployment
	f.api.must(http.StatusOK, "GET", "/api/v1/projects/shop/deployments", "").decode(&list)
	if len(list) != 1 || list[0].BuildID == nil {
		t.Fatalf("the good build queued %+v, want one deployment naming its build", list)
	}
	f.waitEnded(list[0].ID, store.DeploymentSuccess)
	for _, h := range f.cluster.Hosts() {
		assertServing(t, h, "20260301120000-main-3f2a9c1d")
		if in := f.instances()[h.Name]; in.Version != "20260301120000-main-3f2a9c1d" || in.Previous != "" {
			t.Errorf("%s: instance %+v", h.Name, in)
		}
	}
}
