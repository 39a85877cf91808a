package handlers_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"

	"ferry/handlers"
	"ferry/store"
	"ferry/store/storetest"
)

// The roles every route is tried as, in the order of the want arrays below.
var roles = []string{"anonymous", "plain user", "member", "production member", "admin"}

// Expected statuses per role: anonymous, plain user (no member), member, member with the
// production right, admin. A route missing here fails TestEveryRouteChecksPermissions.
var routeTable = map[string][5]int{
	"GET /healthz":           {200, 200, 200, 200, 200},
	"GET /readyz":            {200, 200, 200, 200, 200},
	"GET /static/*filepath":  {200, 200, 200, 200, 200},
	"HEAD /static/*filepath": {200, 200, 200, 200, 200},
	"GET /login":             {200, 303, 303, 303, 303},
	"POST /login":            {303, 303, 303, 303, 303},
	"POST /logout":           {303, 303, 303, 303, 303},
	"GET /":                  {303, 200, 200, 200, 200},
	"GET /projects/:project": {303, 404, 200, 200, 200},

	"GET /api/v1/projects":             {401, 200, 200, 200, 200},
	"POST /api/v1/projects":            {401, 403, 403, 403, 201},
	"GET /api/v1/projects/:project":    {401, 404, 200, 200, 200},
	"PATCH /api/v1/projects/:project":  {401, 404, 403, 403, 200},
	"DELETE /api/v1/projects/:project": {401, 404, 403, 403, 204},

	"GET /api/v1/projects/:project/members":          {401, 404, 200, 200, 200},
	"POST /api/v1/projects/:project/members":         {401, 404, 403, 403, 201},
	"DELETE /api/v1/projects/:project/members/:user": {401, 404, 403, 403, 204},

	"GET /api/v1/projects/:project/environments":         {401, 404, 200, 200, 200},
	"POST /api/v1/projects/:project/environments":        {401, 404, 403, 403, 201},
	"GET /api/v1/projects/:project/environments/:env":    {401, 404, 200, 200, 200},
	"PATCH /api/v1/projects/:project/environments/:env":  {401, 404, 403, 403, 200},
	"DELETE /api/v1/projects/:project/environments/:env": {401, 404, 403, 403, 204},

	"GET /api/v1/hosts":          {401, 200, 200, 200, 200},
	"POST /api/v1/hosts":         {401, 403, 403, 403, 201},
	"GET /api/v1/hosts/:host":    {401, 200, 200, 200, 200},
	"PATCH /api/v1/hosts/:host":  {401, 403, 403, 403, 200},
	"DELETE /api/v1/hosts/:host": {401, 403, 403, 403, 204},

	"GET /api/v1/users":          {401, 403, 403, 403, 200},
	"POST /api/v1/users":         {401, 403, 403, 403, 201},
	"PATCH /api/v1/users/:user":  {401, 403, 403, 403, 200},
	"DELETE /api/v1/users/:user": {401, 403, 403, 403, 204},
	"GET /api/v1/user":           {401, 200, 200, 200, 200},

	"GET /api/v1/user/tokens":        {401, 200, 200, 200, 200},
	"POST /api/v1/user/tokens":       {401, 201, 201, 201, 201},
	"DELETE /api/v1/user/tokens/:id": {401, 204, 204, 204, 204},
	"GET /api/v1/audit":              {401, 403, 403, 403, 200},
}

// routeBodies are the JSON bodies of the routes that take one; {uniq} becomes a new name.
var routeBodies = map[string]string{
	"POST /api/v1/projects":                             `{"name":"{uniq}","gitlab_path":"g/{uniq}","clone_url":"https://x/y.git"}`,
	"PATCH /api/v1/projects/:project":                   `{"keep_versions":7}`,
	"POST /api/v1/projects/:project/members":            `{"user":"plain"}`,
	"POST /api/v1/projects/:project/environments":       `{"name":"new"}`,
	"PATCH /api/v1/projects/:project/environments/:env": `{"protected":true}`,
	"POST /api/v1/hosts":                                `{"name":"{uniq}","address":"10.1.1.1","user":"deploy","private_key":{key}}`,
	"PATCH /api/v1/hosts/:host":                         `{"port":2222}`,
	"POST /api/v1/users":                                `{"name":"{uniq}","password":"long-enough-pw"}`,
	"PATCH /api/v1/users/:user":                         `{"email":"x@example.com"}`,
	"POST /api/v1/user/tokens":                          `{"name":"t"}`,
}

