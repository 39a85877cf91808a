package handlers_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"ferry/store"
	"ferry/store/storetest"
)

// Issue 11 item 3 through the API: a shared host cannot carry protection away, in either
// direction, and the 400 names the environment that holds the host.
func TestSharedHostRefusedWithTheEnvironmentNamed(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		h := newServer(t, db)
		admin := tokenClient(t, h, db, mustUser(t, db, "root", true))
		pem, _ := testKeys(t)
		for _, p := range []string{`{"name":"orders","gitlab_path":"shop/orders","clone_url":"https://x/o.git"}`, `{"name":"blog","gitlab_path":"shop/blog","clone_url":"https://x/b.git"}`} {
			admin.must(http.StatusCreated, "POST", "/api/v1/projects", p)
		}
		for _, name := range []string{"db1", "web1"} {
			admin.must(http.StatusCreated, "POST", "/api/v1/hosts", fmt.Sprintf(`{"name":%q,"address":"10.0.0.1","user":"deploy","private_key":%s}`, name, jsonString(pem)))
		}
		admin.must(http.StatusCreated, "POST", "/api/v1/projects/orders/environments", `{"name":"prod","hosts":["db1"],"protected":true}`)
		r := admin.do("POST", "/api/v1/projects/blog/environments", `{"name":"test","hosts":["db1"]}`)
		if r.status != http.StatusBadRequest || !strings.Contains(r.errorText(t), "host db1 is in the protected environment orders/prod") {
			t.Errorf("unprotected blog/test on orders/prod's host: %d %s", r.status, r.body)
		}
		admin.must(http.StatusCreated, "POST", "/api/v1/projects/blog/environments", `{"name":"test","hosts":["web1"]}`)
		r = admin.do("PATCH", "/api/v1/projects/blog/environments/test", `{"hosts":["web1","db1"]}`)
		if r.status != http.StatusBadRequest || !strings.Contains(r.errorText(t), "orders/prod") {
			t.Errorf("adding orders/prod's host to blog/test: %d %s", r.status, r.body)
		}
		r = admin.do("PATCH", "/api/v1/projects/orders/environments/prod", `{"hosts":["db1","web1"]}`)
		if r.status != http.StatusBadRequest || !strings.Contains(r.errorText(t), "host web1 is also in the unprotected environment blog/test") {
			t.Errorf("adding blog/test's host to orders/prod: %d %s", r.status, r.body)
		}
		admin.must(http.StatusCreated, "POST", "/api/v1/projects/orders/environments", `{"name":"staging","hosts":["web1"]}`)
		r = admin.do("PATCH", "/api/v1/projects/orders/environments/staging", `{"protected":true}`)
		if r.status != http.StatusBadRequest || !strings.Contains(r.errorText(t), "host web1 is also in the unprotected environment blog/test") {
			t.Errorf("protecting orders/staging, which shares web1 with blog/test: %d %s", r.status, r.body)
		}
	})
}
