package store_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"ferry/store"
	"ferry/store/storetest"
)

// A host step's record of what the host ran survives a takeover: the second worker cannot
// overwrite it with what it finds (the new release, already switched to).
func TestRecordHostPreviousIsWrittenOnce(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		f := newJobFixture(t, db)
		v1 := f.mustVersion(t, "v1", 1)
		v2 := f.mustVersion(t, "v2", 2)
		d, err := db.CreateDeployment(ctx, f.deploy(v2))
		recordMust(t, err)
		err = db.RecordHostPrevious(ctx, d.ID, f.hosts[0].ID, "first", "v1", &v1.ID)
		wantCode(t, "queued", err, store.ECONFLICT, "is not running")

		mustClaimDeployment(t, db, "first", d.ID)
		recordMust(t, db.RecordHostPrevious(ctx, d.ID, f.hosts[0].ID, "first", "v1", &v1.ID))
		recordMust(t, db.RecordHostPrevious(ctx, d.ID, f.hosts[1].ID, "first", "", nil))
		f.clock.Add(5 * time.Minute)
		if rq, _, err := db.ReapDeployments(ctx, 2); err != nil || rq != 1 {
			t.Fatalf("reap = %d, %v", rq, err)
		}
		mustClaimDeployment(t, db, "second", d.ID)
		recordMust(t, db.RecordHostPrevious(ctx, d.ID, f.hosts[0].ID, "second", "v2", &v2.ID))
		err = db.RecordHostPrevious(ctx, d.ID, 999, "second", "v1", nil)
		wantCode(t, "unknown host", err, store.ENOTFOUND, "has no step for host 999")

		got, err := db.GetDeployment(ctx, d.ID)
		recordMust(t, err)
		h1, h2, h3 := got.Hosts[0], got.Hosts[1], got.Hosts[2]
		if !h1.PreviousRecorded || h1.PreviousRelease != "v1" || h1.PreviousVersionID == nil || *h1.PreviousVersionID != v1.ID {
			t.Errorf("web1 record %+v, want v1 (version %d) kept after the takeover", h1, v1.ID)
		}
		if !h2.PreviousRecorded || h2.PreviousRelease != "" || h2.PreviousVersionID != nil {
			t.Errorf("web2 record %+v, want recorded as running nothing", h2)
		}
		if h3.PreviousRecorded {
			t.Errorf("web3 %+v is recorded though nothing was written", h3)
		}
		// A version removed by retention still names its .ferry.yml for the hosts that run it.
		if rv, err := db.ReleaseVersion(ctx, f.project.ID, "v1"); err != nil || rv.ID != v1.ID {
			t.Errorf("ReleaseVersion(v1) = %+v, %v", rv, err)
		}
		_, err = db.ReleaseVersion(ctx, f.project.ID, "hand-made")
		wantCode(t, "unknown release", err, store.ENOTFOUND, "hand-made")
	})
}

// A host in a protected environment keeps the key it offered until an administrator accepts
// it by fingerprint; a wrong fingerprint or a host that offered nothing is refused.
func TestAcceptOfferedHostKey(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := actorCtx()
		f := newJobFixture(t, db)
		// A host of its own: a protected environment may not share one with staging.
		db1 := &store.Host{Name: "db1", Address: "127.0.0.1", User: "deploy"}
		recordMust(t, db.CreateHost(ctx, db1))
		prod := &store.Environment{ProjectID: f.project.ID, Name: "prod", Protected: true, Hosts: []string{"db1"}}
		recordMust(t, db.CreateEnvironment(ctx, prod))
		if envs, err := db.ProtectedEnvironmentsOf(ctx, db1.ID); err != nil || strings.Join(envs, ",") != "orders/prod" {
			t.Errorf("protected environments of db1 = %v, %v", envs, err)
		}
		if envs, err := db.ProtectedEnvironmentsOf(ctx, f.hosts[0].ID); err != nil || len(envs) != 0 {
			t.Errorf("protected environments of web1 = %v, %v", envs, err)
		}

		_, err := db.AcceptHostKey(ctx, "db1", "SHA256:abc")
		wantCode(t, "nothing offered", err, store.EINVALID, "has not offered a host key yet")
		_, offered := MustKeyPair(t)
		recordMust(t, db.OfferHostKey(ctx, db1.ID, offered+" comment"))
		key, _, _, _, _ := ssh.ParseAuthorizedKey([]byte(offered))
		fp := ssh.FingerprintSHA256(key)
		h, err := db.GetHost(ctx, "db1")
		recordMust(t, err)
		if h.HostKey != "" || h.OfferedFingerprint() != fp {
			t.Fatalf("after the offer, db1 pins %q and offers %q, want nothing pinned and %s offered", h.HostKey, h.OfferedFingerprint(), fp)
		}
		_, err = db.AcceptHostKey(ctx, "db1", "")
		wantCode(t, "no fingerprint", err, store.EINVALID, "fingerprint: required")
		_, other := MustKeyPair(t)
		otherKey, _, _, _, _ := ssh.ParseAuthorizedKey([]byte(other))
		_, err = db.AcceptHostKey(ctx, "db1", ssh.FingerprintSHA256(otherKey))
		wantCode(t, "wrong fingerprint", err, store.EINVALID, "is not the key host db1 offered ("+fp+")")

		h, err = db.AcceptHostKey(ctx, "db1", fp)
		recordMust(t, err)
		if h.HostKey != offered || h.OfferedHostKey != "" {
			t.Fatalf("accepted host pins %q, offers %q", h.HostKey, h.OfferedHostKey)
		}
		if got, _ := db.GetHost(ctx, "db1"); got.HostKey != offered {
			t.Errorf("stored host key %q, want %q", got.HostKey, offered)
		}
		_, err = db.AcceptHostKey(ctx, "db1", fp)
		wantCode(t, "pinned already", err, store.ECONFLICT, "already has a pinned host key")
		// Once a key is pinned, an offer changes nothing.
		recordMust(t, db.OfferHostKey(ctx, db1.ID, other))
		if got, _ := db.GetHost(ctx, "db1"); got.OfferedHostKey != "" || got.HostKey != offered {
			t.Errorf("an offer to a pinned host changed it: %+v", got)
		}
		if log := recordAuditText(t, db); !strings.Contains(log, "host.accept_key host/db1 accepted the offered key "+fp) {
			t.Errorf("audit log lacks the acceptance:\n%s", log)
		}
	})
}

