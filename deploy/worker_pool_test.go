package deploy_test

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"

	"ferry/store"
	"ferry/store/storetest"
)

// Deployments one after another to the same hosts go over the connection the first one opened:
// the worker keeps it for the next deployment or rollback instead of a new SSH handshake.
func TestWorkerReusesConnectionsBetweenDeployments(t *testing.T) {
	f := newDeployFixture(t, storetest.Open(t, store.SQLite), 2, workerOptions{})
	pipeline := testPipeline(`{ kind: parallel }`, "")
	f.version("v1", artifact{}, pipeline)
	f.version("v2", artifact{}, pipeline)
	f.waitEnded(f.deploy(`{"environment":"staging","version":"v1"}`), store.DeploymentSuccess)
	f.waitEnded(f.deploy(`{"environment":"staging","version":"v2"}`), store.DeploymentSuccess)
	f.waitEnded(f.deploy(`{"environment":"staging","version":"v1"}`), store.DeploymentSuccess) // a rollback
	for _, h := range f.cluster.Hosts() {
		assertServing(t, h, "v1")
		if n := h.Connections(); n != 1 {
			t.Errorf("%s accepted %d connections for three deployments through one worker, want 1", h.Name, n)
		}
		// What the worker records is what the host holds, without asking it once more.
		if in := f.instances()[h.Name]; in.Version != "v1" || in.Previous != "v2" || !slices.Equal(in.Releases, []string{"v1", "v2"}) {
			t.Errorf("%s: instance %+v, want v1 after v2, keeping v1 and v2", h.Name, in)
		}
		if got := releaseEntries(t, h); !slices.Equal(got, []string{"v1", "v2"}) {
			t.Errorf("%s keeps %v, want v1 and v2", h.Name, got)
		}
	}
}

// A kept connection is lent only for the host key pinned when it was opened: once the pinned
// key changes, the next deployment connects anew and checks the key the host offers; and a
// host that was reinstalled with a new key (which drops its connections) is refused.
func TestWorkerNeverLendsAConnectionForAnotherHostKey(t *testing.T) {
	f := newDeployFixture(t, storetest.Open(t, store.SQLite), 2, workerOptions{})
	ctx := context.Background()
	h1, h2 := f.cluster.Hosts()[0], f.cluster.Hosts()[1]
	pipeline := testPipeline(`{ kind: parallel, continue_on_failure: true }`, "")
	f.version("v1", artifact{}, pipeline)
	f.version("v2", artifact{}, pipeline)
	f.waitEnded(f.deploy(`{"environment":"staging","version":"v1"}`), store.DeploymentSuccess)

	// Someone re-pins host-1 to a key it does not have.
	other := h2.HostKey()
	_, err := f.db.UpdateHost(ctx, h1.Name, store.HostUpdate{HostKey: &other})
	must(t, err)
	d := f.waitEnded(f.deploy(`{"environment":"staging","version":"v2"}`), store.DeploymentFailed)
	wantError(t, errorOf(hostStep(d, h1.Name).Error), "host key of host-1", "changed: expected "+fingerprint(t, other)+", got "+fingerprint(t, h1.HostKey()))
	if n := h1.Connections(); n != 2 {
		t.Errorf("host-1 accepted %d connections, want 2: the deployment after the re-pin must connect anew", n)
	}
	assertServing(t, h1, "v1")
	assertServing(t, h2, "v2")
	if n := h2.Connections(); n != 1 {
		t.Errorf("host-2, whose key stayed, accepted %d connections, want 1", n)
	}

	// host-2 is reinstalled with a new host key.
	old := h2.HostKey()
	h2.RegenerateHostKey(t)
	d = f.waitEnded(f.deploy(`{"environment":"staging","version":"v1"}`), store.DeploymentFailed)
	wantError(t, errorOf(hostStep(d, h2.Name).Error), "host key of host-2", "changed: expected "+fingerprint(t, old)+", got "+fingerprint(t, h2.HostKey()))
	assertServing(t, h2, "v2")
	if !strings.Contains(d.Error, "host-2: host key of host-2") {
		t.Errorf("deployment error %q", d.Error)
	}
}

// The once hook goes over the connection the host's own deployment then uses: a deployment with
// a once hook opens one connection per host, as one without it does.
func TestTheOnceHookUsesTheKeptConnection(t *testing.T) {
	f := newDeployFixture(t, storetest.Open(t, store.SQLite), 2, workerOptions{})
	pipeline := testPipeline(`{ kind: parallel }`, "") + `  hooks:
    once: 'echo "once on $FERRY_HOST" >> "$FERRY_SHARED_DIR/once.log"'
`
	f.version("v1", artifact{}, pipeline)
	f.waitEnded(f.deploy(`{"environment":"staging","version":"v1"}`), store.DeploymentSuccess)
	ran := 0
	for _, h := range f.cluster.Hosts() {
		assertServing(t, h, "v1")
		if _, err := os.Stat(h.Path("shared/once.log")); err == nil {
			ran++
		}
		if n := h.Connections(); n != 1 {
			t.Errorf("%s accepted %d connections for one deployment with a once hook, want 1", h.Name, n)
		}
	}
	if ran != 1 {
		t.Errorf("the once hook ran on %d hosts, want 1", ran)
	}
}