// permFixture is a project with a protected and an unprotected environment on one host, a
// spare host in no environment (so it can be deleted), two members (one with the production right), and another user, made fresh for requests
// that may change them.
type permFixture struct {
	project, host, spare, target string
	// params are the values of other route parameters (":build" → "12"), filled in by the
	// fixtureMakers of the resources that add them.
	params map[string]string
}

// Resources whose routes came after the foundation add their permission rows, request bodies
// and fixture makers from their own test files with addPermRoutes, so that each keeps its part
// of the table next to its tests.
var fixtureMakers []func(t *testing.T, db *store.DB, fx *permFixture)

// permRouteParts adds, once, the parts of the permission table kept in other test files. They
// are named here rather than registered by init functions, so what the table holds and the
// order the fixture makers run in are written down in one place.
var permRouteParts = sync.OnceFunc(func() {
	accountPermRoutes()
	approvalPermRoutes()
	buildPermRoutes()
	channelPagePermRoutes()
	channelPermRoutes()
	changesPermRoutes()
	deploymentPermRoutes()
	firstRunPermRoutes()
	gitlabPickPermRoutes()
	hostKeyPermRoutes()
	jobPermRoutes()
	jobFilePermRoutes()
	openAPIPermRoutes()
	pagePermRoutes()
	streamPermRoutes()
	variablePermRoutes()
	versionPagePermRoutes()
})

func addPermRoutes(table map[string][5]int, bodies map[string]string, maker func(t *testing.T, db *store.DB, fx *permFixture)) {
	for k, v := range table {
		routeTable[k] = v
	}
	for k, v := range bodies {
		routeBodies[k] = v
	}
	if maker != nil {
		fixtureMakers = append(fixtureMakers, maker)
	}
}

func newPermFixture(t *testing.T, db *store.DB, users map[string]*store.User, key string) permFixture {
	t.Helper()
	permRouteParts()
	ctx := context.Background()
	f := permFixture{project: storetest.Name("p"), host: storetest.Name("h"), spare: storetest.Name("s"), target: storetest.Name("u"), params: map[string]string{}}
	p := &store.Project{Name: f.project, GitLabPath: "g/" + f.project, CloneURL: "https://x/y.git", Trigger: store.DefaultTrigger()}
	must(t, db.CreateProject(ctx, p))
	must(t, db.CreateHost(ctx, &store.Host{Name: f.host, Address: "10.0.0.9", Port: 22, User: "deploy", PrivateKey: key}))
	must(t, db.CreateHost(ctx, &store.Host{Name: f.spare, Address: "10.0.0.8", Port: 22, User: "deploy", PrivateKey: key}))
	must(t, db.CreateEnvironment(ctx, &store.Environment{ProjectID: p.ID, Name: "unprot", Hosts: []string{f.host}}))
	// A host of a protected environment may not also be in an unprotected one (store.checkSharedHosts).
	must(t, db.CreateHost(ctx, &store.Host{Name: f.host + "-prot", Address: "10.0.0.7", Port: 22, User: "deploy", PrivateKey: key}))
	must(t, db.CreateEnvironment(ctx, &store.Environment{ProjectID: p.ID, Name: "prot", Hosts: []string{f.host + "-prot"}, Protected: true}))
	mustUser(t, db, f.target, false)
	for name, production := range map[string]bool{users["member"].Name: false, users["production member"].Name: true, f.target: false} {
		if _, err := db.SetMember(ctx, p.ID, name, production); err != nil {
			t.Fatal(err)
		}
	}
	for _, make := range fixtureMakers {
		make(t, db, &f)
	}
	return f
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestEveryRouteChecksPermissions(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		srv := handlers.New(handlers.Config{DB: db, BaseURL: testBaseURL})
		h := srv.Handler()
		users := map[string]*store.User{
			"plain user":        mustUser(t, db, "plain", false),
			"member":            mustUser(t, db, "mem", false),
			"production member": mustUser(t, db, "prodmem", false),
			"admin":             mustUser(t, db, "boss", true),
		}
		key, _ := testKeys(t)
		permRouteParts()
		fx := newPermFixture(t, db, users, key)
		seen := map[string]bool{}
		for _, route := range srv.Routes() {
			seen[route] = true
			want, ok := routeTable[route]
			if !ok {
				t.Errorf("route %s has no entry in the permission table", route)
				continue
			}
			for i, role := range roles {
				req := permRequest(t, db, route, fx, users[role], key)
				r := sessionOrAnonymous(t, h, db, users[role]).send(req)
				if r.status != want[i] {
					t.Errorf("%s as %s: status %d, want %d (%.200s)", route, role, r.status, want[i], r.body)
				}
				if req.Method != "GET" && req.Method != "HEAD" && r.status < 400 {
					fx = newPermFixture(t, db, users, key) // it may have changed
				}
			}
		}
		for route := range routeTable {
			if !seen[route] {
				t.Errorf("permission table names %s, which is not a route", route)
			}
		}
	})
}

