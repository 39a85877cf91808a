package deploy_test

import (
	"context"
	"net/http"
	"os"
	"strings"
	"testing"

	"ferry/store"
	"ferry/store/storetest"
)

// The first connection to a host of a protected environment without a pinned key is refused,
// whatever key it offers: someone between ferry and the host would otherwise be trusted for
// good. The key is kept as offered, and once an administrator accepts it by its fingerprint
// the deployment goes through.
func TestAnUnpinnedHostOfAProtectedEnvironmentIsNotTrustedOnFirstUse(t *testing.T) {
	f := newDeployFixture(t, storetest.Open(t, store.SQLite), 1, workerOptions{unpinned: "host-1", protected: true})
	h := f.cluster.Hosts()[0]
	f.version("v1", artifact{}, testPipeline(`{ kind: serial }`, ""))
	d := f.waitEnded(f.deploy(`{"environment":"staging","version":"v1"}`), store.DeploymentFailed)
	fp := fingerprint(t, h.HostKey())
	wantError(t, errorOf(d.Hosts[0].Error),
		"host-1 is in the protected environment shop/staging and has no pinned host key, so ferry does not trust the key it offers ("+fp+")",
		`POST /api/v1/hosts/host-1/accept-key {"fingerprint":"`+fp+`"}`)
	stored, err := f.db.GetHost(context.Background(), "host-1")
	must(t, err)
	if stored.HostKey != "" || stored.OfferedFingerprint() != fp {
		t.Fatalf("host-1 pins %q and keeps %q as offered, want nothing pinned and %s offered", stored.HostKey, stored.OfferedFingerprint(), fp)
	}
	if _, err := os.Stat(h.Path("releases")); !os.IsNotExist(err) {
		t.Errorf("ferry reached the host's disk although its key was refused: %v", err)
	}
	if log := f.log(d.ID, ""); strings.Contains(log, "trusting") {
		t.Errorf("the log says a key was trusted:\n%s", log)
	}

	f.api.must(http.StatusOK, "POST", "/api/v1/hosts/host-1/accept-key", `{"fingerprint":"`+fp+`"}`)
	f.waitEnded(f.deploy(`{"environment":"staging","version":"v1"}`), store.DeploymentSuccess)
	assertServing(t, h, "v1")
}
