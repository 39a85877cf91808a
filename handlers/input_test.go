package handlers_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"ferry/store"
	"ferry/store/storetest"
)

// snapshot is every listing an administrator can read, to show that a refused request
// changed nothing.
func snapshot(c *client) string {
	c.t.Helper()
	var b strings.Builder
	for _, p := range []string{"/api/v1/projects", "/api/v1/hosts", "/api/v1/users",
		"/api/v1/projects/orders/environments", "/api/v1/projects/orders/members", "/api/v1/audit?limit=1000"} {
		b.WriteString(c.must(http.StatusOK, "GET", p, "").body)
	}
	return b.String()
}

func TestBadInputIsRefusedAndChangesNothing(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		h := newServer(t, db)
		admin := tokenClient(t, h, db, mustUser(t, db, "root", true))
		pem, _ := testKeys(t)
		admin.must(http.StatusCreated, "POST", "/api/v1/projects", `{"name":"orders","gitlab_path":"shop/orders","clone_url":"https://x/y.git"}`)
		admin.must(http.StatusCreated, "POST", "/api/v1/hosts", fmt.Sprintf(`{"name":"web1","address":"10.0.0.1","user":"deploy","private_key":%s}`, jsonString(pem)))
		admin.must(http.StatusCreated, "POST", "/api/v1/projects/orders/environments", `{"name":"prod","hosts":["web1"]}`)
		admin.must(http.StatusCreated, "POST", "/api/v1/projects/orders/environments", `{"name":"test"}`)
		before := snapshot(admin)
		evil := `x'; DROP TABLE projects;--`

		tests := []struct {
			name, method, path, body string
			status                   int
			message                  string // part of the error
		}{
			{"malformed JSON", "POST", "/api/v1/projects", "{\"name\": \"a\",\n \"gitlab_path\" \"g/a\"}", 400, "line 2, column"},
			{"truncated JSON", "POST", "/api/v1/hosts", `{"name":"a"`, 400, "malformed JSON"},
			{"wrong type", "POST", "/api/v1/hosts", `{"name":"h2","address":"h","user":"u","port":"22"}`, 400, "port: want a number, got string"},
			{"wrong type in patch", "PATCH", "/api/v1/hosts/web1", `{"port":"22"}`, 400, "port: want a number, got string"},
			{"wrong nested type", "PATCH", "/api/v1/projects/orders", `{"trigger":{"tags":"yes"}}`, 400, "trigger.tags: want true or false, got string"},
			{"wrong batch", "PATCH", "/api/v1/projects/orders/environments/prod", `{"strategy":{"batch":[1]}}`, 400, "strategy.batch"},
			{"unknown field", "POST", "/api/v1/projects", `{"name":"a","gitlab_path":"g/a","clone_url":"https://x","colour":"red"}`, 400, "colour: unknown field"},
			{"trailing data", "POST", "/api/v1/projects", `{"name":"a","gitlab_path":"g/a","clone_url":"https://x"} {"name":"b"}`, 400, "after the JSON object"},
			{"empty body", "POST", "/api/v1/projects", ``, 400, "empty"},
			{"not an object", "POST", "/api/v1/projects", `[1,2]`, 400, "want an object, got array"},
			{"duplicate project", "POST", "/api/v1/projects", `{"name":"orders","gitlab_path":"shop/other","clone_url":"https://x/y.git"}`, 409, "already exists"},
			{"duplicate gitlab path", "POST", "/api/v1/projects", `{"name":"other","gitlab_path":"shop/orders","clone_url":"https://x/y.git"}`, 409, "gitlab_path"},
			{"duplicate host", "POST", "/api/v1/hosts", fmt.Sprintf(`{"name":"web1","address":"10.0.0.2","user":"deploy","private_key":%s}`, jsonString(pem)), 409, "already exists"},
			{"duplicate environment", "POST", "/api/v1/projects/orders/environments", `{"name":"prod"}`, 409, "already has an environment"},
			{"duplicate user", "POST", "/api/v1/users", `{"name":"root","password":"long-enough-pw"}`, 409, "already exists"},
			{"environment renamed onto another", "PATCH", "/api/v1/projects/orders/environments/prod", `{"name":"test"}`, 409, "already has an environment"},
			{"SQL in project name", "POST", "/api/v1/projects", `{"name":` + jsonString(evil) + `,"gitlab_path":"g/a","clone_url":"https://x"}`, 400, "name:"},
			{"SQL in host name", "POST", "/api/v1/hosts", `{"name":` + jsonString(evil) + `,"address":"h","user":"u"}`, 400, "name:"},
			{"SQL in user name", "POST", "/api/v1/users", `{"name":` + jsonString(evil) + `,"password":"long-enough-pw"}`, 400, "name:"},
			{"SQL in member", "POST", "/api/v1/projects/orders/members", `{"user":` + jsonString(evil) + `}`, 400, "no user named"},
			{"SQL in environment hosts", "PATCH", "/api/v1/projects/orders/environments/prod", `{"hosts":[` + jsonString(evil) + `]}`, 400, "hosts:"},
			{"SQL in path", "GET", "/api/v1/projects/x'%3B%20DROP%20TABLE%20projects%3B--", "", 404, "not found"},
			{"SQL in delete path", "DELETE", "/api/v1/hosts/x'%3B%20DROP%20TABLE%20hosts%3B--", "", 404, "not found"},
			{"unicode project name", "POST", "/api/v1/projects", `{"name":"项目","gitlab_path":"g/a","clone_url":"https://x"}`, 400, "项目"},
			{"unicode environment", "POST", "/api/v1/projects/orders/environments", `{"name":"生产"}`, 400, "name:"},
			{"unicode in path", "GET", "/api/v1/projects/%E9%A1%B9%E7%9B%AE", "", 404, "项目"},
			{"bad strategy", "PATCH", "/api/v1/projects/orders/environments/prod", `{"strategy":{"kind":"yolo"}}`, 400, "strategy.kind"},
			{"bad port", "PATCH", "/api/v1/hosts/web1", `{"port":70000}`, 400, "port"},
			{"bad clone url", "PATCH", "/api/v1/projects/orders", `{"clone_url":"--upload-pack=evil"}`, 400, "clone_url"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				r := admin.do(tt.method, tt.path, tt.body)
				if r.status != tt.status {
					t.Fatalf("status %d, want %d; body %s", r.status, tt.status, r.body)
				}
				if tt.message != "" && !strings.Contains(r.errorText(t), tt.message) {
					t.Errorf("error %q does not say %q", r.errorText(t), tt.message)
				}
			})
		}
		if after := snapshot(admin); before != after {
			t.Errorf("refused requests changed data:\nbefore %s\nafter  %s", before, after)
		}
	})
}

