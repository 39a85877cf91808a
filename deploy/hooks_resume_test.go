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

// TestATakeoverAfterTheSwitchRunsTheHooksNotYetRun makes a second run take a deployment to a
// real host over twice, after current was switched (the first run's lease runs out, forced as
// in fencing_test.go, and it leaves the host as it is): once while the host waits for its
// health check, once while its after_switch hook runs. Each time the run that takes over runs
// the hooks the interrupted one had not begun (after_start, after_success) and none twice:
// each hook appears once in the host's hooks.log.
func TestATakeoverAfterTheSwitchRunsTheHooksNotYetRun(t *testing.T) {
	url := storetest.URL(t, store.Postgres)
	db := storetest.OpenURL(t, url)
	raw, err := sql.Open("postgres", url)
	must(t, err)
	defer raw.Close()
	f := newDeployFixture(t, db, 1, workerOptions{maxAttempts: 5})
	h := f.cluster.Hosts()[0]
	f.api.must(200, "PUT", "/api/v1/projects/shop/variables", `{"PORT":{"value":"8080"},"DB_URL":{"value":"x"},"API_TOKEN":{"value":"token-for-tests","secret":true}}`)
	pipeline := strings.Replace(configPipeline("deploy/app.conf.tmpl", ""),
		`health: { http: "http://127.0.0.1:8080/health", timeout: 5s }`, `health: `+strings.Replace(holdHealth, "30s", "60s", 1), 1)
	// after_switch waits while the host holds shared/hold-hook.
	pipeline = strings.Replace(pipeline, `>> ../../shared/hooks.log'
    after_start`, `>> ../../shared/hooks.log; while [ -e "$FERRY_SHARED_DIR/hold-hook" ]; do sleep 0.1; done'
    after_start`, 1)
	for _, v := range []string{"v1", "v2", "v3"} {
		f.version(v, artifact{members: map[string]string{"deploy/app.conf.tmpl": appConfTemplate}}, pipeline)
	}
	f.waitEnded(f.deploy(`{"environment":"staging","version":"v1"}`), store.DeploymentSuccess)
	hooksLog := h.Path("shared/hooks.log")
	takeOver := func(id int64) {
		t.Helper()
		storetest.WaitFor(t, 30*time.Second, "the deployment requeued", func() bool {
			_, err := raw.Exec(`UPDATE deployments SET lease_until = $1 WHERE id = $2 AND status = 'running'`, time.Now().Add(-time.Hour), id)
			must(t, err)
			requeued, _, err := db.ReapDeployments(context.Background(), 5)
			must(t, err)
			return requeued == 1
		})
		f.worker.Wake()
		f.waitFor(id, "a second claim", func(d *store.Deployment) bool { return d.Attempts == 2 && d.Status == store.DeploymentRunning })
		storetest.WaitFor(t, 30*time.Second, "the first run to notice its lease is gone", func() bool {
			return strings.Contains(f.log(id, ""), "this worker lost its lease on the deployment; another one carries on")
		})
	}

	// Taken over while the host waits for v2's health check: after_success has not run yet.
	must(t, os.Remove(hooksLog))
	unhold := hold(t, h, "v2")
	defer unhold()
	id := f.deploy(`{"environment":"staging","version":"v2"}`)
	f.hostAt(id, "host-1", deploy.StepHealth)
	takeOver(id)
	unhold()
	d := f.waitEnded(id, store.DeploymentSuccess)
	want := "before_stop v2 port=8080\nafter_switch v2\nafter_start staging\nafter_success host-1\n"
	if got := readHostFile(t, h, "shared/hooks.log"); d.Attempts != 2 || got != want {
		t.Errorf("taken over at the health check (attempts %d), the hooks ran:\n%s\nwant each once:\n%s", d.Attempts, got, want)
	}
	if log := f.log(id, "host-1"); !strings.Contains(log, "hook after_start: not run again, the interrupted attempt had begun it") {
		t.Errorf("the log does not say after_start is not run again:\n%s", log)
	}
	assertServing(t, h, "v2")

	// Taken over while v3's after_switch hook runs: it is not run again, the rest runs once.
	must(t, os.Remove(hooksLog))
	must(t, os.WriteFile(h.Path("shared/hold-hook"), nil, 0o644))
	defer os.Remove(h.Path("shared/hold-hook"))
	id = f.deploy(`{"environment":"staging","version":"v3"}`)
	f.hostAt(id, "host-1", deploy.HookAfterSwitch)
	storetest.WaitFor(t, 30*time.Second, "after_switch to begin", func() bool {
		b, _ := os.ReadFile(hooksLog)
		return strings.Contains(string(b), "after_switch v3")
	})
	takeOver(id)
	d = f.waitEnded(id, store.DeploymentSuccess)
	want = "before_stop v3 port=8080\nafter_switch v3\nafter_start staging\nafter_success host-1\n"
	if got := readHostFile(t, h, "shared/hooks.log"); d.Attempts != 2 || got != want {
		t.Errorf("taken over in after_switch (attempts %d), the hooks ran:\n%s\nwant each once:\n%s", d.Attempts, got, want)
	}
	if log := f.log(id, "host-1"); !strings.Contains(log, "hook after_switch: not run again, the interrupted attempt had begun it") {
		t.Errorf("the log does not say after_switch is not run again:\n%s", log)
	}
	assertServing(t, h, "v3")
}
