package deploy_test

import (
	"context"
	"database/sql"
	"os"
	"strings"
	"testing"
	"time"

	"ferry/deploy"
	"ferry/store"
	"ferry/store/storetest"
)

// healthCalls is a health check that, each time it runs, writes down which SSH connection ran
// it ($SSH_CLIENT names the client's port) and fails while the host holds
// shared/hold-<version> (see hold).
const healthCalls = `{ command: 'echo "$SSH_CLIENT" >> "$FERRY_SHARED_DIR/health-calls"; test ! -e "$FERRY_SHARED_DIR/hold-$FERRY_VERSION"', timeout: 60s }`

// calls returns the SSH connections that ran healthCalls on h, one per call, in order.
func calls(t *testing.T, h interface{ Path(string) string }) []string {
	t.Helper()
	b, err := os.ReadFile(h.Path("shared/health-calls"))
	if os.IsNotExist(err) {
		return nil
	}
	must(t, err)
	return strings.Fields(strings.ReplaceAll(strings.TrimSpace(string(b)), " ", "_"))
}

func count(list []string, s string) int {
	n := 0
	for _, x := range list {
		if x == s {
			n++
		}
	}
	return n
}

// The fencing case: a deployment's lease runs out while its run is alive (forced here by moving
// lease_until back), and a second loop of the same worker, with the same worker name, claims
// it. The stale run must find its lease gone, stop without touching the host again (no more
// health calls, no switch back), and neither finish nor cancel the deployment the new run
// carries on to success.
func TestAStaleRunStopsWhenAnotherLoopOfItsWorkerTakesTheDeploymentOver(t *testing.T) {
	url := storetest.URL(t, store.Postgres)
	db := storetest.OpenURL(t, url)
	f := newDeployFixture(t, db, 1, workerOptions{maxAttempts: 3})
	h := f.cluster.Hosts()[0]
	pipeline := testPipeline(`{ kind: serial }`, healthCalls)
	f.version("v1", artifact{}, pipeline)
	f.version("v2", artifact{}, pipeline)
	f.waitEnded(f.deploy(`{"environment":"staging","version":"v1"}`), store.DeploymentSuccess)
	before := len(calls(t, h))

	unhold := hold(t, h, "v2")
	defer unhold()
	id := f.deploy(`{"environment":"staging","version":"v2"}`)
	f.hostAt(id, "host-1", deploy.StepHealth)
	storetest.WaitFor(t, 20*time.Second, "the first run's health calls", func() bool { return len(calls(t, h)) > before })
	stale := calls(t, h)[before]

	// The lease runs out while the run is alive; the deployment is requeued and claimed again.
	raw, err := sql.Open("postgres", url)
	must(t, err)
	defer raw.Close()
	storetest.WaitFor(t, 20*time.Second, "the deployment requeued", func() bool {
		_, err := raw.Exec(`UPDATE deployments SET lease_until = $1 WHERE id = $2 AND status = 'running'`, time.Now().Add(-time.Hour), id)
		must(t, err)
		requeued, _, err := db.ReapDeployments(context.Background(), 3)
		must(t, err)
		return requeued == 1
	})
	f.worker.Wake()
	f.waitFor(id, "a second claim", func(d *store.Deployment) bool { return d.Attempts == 2 && d.Status == store.DeploymentRunning })

	// The stale run finds its lease gone and stops; the deployment carries on under the new one.
	storetest.WaitFor(t, 20*time.Second, "the stale run to notice its lease is gone", func() bool {
		return strings.Contains(f.log(id, ""), "this worker lost its lease on the deployment; another one carries on")
	})
	staleCalls := count(calls(t, h), stale)
	d := f.deployment(id)
	if hs := hostStep(d, "host-1"); d.Status != store.DeploymentRunning || d.Attempts != 2 || hs.Status != store.HostRunning || hs.Error != "" {
		t.Fatalf("after the stale run stopped: deployment %s (attempt %d), %s; the stale run must not end the new run's work", d.Status, d.Attempts, hostsText(d))
	}
	storetest.WaitFor(t, 20*time.Second, "the new run's health calls", func() bool {
		list := calls(t, h)
		return len(list) > 0 && list[len(list)-1] != stale
	})
	time.Sleep(2500 * time.Millisecond) // health calls come at least every second
	if n := count(calls(t, h), stale); n != staleCalls {
		t.Errorf("the stale run ran %d more health checks on the host after it found its lease gone", n-staleCalls)
	}
	assertCurrent(t, h, "v2") // the stale run did not switch back to v1 either

	unhold()
	d = f.waitEnded(id, store.DeploymentSuccess)
	if d.Attempts != 2 {
		t.Errorf("the deployment ended after %d attempts, want 2", d.Attempts)
	}
	assertServing(t, h, "v2")
	log := f.log(id, "")
	if n := strings.Count(log, "success: v2 is on every host"); n != 1 || strings.Contains(log, "going back to release v1") {
		t.Errorf("the deployment was ended %d times (want once, by the new run), or the stale run went back to v1; log:\n%s", n, log)
	}
}