func recordMust(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// recordAuditText lists the audit log as "action target detail" lines, oldest first.
func recordAuditText(t testing.TB, db *store.DB) string {
	t.Helper()
	entries, err := db.ListAudit(context.Background(), store.AuditFilter{Limit: 1000})
	recordMust(t, err)
	var lines []string
	for i := len(entries) - 1; i >= 0; i-- {
		e := entries[i]
		lines = append(lines, e.Action+" "+e.Target+" "+e.Detail)
	}
	return strings.Join(lines, "\n")
}

// The attack on trust on first use: a host's first connection happens while it is in an
// unprotected environment, so its key is pinned on first use, unchecked; the host then moves
// into a protected environment (or its environment is protected) and the unchecked key was
// trusted there for good. A key trusted on first use is forgotten when its host becomes
// protected, so the next connection offers it for an administrator to accept; a key an
// administrator set or accepted is kept.
func TestAKeyTrustedOnFirstUseIsNotTrustedOnceTheHostIsProtected(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := actorCtx()
		f := newJobFixture(t, db)
		_, tofu := MustKeyPair(t)
		_, checked := MustKeyPair(t)
		for _, h := range []*store.Host{{Name: "db1", Address: "127.0.0.1", User: "deploy"}, {Name: "db2", Address: "127.0.0.1", User: "deploy", HostKey: checked}} {
			recordMust(t, db.CreateHost(ctx, h))
		}
		recordMust(t, db.CreateEnvironment(ctx, &store.Environment{ProjectID: f.project.ID, Name: "pre", Hosts: []string{"db1", "db2"}}))
		db1, err := db.GetHost(ctx, "db1")
		recordMust(t, err)
		recordMust(t, db.PinHostKey(ctx, db1.ID, tofu)) // a deployment to the unprotected environment
		if h, _ := db.GetHost(ctx, "db1"); h.HostKey != tofu {
			t.Fatalf("db1 pins %q after its first connection", h.HostKey)
		}
		_, err = db.UpdateEnvironment(ctx, f.project.ID, "pre", store.EnvironmentUpdate{Protected: ptr(true)})
		recordMust(t, err)
		if h, _ := db.GetHost(ctx, "db1"); h.HostKey != "" {
			t.Errorf("db1, now in a protected environment, still trusts the key pinned on first use: %q", h.HostKey)
		}
		if h, _ := db.GetHost(ctx, "db2"); h.HostKey != checked {
			t.Errorf("db2's key, set by an administrator, was dropped: %q", h.HostKey)
		}
		// Pinned again by an administrator (accepting the offer), it stays on later changes.
		recordMust(t, db.OfferHostKey(ctx, db1.ID, tofu))
		key, _, _, _, _ := ssh.ParseAuthorizedKey([]byte(tofu))
		_, err = db.AcceptHostKey(ctx, "db1", ssh.FingerprintSHA256(key))
		recordMust(t, err)
		_, err = db.UpdateEnvironment(ctx, f.project.ID, "pre", store.EnvironmentUpdate{Hosts: &[]string{"db2", "db1"}})
		recordMust(t, err)
		if h, _ := db.GetHost(ctx, "db1"); h.HostKey != tofu {
			t.Errorf("db1's accepted key was dropped: %q", h.HostKey)
		}
		// A new protected environment takes in a host pinned on first use elsewhere.
		recordMust(t, db.CreateHost(ctx, &store.Host{Name: "db3", Address: "127.0.0.1", User: "deploy"}))
		db3, _ := db.GetHost(ctx, "db3")
		recordMust(t, db.PinHostKey(ctx, db3.ID, checked))
		recordMust(t, db.CreateEnvironment(ctx, &store.Environment{ProjectID: f.project.ID, Name: "live", Protected: true, Hosts: []string{"db3"}}))
		if h, _ := db.GetHost(ctx, "db3"); h.HostKey != "" {
			t.Errorf("db3, put in a new protected environment, still trusts the key pinned on first use: %q", h.HostKey)
		}
	})
}

// A deployment checks that its host is in no protected environment before it trusts a key on
// first use; an administrator may protect the environment between that check and the pin. The
// store's pin checks again, in its own transaction.
func TestNoKeyIsTrustedOnFirstUseForAProtectedHost(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := actorCtx()
		f := newJobFixture(t, db)
		recordMust(t, db.CreateHost(ctx, &store.Host{Name: "db1", Address: "127.0.0.1", User: "deploy"}))
		recordMust(t, db.CreateEnvironment(ctx, &store.Environment{ProjectID: f.project.ID, Name: "prod", Protected: true, Hosts: []string{"db1"}}))
		h, err := db.GetHost(ctx, "db1")
		recordMust(t, err)
		_, key := MustKeyPair(t)
		err = db.PinHostKey(ctx, h.ID, key)
		wantCode(t, "trust on first use for a protected host", err, store.EFORBIDDEN, "orders/prod")
		if h, _ := db.GetHost(ctx, "db1"); h.HostKey != "" {
			t.Errorf("db1, in a protected environment, pinned %q on first use", h.HostKey)
		}
	})
}
