package handlers_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"ferry/deploy"
	"ferry/deploy/sshtest"
	"ferry/handlers"
	"ferry/store"
	"ferry/store/storetest"
)

// firstRunPermRoutes adds the permission rows of the first run's page and of fetching and
// re-pinning host keys (see permRouteParts). The permission test's server fetches no host keys
// (no scanner), so an administrator is told so (400); its spare host has no pinned key to
// replace (409): both past the right, which is what the table checks. The tests below check
// the successes.
func firstRunPermRoutes() {
	addPermRoutes(map[string][5]int{
		"GET /setup":                         {303, 403, 403, 403, 200},
		"POST /api/v1/hosts/:host/scan-key":  {401, 403, 403, 403, 400},
		"POST /api/v1/hosts/:host/repin-key": {401, 403, 403, 403, 409},
	}, map[string]string{
		"POST /api/v1/hosts/:host/repin-key": `{"old_fingerprint":"SHA256:old","fingerprint":"` + offeredFingerprint + `"}`,
	}, nil)
}

// fingerprintOf returns the SHA256 fingerprint of an authorized_keys line.
func fingerprintOf(t *testing.T, line string) string {
	t.Helper()
	key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
	must(t, err)
	return ssh.FingerprintSHA256(key)
}

// A reinstalled host offers a new key: the deployment is refused and keeps the new key beside
// the pinned one; only an administrator who names both fingerprints re-pins it, and after that
// the old key is refused and deployments go through.
func TestAnAdministratorRepinsAChangedHostKeyAfterComparingBoth(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		f := newPageFixture(t, db)
		cluster := moveToRealHosts(t, db, f)
		web1 := cluster.Hosts()[0]
		oldKey := web1.HostKey()
		oldFP := fingerprintOf(t, oldKey)
		v := realVersion(t, db, f.project.ID, "20260103000000-main-0ld0key0")
		_, err := db.CancelDeployment(ctx, f.deployment.ID) // nothing waits ahead of the test's deployments
		must(t, err)
		worker := startDeployWorker(t, db)
		h := handlers.New(handlers.Config{DB: db, BaseURL: testBaseURL, Deployer: worker, ScanHostKey: deploy.ScanHostKey}).Handler()
		admin := tokenClient(t, h, db, f.admin)
		adminSession := sessionClient(t, h, db, f.admin)
		_, err = db.SetMember(ctx, f.project.ID, "ann", true)
		must(t, err)
		member := tokenClient(t, h, db, f.member)
		memberSession := sessionClient(t, h, db, f.member)
		outsider := tokenClient(t, h, db, f.outsider)

		web1.RegenerateHostKey(t)
		newFP := fingerprintOf(t, web1.HostKey())
		deployTo := func() *store.Deployment {
			var d store.Deployment
			admin.must(http.StatusCreated, "POST", "/api/v1/projects/orders/deployments",
				`{"environment":"staging","version":"`+v.Name+`","hosts":["web-1"]}`).decode(t, &d)
			var got *store.Deployment
			storetest.WaitFor(t, time.Minute, "the deployment ends", func() bool {
				got, err = db.GetDeployment(ctx, d.ID)
				must(t, err)
				return got.Status != store.DeploymentQueued && got.Status != store.DeploymentRunning
			})
			return got
		}
		if d := deployTo(); d.Status != store.DeploymentFailed || !strings.Contains(d.Hosts[0].Error, "changed: expected "+oldFP+", got "+newFP) {
			t.Fatalf("deploying to the reinstalled host ended %s (%q), want failed naming both keys", d.Status, d.Hosts[0].Error)
		}
		var view struct {
			Fingerprint        string `json:"fingerprint"`
			OfferedFingerprint string `json:"offered_fingerprint"`
		}
		admin.must(http.StatusOK, "GET", "/api/v1/hosts/web-1", "").decode(t, &view)
		if view.Fingerprint != oldFP || view.OfferedFingerprint != newFP {
			t.Fatalf("after the refused deployment the host shows pinned %q and offered %q, want %s and %s", view.Fingerprint, view.OfferedFingerprint, oldFP, newFP)
		}
		page := get(t, adminSession, "/hosts", nil)
		for _, want := range []string{oldFP, newFP, "/api/v1/hosts/web-1/repin-key"} {
			if !strings.Contains(page.body, strings.ReplaceAll(want, "+", "&#43;")) {
				t.Errorf("the hosts page does not show %q", want)
			}
		}

		body := fmt.Sprintf(`{"old_fingerprint":%q,"fingerprint":%q}`, oldFP, newFP)
		// Around the right: a member with the production right, by token and by session, a
		// non-member, a session without its CSRF token, and fetching the key as a member.
		member.must(http.StatusForbidden, "POST", "/api/v1/hosts/web-1/repin-key", body)
		memberSession.must(http.StatusForbidden, "POST", "/api/v1/hosts/web-1/repin-key", body)
		outsider.must(http.StatusForbidden, "POST", "/api/v1/hosts/web-1/repin-key", body)
		member.must(http.StatusForbidden, "POST", "/api/v1/hosts/web-1/scan-key", "")
		member.must(http.StatusForbidden, "PATCH", "/api/v1/hosts/web-1", `{"host_key":"`+web1.HostKey()+`"}`)
		noCSRF := *adminSession
		noCSRF.csrf = ""
		if r := noCSRF.do("POST", "/api/v1/hosts/web-1/repin-key", body); r.status != http.StatusForbidden {
			t.Errorf("re-pinning without the CSRF token: status %d, want 403", r.status)
		}
		// An administrator who did not compare the pinned key is refused.
		r := admin.must(http.StatusBadRequest, "POST", "/api/v1/hosts/web-1/repin-key", fmt.Sprintf(`{"old_fingerprint":"SHA256:nope","fingerprint":%q}`, newFP))
		if !strings.Contains(r.errorText(t), "old_fingerprint: SHA256:nope is not the key pinned for host web-1") {
			t.Errorf("a wrong old fingerprint says %q", r.errorText(t))
		}
		h1, err := db.GetHost(ctx, "web-1")
		must(t, err)
		if h1.HostKey != oldKey {
			t.Fatalf("refused re-pins changed the pinned key to %q", h1.HostKey)
		}

		// Fetching the key shows the same new key; then the administrator re-pins it.
		admin.must(http.StatusOK, "POST", "/api/v1/hosts/web-1/scan-key", "").decode(t, &view)
		if view.OfferedFingerprint != newFP {
			t.Errorf("fetching the key offers %q, want %s", view.OfferedFingerprint, newFP)
		}
		view.Fingerprint, view.OfferedFingerprint = "", ""
		admin.must(http.StatusOK, "POST", "/api/v1/hosts/web-1/repin-key", body).decode(t, &view)
		if view.Fingerprint != newFP || view.OfferedFingerprint != "" {
			t.Errorf("after the re-pin the host shows pinned %q offered %q, want %s and none", view.Fingerprint, view.OfferedFingerprint, newFP)
		}
		all, err := db.ListAudit(ctx, store.AuditFilter{Target: "host/web-1"})
		must(t, err)
		var entries []*store.AuditEntry
		for _, e := range all {
			if e.Action == "host.repin_key" {
				entries = append(entries, e)
			}
		}
		if len(entries) != 1 || entries[0].UserName != f.admin.Name || !strings.Contains(entries[0].Detail, oldFP) || !strings.Contains(entries[0].Detail, newFP) {
			t.Errorf("audit of the re-pin: %+v, want one entry by %s naming both keys", entries, f.admin.Name)
		}

		// The old key no longer opens the host: a server offering it is refused.
		_, err = deploy.Dial(ctx, deploy.Target{Name: "web-1", Address: web1.Addr(), Port: web1.Port(), User: "root",
			PrivateKey: cluster.ClientKeyPEM, HostKey: oldKey}, deploy.DialOptions{})
		var changed *deploy.HostKeyChangedError
		if !errors.As(err, &changed) {
			t.Errorf("dialing with the old key: %v, want a changed-key refusal", err)
		}
		pinnedNow, err := db.GetHost(ctx, "web-1")
		must(t, err)
		if pinnedNow.HostKey == oldKey {
			t.Fatal("the old key is still pinned")
		}
		if d := deployTo(); d.Status != store.DeploymentSuccess {
			t.Fatalf("deploying after the re-pin ended %s: %s", d.Status, d.Hosts[0].Error)
		}
	})
}

// An unreachable host's fetch answers next to the address field.
func TestFetchingTheKeyOfAnUnreachableHostNamesItsAddress(t *testing.T) {
	db := storetest.Open(t, store.SQLite)
	f := newPageFixture(t, db)
	cluster := sshtest.Start(t, 1, sshtest.Options{})
	h := handlers.New(handlers.Config{DB: db, BaseURL: testBaseURL, ScanHostKey: deploy.ScanHostKey}).Handler()
	admin := tokenClient(t, h, db, f.admin)
	port := cluster.Hosts()[0].Port()
	cluster.Hosts()[0].Stop()
	admin.must(http.StatusOK, "PATCH", "/api/v1/hosts/web-2", fmt.Sprintf(`{"address":"127.0.0.1","port":%d}`, port))
	r := admin.must(http.StatusBadRequest, "POST", "/api/v1/hosts/web-2/scan-key", "")
	if msg := r.errorText(t); !strings.HasPrefix(msg, "address: ") || !strings.Contains(msg, "127.0.0.1") {
		t.Errorf("fetching from a stopped host says %q, want the address named", msg)
	}
}
