package handlers_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"ferry/store"
	"ferry/store/storetest"
)

func TestProjectsCRUD(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		h := newServer(t, db)
		admin := tokenClient(t, h, db, mustUser(t, db, "root", true))

		var created map[string]any
		admin.must(http.StatusCreated, "POST", "/api/v1/projects",
			`{"name":"orders","gitlab_path":"shop/orders","clone_url":"https://gitlab.example.com/shop/orders.git"}`).decode(t, &created)
		secret, _ := created["webhook_secret"].(string)
		if len(secret) < 20 {
			t.Fatalf("create without webhook_secret: want a generated secret in the answer, got %v", created)
		}
		if created["has_webhook_secret"] != true || created["has_gitlab_token"] != false ||
			created["webhook_url"] != testBaseURL+"/hooks/gitlab" || created["keep_versions"] != float64(20) {
			t.Errorf("create answer: %v", created)
		}
		trigger := created["trigger"].(map[string]any)
		if trigger["keyword"] != "devops" {
			t.Errorf("default trigger keyword = %v, want devops", trigger["keyword"])
		}

		var got map[string]any
		admin.must(http.StatusOK, "GET", "/api/v1/projects/orders", "").decode(t, &got)
		if _, shown := got["webhook_secret"]; shown || got["gitlab_path"] != "shop/orders" {
			t.Errorf("get: the secret must be shown only once, and the fields kept: %v", got)
		}

		admin.must(http.StatusOK, "PATCH", "/api/v1/projects/orders",
			`{"name":"orders2","gitlab_token":"glpat-xyz","keep_versions":5,"trigger":{"keyword":"","branches":["main","release/*"],"tags":true,"deploy":{"main":"staging"}}}`).decode(t, &got)
		if got["name"] != "orders2" || got["has_gitlab_token"] != true || got["keep_versions"] != float64(5) {
			t.Errorf("patch answer: %v", got)
		}
		tr := got["trigger"].(map[string]any)
		if tr["tags"] != true || tr["deploy"].(map[string]any)["main"] != "staging" || len(tr["branches"].([]any)) != 2 {
			t.Errorf("patched trigger: %v", tr)
		}
		admin.must(http.StatusNotFound, "GET", "/api/v1/projects/orders", "")

		var list []map[string]any
		admin.must(http.StatusOK, "GET", "/api/v1/projects", "").decode(t, &list)
		if len(list) != 1 || list[0]["name"] != "orders2" {
			t.Errorf("list: %v", list)
		}
		admin.must(http.StatusNoContent, "DELETE", "/api/v1/projects/orders2", "")
		admin.must(http.StatusNotFound, "GET", "/api/v1/projects/orders2", "")
		admin.must(http.StatusOK, "GET", "/api/v1/projects", "").decode(t, &list)
		if len(list) != 0 {
			t.Errorf("list after delete: %v", list)
		}
	})
}

func TestProjectWithOwnWebhookSecretIsNotEchoed(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		h := newServer(t, db)
		admin := tokenClient(t, h, db, mustUser(t, db, "root", true))
		r := admin.must(http.StatusCreated, "POST", "/api/v1/projects",
			`{"name":"web","gitlab_path":"g/web","clone_url":"git@gitlab.example.com:g/web.git","webhook_secret":"my-own-secret-123"}`)
		if strings.Contains(r.body, "my-own-secret-123") || !strings.Contains(r.body, `"has_webhook_secret":true`) {
			t.Errorf("create with a given secret must not echo it: %s", r.body)
		}
	})
}

