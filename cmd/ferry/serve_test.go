package main

import (
	"bytes"
	"crypto/ed25519"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"ferry/store"
	"ferry/store/storetest"
)

// instance is one ferry installation: a data dir and a database, started and stopped as a user would.
type instance struct {
	dataDir string
	env     []string
}

// newInstance returns an installation on a fresh database of dialect d (SQLite in the data dir).
func newInstance(tb testing.TB, d store.Dialect) instance {
	tb.Helper()
	dataDir := filepath.Join(tb.TempDir(), "data")
	env := ferryEnv("FERRY_DATA_DIR="+dataDir, "FERRY_ADDR=127.0.0.1:0")
	if d == store.Postgres {
		env = append(env, "FERRY_DATABASE_URL="+storetest.URL(tb, store.Postgres))
	}
	return instance{dataDir: dataDir, env: env}
}

var (
	adminPasswordLine = regexp.MustCompile(`msg="first start: created user admin[^"]*" .*password=(\S+)`)
	csrfField         = regexp.MustCompile(`name="csrf_token" value="([^"]+)"`)
	tokenLine         = regexp.MustCompile(`^ferry_[A-Za-z0-9_-]{20,}\n$`)
	projectsHeading   = regexp.MustCompile(`<h1[^>]*>\s*Projects\s*</h1>`)
)

// TestServe runs the ferry binary the way the README tells a user to, on SQLite and PostgreSQL:
// first start, browser login, a token from the CLI, the inventory over the API, SIGTERM, and a
// restart that finds everything as it was.
func TestServe(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			testServe(t, newInstance(t, d), d)
		})
	}
}

func testServe(t *testing.T, in instance, d store.Dialect) {
	srv := startServer(t, in.env)
	firstLog := srv.logs.String()
	m := adminPasswordLine.FindAllStringSubmatch(firstLog, -1)
	if len(m) != 1 {
		t.Fatalf("first start: want one log line with admin's one-time password, got %d:\n%s", len(m), firstLog)
	}
	password := m[0][1]
	if !strings.Contains(firstLog, "database="+string(d)) {
		t.Errorf("the ready line does not name the %s database:\n%s", d, firstLog)
	}

	browser := newClient(t, srv.URL, "")
	logIn(t, browser, password)

	res := runFerry(t, in.env, "", "token", "add", "admin")
	if res.code != 0 || !tokenLine.MatchString(res.stdout) {
		t.Fatalf("ferry token add admin: exit %d, stdout %q (want the token alone), stderr:\n%s", res.code, res.stdout, res.stderr)
	}
	token := strings.TrimSpace(res.stdout)
	api := newClient(t, srv.URL, token)

	secrets := newInventory(t)
	before := secrets.create(t, api)
	if page := browser.get("/"); page.status != 200 || !strings.Contains(page.body, `href="/projects/orders"`) {
		t.Errorf("GET / after creating a project: status %d, want 200 listing orders:\n%s", page.status, page.body)
	}

	if code := srv.stop(); code != 0 {
		t.Fatalf("after SIGTERM ferry exited %d, want 0:\n%s", code, srv.logs.String())
	}
	if !strings.Contains(srv.logs.String(), `msg="shutting down"`) {
		t.Errorf("no shutdown line in the log:\n%s", srv.logs.String())
	}
	key := checkSecretKeyFile(t, in.dataDir, nil)

	srv = startServer(t, in.env)
	second := srv.logs.String()
	for _, unwanted := range []string{"created user admin", "FERRY_SECRET_KEY is not set"} {
		if strings.Contains(second, unwanted) {
			t.Errorf("second start logged %q (admin and key are made only once):\n%s", unwanted, second)
		}
	}
	checkSecretKeyFile(t, in.dataDir, key)

	api = newClient(t, srv.URL, token)
	if after := secrets.read(t, api); !reflect.DeepEqual(before, after) {
		t.Errorf("after a restart the inventory reads\n%v\nwant\n%v", after, before)
	}
	var users []map[string]any
	api.api(200, "GET", "/api/v1/users", nil, &users)
	if len(users) != 1 || users[0]["name"] != "admin" {
		t.Errorf("users after a restart: %v, want admin alone", users)
	}
	browser = newClient(t, srv.URL, "")
	logIn(t, browser, password)
	if code := srv.stop(); code != 0 {
		t.Fatalf("second SIGTERM: exit %d, want 0", code)
	}

	secrets.checkNotLeaked(t, "a response", append(browser.answered(), api.answered()...)...)
	secrets.checkNotLeaked(t, "the log", firstLog, srv.logs.String())
	if d == store.SQLite {
		secrets.checkNotLeaked(t, "the SQLite file", readFiles(t, filepath.Join(in.dataDir, "ferry.db*"))...)
	}
}