func TestTooLargeBodies(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		h := newServer(t, db)
		admin := tokenClient(t, h, db, mustUser(t, db, "root", true))
		admin.must(http.StatusCreated, "POST", "/api/v1/projects", `{"name":"orders","gitlab_path":"shop/orders","clone_url":"https://x/y.git"}`)
		before := snapshot(admin)
		huge := `{"name":"big","gitlab_path":"g/big","clone_url":"https://x","tag_template":"` + strings.Repeat("a", 10<<20) + `"}`

		cases := map[string]func(*http.Request){
			"honest length": func(r *http.Request) {},
			"no length":     func(r *http.Request) { r.ContentLength = -1 },
			"lying length":  func(r *http.Request) { r.ContentLength = 100 },
		}
		for name, prepare := range cases {
			t.Run(name, func(t *testing.T) {
				req := httptest.NewRequest("POST", "/api/v1/projects", strings.NewReader(huge))
				prepare(req)
				r := admin.send(req)
				if r.status != http.StatusRequestEntityTooLarge || r.errorText(t) != "request body too large (limit 1 MiB)" {
					t.Errorf("status %d body %.200s", r.status, r.body)
				}
			})
		}
		if after := snapshot(admin); after != before {
			t.Errorf("a too large body changed data")
		}
	})
}