func TestMembersAndEnvironments(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		h := newServer(t, db)
		admin := tokenClient(t, h, db, mustUser(t, db, "root", true))
		ann := mustUser(t, db, "ann", false)
		annClient := tokenClient(t, h, db, ann)
		pem, hostKey := testKeys(t)
		admin.must(http.StatusCreated, "POST", "/api/v1/projects", `{"name":"orders","gitlab_path":"shop/orders","clone_url":"https://x/y.git"}`)
		admin.must(http.StatusCreated, "POST", "/api/v1/hosts", fmt.Sprintf(`{"name":"web1","address":"10.0.0.1","user":"deploy","private_key":%s,"host_key":%s}`, jsonString(pem), jsonString(hostKey)))
		admin.must(http.StatusCreated, "POST", "/api/v1/hosts", fmt.Sprintf(`{"name":"web2","address":"web2.internal","port":2222,"user":"deploy","private_key":%s}`, jsonString(pem)))

		// Before being a member, ann does not see the project.
		annClient.must(http.StatusNotFound, "GET", "/api/v1/projects/orders", "")
		var m map[string]any
		admin.must(http.StatusCreated, "POST", "/api/v1/projects/orders/members", `{"user":"ann","production":true}`).decode(t, &m)
		if m["user"] != "ann" || m["production"] != true {
			t.Errorf("member answer: %v", m)
		}
		admin.must(http.StatusBadRequest, "POST", "/api/v1/projects/orders/members", `{"user":"nobody"}`)
		var members []map[string]any
		annClient.must(http.StatusOK, "GET", "/api/v1/projects/orders/members", "").decode(t, &members)
		if len(members) != 1 || members[0]["user"] != "ann" {
			t.Errorf("members: %v", members)
		}

		var env map[string]any
		admin.must(http.StatusCreated, "POST", "/api/v1/projects/orders/environments",
			`{"name":"prod","hosts":["web2","web1"],"protected":true,"strategy":{"kind":"rolling","batch":1}}`).decode(t, &env)
		if env["protected"] != true || fmt.Sprint(env["hosts"]) != "[web2 web1]" || env["strategy"].(map[string]any)["batch"] != "1" {
			t.Errorf("create environment answer: %v", env)
		}
		annClient.must(http.StatusOK, "GET", "/api/v1/projects/orders/environments/prod", "").decode(t, &env)
		if fmt.Sprint(env["hosts"]) != "[web2 web1]" {
			t.Errorf("environment hosts order: %v", env["hosts"])
		}
		admin.must(http.StatusOK, "PATCH", "/api/v1/projects/orders/environments/prod",
			`{"hosts":["web1"],"strategy":{"kind":"canary","batch":"25%"}}`).decode(t, &env)
		if fmt.Sprint(env["hosts"]) != "[web1]" || env["strategy"].(map[string]any)["kind"] != "canary" {
			t.Errorf("patched environment: %v", env)
		}
		admin.must(http.StatusBadRequest, "POST", "/api/v1/projects/orders/environments", `{"name":"test","hosts":["nohost"]}`)
		admin.must(http.StatusConflict, "DELETE", "/api/v1/hosts/web1", "")
		var envs []map[string]any
		annClient.must(http.StatusOK, "GET", "/api/v1/projects/orders/environments", "").decode(t, &envs)
		if len(envs) != 1 {
			t.Errorf("environments: %v", envs)
		}
		admin.must(http.StatusNoContent, "DELETE", "/api/v1/projects/orders/environments/prod", "")
		admin.must(http.StatusNotFound, "GET", "/api/v1/projects/orders/environments/prod", "")
		admin.must(http.StatusNoContent, "DELETE", "/api/v1/hosts/web1", "")
		admin.must(http.StatusNoContent, "DELETE", "/api/v1/projects/orders/members/ann", "")
		annClient.must(http.StatusNotFound, "GET", "/api/v1/projects/orders", "")
		admin.must(http.StatusNotFound, "DELETE", "/api/v1/projects/orders/members/ann", "")
	})
}

func TestHostsCRUD(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		h := newServer(t, db)
		admin := tokenClient(t, h, db, mustUser(t, db, "root", true))
		plain := tokenClient(t, h, db, mustUser(t, db, "bob", false))
		pem, hostKey := testKeys(t)
		pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(hostKey))
		if err != nil {
			t.Fatal(err)
		}
		var host map[string]any
		admin.must(http.StatusCreated, "POST", "/api/v1/hosts", fmt.Sprintf(`{"name":"db1","address":"192.168.1.5","user":"app","private_key":%s,"host_key":%s}`,
			jsonString(pem), jsonString(hostKey))).decode(t, &host)
		if host["port"] != float64(22) || host["has_private_key"] != true || host["fingerprint"] != ssh.FingerprintSHA256(pub) || host["user"] != "app" {
			t.Errorf("create host answer: %v", host)
		}
		plain.must(http.StatusOK, "GET", "/api/v1/hosts/db1", "")
		admin.must(http.StatusOK, "PATCH", "/api/v1/hosts/db1", `{"port":2200,"host_key":""}`).decode(t, &host)
		if host["port"] != float64(2200) || host["fingerprint"] != "" || host["has_private_key"] != true {
			t.Errorf("patched host: %v", host)
		}
		admin.must(http.StatusBadRequest, "POST", "/api/v1/hosts", `{"name":"bad","address":"h","user":"app","private_key":"not a key"}`)
		var hosts []map[string]any
		plain.must(http.StatusOK, "GET", "/api/v1/hosts", "").decode(t, &hosts)
		if len(hosts) != 1 || hosts[0]["name"] != "db1" {
			t.Errorf("hosts: %v", hosts)
		}
		admin.must(http.StatusNoContent, "DELETE", "/api/v1/hosts/db1", "")
		admin.must(http.StatusNotFound, "GET", "/api/v1/hosts/db1", "")
	})
}