// TestServeTwoProcessesOnePostgres: two ferry processes started at once on one new PostgreSQL
// database (sharing the secret key, as the README asks) both become ready, one schema is applied
// and exactly one of them creates admin.
func TestServeTwoProcessesOnePostgres(t *testing.T) {
	dbURL := storetest.URL(t, store.Postgres)
	ferryBinary(t)
	servers := make([]*server, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i := range servers {
		env := ferryEnv("FERRY_DATA_DIR="+t.TempDir(), "FERRY_ADDR=127.0.0.1:0",
			"FERRY_DATABASE_URL="+dbURL, "FERRY_SECRET_KEY=shared-by-both-processes")
		wg.Go(func() { servers[i], errs[i] = launchServer(t, env) })
	}
	wg.Wait()
	passwords := 0
	for i, srv := range servers {
		if errs[i] != nil {
			t.Fatalf("process %d: %v", i, errs[i])
		}
		passwords += len(adminPasswordLine.FindAllString(srv.logs.String(), -1))
	}
	if passwords != 1 {
		t.Errorf("%d one-time admin passwords logged by two processes, want 1", passwords)
	}
	var users []map[string]any
	res := runFerry(t, ferryEnv("FERRY_DATA_DIR="+t.TempDir(), "FERRY_DATABASE_URL="+dbURL, "FERRY_SECRET_KEY=shared-by-both-processes"), "", "token", "add", "admin")
	if res.code != 0 {
		t.Fatalf("ferry token add admin: %s", res.stderr)
	}
	newClient(t, servers[1].URL, strings.TrimSpace(res.stdout)).api(200, "GET", "/api/v1/users", nil, &users)
	if len(users) != 1 {
		t.Errorf("users: %v, want admin alone", users)
	}
	for i, srv := range servers {
		if code := srv.stop(); code != 0 {
			t.Errorf("process %d exited %d after SIGTERM", i, code)
		}
	}
}

// logIn logs in as admin through the login page, as a browser does: the form's CSRF token, the
// cookie it set, a redirect, and the projects page.
func logIn(t *testing.T, browser *client, password string) {
	t.Helper()
	page := browser.get("/")
	if page.status != http.StatusSeeOther || !strings.HasPrefix(page.header.Get("Location"), "/login") {
		t.Fatalf("GET / before login: status %d Location %q, want a redirect to /login", page.status, page.header.Get("Location"))
	}
	page = browser.get("/login")
	m := csrfField.FindStringSubmatch(page.body)
	if page.status != 200 || m == nil {
		t.Fatalf("GET /login: status %d, no csrf_token in:\n%s", page.status, page.body)
	}
	form := url.Values{"name": {"admin"}, "password": {password}, "csrf_token": {m[1]}, "next": {"/"}}
	wrong := url.Values{"name": {"admin"}, "password": {password}, "csrf_token": {"forged"}, "next": {"/"}}
	if r := browser.postForm("/login", wrong); r.status != http.StatusForbidden {
		t.Errorf("login with a forged CSRF token: status %d, want 403", r.status)
	}
	page = browser.get("/login")
	form.Set("csrf_token", csrfField.FindStringSubmatch(page.body)[1])
	r := browser.postForm("/login", form)
	if r.status != http.StatusSeeOther || r.header.Get("Location") != "/" {
		t.Fatalf("POST /login: status %d Location %q, want 303 to /:\n%s", r.status, r.header.Get("Location"), r.body)
	}
	cookies := strings.Join(r.header.Values("Set-Cookie"), "\n")
	for _, attr := range []string{"HttpOnly", "SameSite"} {
		if !strings.Contains(cookies, attr) {
			t.Errorf("session cookie without %s: %s", attr, cookies)
		}
	}
	page = browser.get("/")
	if page.status != 200 || !projectsHeading.MatchString(page.body) {
		t.Fatalf("GET / after login: status %d, want the projects page:\n%s", page.status, page.body)
	}
}

// inventory is a project, a host and an environment with the secrets they were created with.
type inventory struct {
	privateKey    string
	webhookSecret string
	hostKey       string
}

func newInventory(t *testing.T) *inventory {
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "deploy key")
	if err != nil {
		t.Fatal(err)
	}
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return &inventory{
		privateKey:    string(pem.EncodeToMemory(block)),
		webhookSecret: "whsec-" + store.RandomSecret(20),
		hostKey:       strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sshPub))),
	}
}

