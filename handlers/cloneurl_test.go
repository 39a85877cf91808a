package handlers_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"ferry/store"
	"ferry/store/storetest"
)

// TestCloneURLCredentialsAreWriteOnly creates a project whose clone URL carries a token and
// looks for the token in everything a member or an administrator can read.
func TestCloneURLCredentialsAreWriteOnly(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		const token = "glpat-Clone-Token-Secret-77"
		h := newServer(t, db)
		admin := tokenClient(t, h, db, mustUser(t, db, "root", true))
		var created struct {
			CloneURL            string `json:"clone_url"`
			HasCloneCredentials bool   `json:"has_clone_credentials"`
		}
		r := admin.must(http.StatusCreated, "POST", "/api/v1/projects",
			`{"name":"orders","gitlab_path":"shop/orders","clone_url":"https://oauth2:`+token+`@gitlab.example.com/shop/orders.git"}`)
		r.decode(t, &created)
		if created.CloneURL != "https://gitlab.example.com/shop/orders.git" || !created.HasCloneCredentials {
			t.Errorf("created: clone_url %q, has_clone_credentials %v; want the URL without credentials, and true", created.CloneURL, created.HasCloneCredentials)
		}
		bodies := []string{r.body}
		ann := mustUser(t, db, "ann", false)
		admin.must(http.StatusCreated, "POST", "/api/v1/projects/orders/members", `{"user":"ann"}`)
		member := sessionClient(t, h, db, ann)
		for _, c := range []*client{admin, member} {
			for _, path := range []string{"/api/v1/projects", "/api/v1/projects/orders", "/api/v1/audit?limit=100", "/", "/projects/orders"} {
				if r := c.do("GET", path, ""); r.status < 400 {
					bodies = append(bodies, r.body)
				}
			}
		}
		page := member.must(http.StatusOK, "GET", "/projects/orders", "").body
		if !strings.Contains(page, "https://gitlab.example.com/shop/orders.git") {
			t.Errorf("the project page does not show the clone URL without credentials")
		}
		for _, b := range bodies {
			if strings.Contains(b, token) {
				t.Fatalf("a response shows the clone token:\n%s", b)
			}
		}
		p, err := db.GetProject(context.Background(), "orders")
		must(t, err)
		if p.CloneCredentials != "oauth2:"+token {
			t.Errorf("stored credentials %q, want oauth2:<token>", p.CloneCredentials)
		}

		// A new path on the same server keeps them; pointing the URL at another server drops
		// them, so a project administrator cannot send the token to a server of their own.
		var upd struct {
			HasCloneCredentials bool `json:"has_clone_credentials"`
		}
		admin.must(http.StatusOK, "PATCH", "/api/v1/projects/orders", `{"clone_url":"https://gitlab.example.com/shop/orders2.git"}`).decode(t, &upd)
		if !upd.HasCloneCredentials {
			t.Error("a new path on the same server dropped the credentials")
		}
		admin.must(http.StatusOK, "PATCH", "/api/v1/projects/orders", `{"clone_url":"https://evil.example.net/x.git"}`).decode(t, &upd)
		if upd.HasCloneCredentials {
			t.Error("the credentials follow the clone URL to another server")
		}
		// clone_credentials sets them on their own, write-only.
		r = admin.must(http.StatusOK, "PATCH", "/api/v1/projects/orders", `{"clone_url":"https://gitlab.example.com/shop/orders.git","clone_credentials":"deploy:`+token+`"}`)
		if r.decode(t, &upd); !upd.HasCloneCredentials || strings.Contains(r.body, token) {
			t.Errorf("clone_credentials: %s", r.body)
		}
		// An ssh URL does not take a password.
		r = admin.must(http.StatusBadRequest, "PATCH", "/api/v1/projects/orders", `{"clone_url":"ssh://git:`+token+`@gitlab.example.com/shop/orders.git"}`)
		if msg := r.errorText(t); !strings.Contains(msg, "clone_url") || strings.Contains(msg, token) {
			t.Errorf("ssh URL with a password: %q", msg)
		}
	})
}