func TestUsersTokensAndAudit(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		h := newServer(t, db)
		admin := tokenClient(t, h, db, mustUser(t, db, "root", true))
		var u map[string]any
		admin.must(http.StatusCreated, "POST", "/api/v1/users", `{"name":"carol","email":"carol@example.com","password":"long-enough-pw"}`).decode(t, &u)
		if u["name"] != "carol" || u["admin"] != false {
			t.Errorf("create user answer: %v", u)
		}
		admin.must(http.StatusBadRequest, "POST", "/api/v1/users", `{"name":"dave","password":"short"}`)
		admin.must(http.StatusOK, "PATCH", "/api/v1/users/carol", `{"email":"c@example.org","admin":true}`).decode(t, &u)
		if u["email"] != "c@example.org" || u["admin"] != true {
			t.Errorf("patched user: %v", u)
		}
		admin.must(http.StatusConflict, "DELETE", "/api/v1/users/root", "")

		// carol makes a token with her password-less API access and uses it.
		carol := tokenClient(t, h, db, mustGetUser(t, db, "carol"))
		var tok map[string]any
		carol.must(http.StatusCreated, "POST", "/api/v1/user/tokens", `{"name":"ci"}`).decode(t, &tok)
		secret, _ := tok["token"].(string)
		ci := &client{t: t, h: h, bearer: secret}
		ci.must(http.StatusOK, "GET", "/api/v1/user", "").decode(t, &u)
		if u["name"] != "carol" {
			t.Errorf("GET /user with the new token: %v", u)
		}
		var toks []map[string]any
		carol.must(http.StatusOK, "GET", "/api/v1/user/tokens", "").decode(t, &toks)
		if len(toks) != 2 {
			t.Errorf("carol's tokens: %v", toks)
		}
		admin.must(http.StatusNotFound, "DELETE", fmt.Sprintf("/api/v1/user/tokens/%v", tok["id"]), "")
		carol.must(http.StatusBadRequest, "DELETE", "/api/v1/user/tokens/abc", "")
		carol.must(http.StatusNoContent, "DELETE", fmt.Sprintf("/api/v1/user/tokens/%v", tok["id"]), "")
		ci.must(http.StatusUnauthorized, "GET", "/api/v1/user", "")

		admin.must(http.StatusNoContent, "DELETE", "/api/v1/users/carol", "")
		carol.must(http.StatusUnauthorized, "GET", "/api/v1/user", "")

		var entries []map[string]any
		admin.must(http.StatusOK, "GET", "/api/v1/audit?limit=2", "").decode(t, &entries)
		if len(entries) != 2 || entries[0]["action"] != "user.delete" || entries[0]["user"] != "root" || entries[0]["target"] != "user/carol" {
			t.Fatalf("audit: %v", entries)
		}
		var older []map[string]any
		admin.must(http.StatusOK, "GET", fmt.Sprintf("/api/v1/audit?limit=2&before=%v", entries[1]["id"]), "").decode(t, &older)
		if len(older) == 0 || older[0]["id"].(float64) >= entries[1]["id"].(float64) {
			t.Errorf("audit page 2: %v", older)
		}
		admin.must(http.StatusBadRequest, "GET", "/api/v1/audit?limit=x", "")
	})
}

func mustGetUser(t testing.TB, db *store.DB, name string) *store.User {
	t.Helper()
	u, err := db.GetUserByName(t.Context(), name)
	if err != nil {
		t.Fatalf("get user %s: %v", name, err)
	}
	return u
}

func TestHealth(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		c := &client{t: t, h: newServer(t, db)}
		if r := c.must(http.StatusOK, "GET", "/healthz", ""); strings.TrimSpace(r.body) != "ok" {
			t.Errorf("healthz body %q", r.body)
		}
		c.must(http.StatusOK, "GET", "/readyz", "")
		db.Close()
		if r := c.must(http.StatusServiceUnavailable, "GET", "/readyz", ""); !strings.Contains(r.body, "database") {
			t.Errorf("readyz on a closed database: %q", r.body)
		}
		c.must(http.StatusOK, "GET", "/healthz", "")
	})
}

func TestReadyzWithPendingMigrations(t *testing.T) {
	u := storetest.URL(t, store.SQLite)
	db, err := store.Open(t.Context(), store.Options{URL: u, DataDir: t.TempDir(), Key: storetest.Key})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	c := &client{t: t, h: newServer(t, db)}
	if r := c.must(http.StatusServiceUnavailable, "GET", "/readyz", ""); !strings.Contains(r.body, "ferry migrate") {
		t.Errorf("readyz before migrating: %q", r.body)
	}
}