// create makes the inventory over the API, checks the answers, and returns what reads back.
func (inv *inventory) create(t *testing.T, api *client) map[string]any {
	t.Helper()
	var project, host, env map[string]any
	api.api(201, "POST", "/api/v1/projects", map[string]any{
		"name": "orders", "gitlab_path": "shop/orders", "clone_url": "https://gitlab.example.com/shop/orders.git",
		"webhook_secret": inv.webhookSecret,
		"trigger":        map[string]any{"keyword": "devops", "branches": []string{"main", "release/*"}, "tags": true, "deploy": map[string]string{"main": "prod"}},
	}, &project)
	api.api(201, "POST", "/api/v1/hosts", map[string]any{
		"name": "web-1", "address": "10.0.0.5", "port": 2222, "user": "deploy",
		"private_key": inv.privateKey, "host_key": inv.hostKey,
	}, &host)
	api.api(201, "POST", "/api/v1/projects/orders/environments", map[string]any{
		"name": "prod", "hosts": []string{"web-1"}, "protected": true, "strategy": map[string]any{"kind": "rolling", "batch": 2},
	}, &env)
	got := inv.read(t, api)
	want := map[string]any{
		"project": map[string]any{"name": "orders", "gitlab_path": "shop/orders", "clone_url": "https://gitlab.example.com/shop/orders.git",
			"has_webhook_secret": true,
			"trigger":            map[string]any{"keyword": "devops", "branches": []any{"main", "release/*"}, "tags": true, "deploy": map[string]any{"main": "prod"}}},
		"host": map[string]any{"name": "web-1", "address": "10.0.0.5", "port": 2222.0, "user": "deploy", "host_key": inv.hostKey, "has_private_key": true},
		"env":  map[string]any{"name": "prod", "hosts": []any{"web-1"}, "protected": true, "strategy": map[string]any{"kind": "rolling", "batch": "2"}},
	}
	for kind, fields := range want {
		for field, v := range fields.(map[string]any) {
			if g := got[kind].(map[string]any)[field]; !reflect.DeepEqual(g, v) {
				t.Errorf("%s %s reads back %#v, want %#v", kind, field, g, v)
			}
		}
	}
	return got
}

// read returns the project, host and environment as the API shows them now.
func (inv *inventory) read(t *testing.T, api *client) map[string]any {
	t.Helper()
	var project, host, env map[string]any
	var projects, hosts, envs []map[string]any
	api.api(200, "GET", "/api/v1/projects/orders", nil, &project)
	api.api(200, "GET", "/api/v1/hosts/web-1", nil, &host)
	api.api(200, "GET", "/api/v1/projects/orders/environments/prod", nil, &env)
	// With FERRY_ADDR=…:0 each start has its own port; the webhook URL must name the real one.
	if want := api.base + "/hooks/gitlab"; project["webhook_url"] != want {
		t.Errorf("webhook_url %v, want %s", project["webhook_url"], want)
	}
	delete(project, "webhook_url")
	api.api(200, "GET", "/api/v1/projects", nil, &projects)
	api.api(200, "GET", "/api/v1/hosts", nil, &hosts)
	api.api(200, "GET", "/api/v1/projects/orders/environments", nil, &envs)
	if len(projects) != 1 || len(hosts) != 1 || len(envs) != 1 {
		t.Errorf("lists hold %d projects, %d hosts, %d environments; want one of each", len(projects), len(hosts), len(envs))
	}
	var audit []map[string]any
	api.api(200, "GET", "/api/v1/audit", nil, &audit)
	if len(audit) < 3 {
		t.Errorf("audit log has %d entries after three creates: %v", len(audit), audit)
	}
	return map[string]any{"project": project, "host": host, "env": env}
}

