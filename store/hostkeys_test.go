package store_test

import (
	"testing"

	"golang.org/x/crypto/ssh"

	"ferry/store"
	"ferry/store/storetest"
)

func fingerprintOf(t *testing.T, line string) string {
	t.Helper()
	key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	return ssh.FingerprintSHA256(key)
}

// A changed key is kept beside the pinned one, and only naming both fingerprints replaces it.
func TestRepinHostKey(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := actorCtx()
		priv, _ := MustKeyPair(t)
		_, pinned := MustKeyPair(t)
		_, changed := MustKeyPair(t)
		h := &store.Host{Name: "web-1", Address: "10.0.0.1", User: "deploy", PrivateKey: priv, HostKey: pinned}
		if err := db.CreateHost(ctx, h); err != nil {
			t.Fatal(err)
		}
		oldFP, newFP := fingerprintOf(t, pinned), fingerprintOf(t, changed)

		_, err := db.RepinHostKey(ctx, "web-1", oldFP, newFP)
		wantCode(t, "nothing offered yet", err, store.EINVALID, "has offered no other key")
		if err := db.RecordChangedHostKey(ctx, h.ID, pinned); err != nil {
			t.Fatal(err)
		}
		got, err := db.GetHost(ctx, "web-1")
		if err != nil || got.OfferedHostKey != "" {
			t.Fatalf("the pinned key itself was kept as offered: %q (%v)", got.OfferedHostKey, err)
		}
		if err := db.RecordChangedHostKey(ctx, h.ID, changed); err != nil {
			t.Fatal(err)
		}
		_, err = db.RepinHostKey(ctx, "web-1", newFP, newFP)
		wantCode(t, "a wrong old fingerprint", err, store.EINVALID, "old_fingerprint: "+newFP+" is not the key pinned")
		_, err = db.RepinHostKey(ctx, "web-1", oldFP, oldFP)
		wantCode(t, "a wrong new fingerprint", err, store.EINVALID, "fingerprint: "+oldFP+" is not the key host web-1 offered")
		_, err = db.RepinHostKey(ctx, "web-1", "", newFP)
		wantCode(t, "no old fingerprint", err, store.EINVALID, "old_fingerprint: required")
		got, err = db.RepinHostKey(ctx, "web-1", oldFP, newFP)
		if err != nil || got.HostKey != changed || got.OfferedHostKey != "" {
			t.Fatalf("re-pin: %+v, %v; want %s pinned and nothing offered", got, err, newFP)
		}
		_, err = db.AcceptHostKey(ctx, "web-1", newFP)
		wantCode(t, "accepting over a pinned key", err, store.ECONFLICT, "repin-key")

		bare := &store.Host{Name: "web-2", Address: "10.0.0.2", User: "deploy", PrivateKey: priv}
		if err := db.CreateHost(ctx, bare); err != nil {
			t.Fatal(err)
		}
		if err := db.RecordChangedHostKey(ctx, bare.ID, changed); err != nil {
			t.Fatal(err)
		}
		if got, _ := db.GetHost(ctx, "web-2"); got.OfferedHostKey != "" {
			t.Errorf("a host without a pinned key kept a changed key: %q", got.OfferedHostKey)
		}
		if _, err := db.RecordOfferedHostKey(ctx, "web-2", changed); err != nil {
			t.Fatal(err)
		}
		_, err = db.RepinHostKey(ctx, "web-2", oldFP, newFP)
		wantCode(t, "re-pinning an unpinned host", err, store.ECONFLICT, "no pinned host key to replace")
		if _, err := db.AcceptHostKey(ctx, "web-2", newFP); err != nil {
			t.Errorf("accepting the fetched key of an unpinned host: %v", err)
		}
	})
}
