package handlers_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"ferry/store"
	"ferry/store/storetest"
)

// offeredKey is a host key a host offered on a refused first connection, and its fingerprint.
const (
	offeredKey         = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGZXTJa7gOVy4QsG9cGieZk3qSYsU+DRqFYHh4o+TdyG"
	offeredFingerprint = "SHA256:AElwSTKzO6XvjYeaxO8M/1O4LKycvru+DzESqkpe3rQ"
)

// Only an administrator accepts a host key; the fixture's spare host has offered one.
// hostKeyPermRoutes adds the permission rows of these routes (see permRouteParts).
func hostKeyPermRoutes() {
	addPermRoutes(map[string][5]int{
		"POST /api/v1/hosts/:host/accept-key": {401, 403, 403, 403, 200},
	}, map[string]string{
		"POST /api/v1/hosts/:host/accept-key": `{"fingerprint":"` + offeredFingerprint + `"}`,
	}, func(t *testing.T, db *store.DB, fx *permFixture) {
		h, err := db.GetHost(context.Background(), fx.spare)
		must(t, err)
		must(t, db.OfferHostKey(context.Background(), h.ID, offeredKey))
	})
}

func TestAnAdministratorAcceptsTheOfferedHostKeyByItsFingerprint(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		h := newServer(t, db)
		admin := tokenClient(t, h, db, mustUser(t, db, "boss", true))
		key, _ := testKeys(t)
		host := &store.Host{Name: "prod-1", Address: "10.0.0.7", User: "deploy", PrivateKey: key}
		must(t, db.CreateHost(ctx, host))

		r := admin.must(http.StatusBadRequest, "POST", "/api/v1/hosts/prod-1/accept-key", `{"fingerprint":"`+offeredFingerprint+`"}`)
		if !strings.Contains(r.errorText(t), "host prod-1 has not offered a host key yet") {
			t.Errorf("accepting before any offer says %q", r.errorText(t))
		}
		must(t, db.OfferHostKey(ctx, host.ID, offeredKey))
		var view struct {
			HostKey            string `json:"host_key"`
			Fingerprint        string `json:"fingerprint"`
			OfferedFingerprint string `json:"offered_fingerprint"`
		}
		admin.must(http.StatusOK, "GET", "/api/v1/hosts/prod-1", "").decode(t, &view)
		if view.HostKey != "" || view.OfferedFingerprint != offeredFingerprint {
			t.Errorf("host view %+v, want no key pinned and %s offered", view, offeredFingerprint)
		}
		r = admin.must(http.StatusBadRequest, "POST", "/api/v1/hosts/prod-1/accept-key", `{"fingerprint":"SHA256:someone-elses-key"}`)
		if !strings.Contains(r.errorText(t), "is not the key host prod-1 offered ("+offeredFingerprint+")") {
			t.Errorf("a wrong fingerprint says %q", r.errorText(t))
		}
		admin.must(http.StatusBadRequest, "POST", "/api/v1/hosts/prod-1/accept-key", `{}`)

		view.OfferedFingerprint = ""
		admin.must(http.StatusOK, "POST", "/api/v1/hosts/prod-1/accept-key", `{"fingerprint":"`+offeredFingerprint+`"}`).decode(t, &view)
		if strings.Contains(admin.must(http.StatusOK, "GET", "/api/v1/hosts/prod-1", "").body, "offered_fingerprint") {
			t.Errorf("the host still shows an offered key after it was accepted")
		}
		if view.HostKey != offeredKey || view.Fingerprint != offeredFingerprint || view.OfferedFingerprint != "" {
			t.Errorf("after accepting: %+v", view)
		}
		admin.must(http.StatusConflict, "POST", "/api/v1/hosts/prod-1/accept-key", `{"fingerprint":"`+offeredFingerprint+`"}`)
	})
}