// checkNotLeaked fails if any text holds a line of the private key or the webhook secret. The
// key's first base64 line is the same for every OpenSSH ed25519 key, so it does not count.
func (inv *inventory) checkNotLeaked(t *testing.T, where string, texts ...string) {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(inv.privateKey), "\n")
	secrets := append([]string{inv.webhookSecret}, lines[2:len(lines)-1]...)
	for _, text := range texts {
		for _, secret := range secrets {
			if strings.Contains(text, secret) {
				what := "private key"
				if secret == inv.webhookSecret {
					what = "webhook secret"
				}
				t.Errorf("%s contains the %s", where, what)
			}
		}
	}
}

// checkSecretKeyFile checks that the generated key file is private and, if want is given,
// unchanged; it returns its content.
func checkSecretKeyFile(t *testing.T, dataDir string, want []byte) []byte {
	t.Helper()
	path := filepath.Join(dataDir, "secret.key")
	st, err := os.Stat(path)
	if err != nil {
		t.Fatalf("secret key file: %v", err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("%s has mode %v, want 0600", path, st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if want != nil && !bytes.Equal(b, want) {
		t.Errorf("%s changed across a restart", path)
	}
	return b
}

// readFiles returns the contents of the files matching pattern.
func readFiles(t *testing.T, pattern string) []string {
	t.Helper()
	paths, err := filepath.Glob(pattern)
	if err != nil || len(paths) == 0 {
		t.Fatalf("no files match %s (%v)", pattern, err)
	}
	var out []string
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(b))
	}
	return out
}

// TestServeFinishesInFlightRequest: a request whose body is still arriving when SIGTERM comes is
// answered and its change kept; then ferry exits 0.
func TestServeFinishesInFlightRequest(t *testing.T) {
	in := newInstance(t, store.SQLite)
	srv := startServer(t, in.env)
	res := runFerry(t, in.env, "", "token", "add", "admin")
	if res.code != 0 {
		t.Fatalf("ferry token add admin: %s", res.stderr)
	}
	token := strings.TrimSpace(res.stdout)

	body, w := io.Pipe()
	req, err := http.NewRequest("POST", srv.URL+"/api/v1/projects", body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	wroteHeaders := make(chan struct{})
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		WroteHeaders: func() { close(wroteHeaders) },
	}))
	answer := make(chan response, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			answer <- response{body: err.Error()}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		answer <- response{status: resp.StatusCode, body: string(b)}
	}()
	io.WriteString(w, `{"name": "late", `)
	<-wroteHeaders
	time.Sleep(300 * time.Millisecond) // let the server take the connection

	stopped := make(chan int, 1)
	go func() { stopped <- srv.stop() }()
	time.Sleep(300 * time.Millisecond)
	select {
	case code := <-stopped:
		t.Fatalf("ferry exited (%d) with a request in flight", code)
	default:
	}
	io.WriteString(w, `"gitlab_path": "shop/late", "clone_url": "https://gitlab.example.com/shop/late.git"}`)
	w.Close()
	if r := <-answer; r.status != http.StatusCreated {
		t.Errorf("in-flight POST: status %d %s, want 201", r.status, r.body)
	}
	if code := <-stopped; code != 0 {
		t.Errorf("exit %d after SIGTERM, want 0", code)
	}

	srv = startServer(t, in.env)
	newClient(t, srv.URL, token).api(200, "GET", "/api/v1/projects/late", nil, nil)
	srv.stop()
}