// sessionOrAnonymous returns a client logged in as u with a browser session, or anonymous.
func sessionOrAnonymous(t *testing.T, h http.Handler, db *store.DB, u *store.User) *client {
	if u == nil {
		return &client{t: t, h: h}
	}
	return sessionClient(t, h, db, u)
}

// permRequest builds a request for route "METHOD /path" against the fixture, as user u.
func permRequest(t *testing.T, db *store.DB, route string, fx permFixture, u *store.User, key string) *http.Request {
	t.Helper()
	method, path, _ := strings.Cut(route, " ")
	tokenID := "1"
	if u != nil && strings.Contains(path, ":id") {
		tok, _, err := db.CreateToken(context.Background(), u.ID, "doomed")
		must(t, err)
		tokenID = strconv.FormatInt(tok.ID, 10)
	}
	pairs := []string{":project", fx.project, ":env", "unprot", ":host", fx.spare,
		":user", fx.target, ":id", tokenID, "*filepath", "style.css"}
	for param, v := range fx.params {
		pairs = append([]string{":" + param, v}, pairs...) // longer names first: :build before :b
	}
	path = strings.NewReplacer(pairs...).Replace(path)
	if route == "POST /login" {
		form := url.Values{"name": {"mem"}, "password": {"password-mem"}, "csrf_token": {"login-csrf"}}
		req := httptest.NewRequest(method, path, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.AddCookie(&http.Cookie{Name: "ferry_login_csrf", Value: "login-csrf"})
		return req
	}
	body := routeBodies[route]
	if body == "" {
		return httptest.NewRequest(method, path, nil)
	}
	body = strings.NewReplacer("{uniq}", storetest.Name("n"), "{key}", jsonString(key)).Replace(body)
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	return req
}

func TestNonMembersCannotTellThatAProjectExists(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		h := newServer(t, db)
		admin := tokenClient(t, h, db, mustUser(t, db, "boss", true))
		plain := tokenClient(t, h, db, mustUser(t, db, "plain", false))
		admin.must(http.StatusCreated, "POST", "/api/v1/projects", `{"name":"secretproj","gitlab_path":"g/s","clone_url":"https://x/y.git"}`)
		exists := plain.must(http.StatusNotFound, "GET", "/api/v1/projects/secretproj", "")
		missing := plain.must(http.StatusNotFound, "GET", "/api/v1/projects/nosuchproj", "")
		if strings.ReplaceAll(exists.body, "secretproj", "X") != strings.ReplaceAll(missing.body, "nosuchproj", "X") {
			t.Errorf("a non-member can tell an existing project from a missing one: %s vs %s", exists.body, missing.body)
		}
		var list []any
		plain.must(http.StatusOK, "GET", "/api/v1/projects", "").decode(t, &list)
		if len(list) != 0 {
			t.Errorf("a non-member lists projects: %v", list)
		}
	})
}
