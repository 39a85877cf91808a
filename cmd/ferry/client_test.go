package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"ferry/deploy/sshtest"
	"ferry/store"
	"ferry/store/storetest"
)

// cliSetup is a running ferry with two sshd hosts, the project orders deploying to staging on
// both, and an environment for the ferry command line that has no login yet.
type cliSetup struct {
	in      instance
	srv     *server
	cluster *sshtest.Cluster
	repo    *gitRepo
	token   string
	env     []string // for client commands: a config dir of its own, no FERRY_* variables
}

func newCLISetup(t *testing.T, d store.Dialect) *cliSetup {
	t.Helper()
	s := &cliSetup{in: newInstance(t, d), cluster: sshtest.Start(t, 2, sshtest.Options{}), repo: newGitRepo(t)}
	s.in.env = append(s.in.env, "FERRY_METRICS_TOKEN="+testMetricsToken)
	s.srv = startServer(t, s.in.env)
	res := runFerry(t, s.in.env, "", "token", "add", "admin")
	if res.code != 0 {
		t.Fatalf("ferry token add admin: exit %d: %s", res.code, res.stderr)
	}
	s.token = strings.TrimSpace(res.stdout)
	s.env = ferryEnv("XDG_CONFIG_HOME=" + filepath.Join(t.TempDir(), "config"))
	api := newClient(t, s.srv.URL, s.token)
	for _, h := range s.cluster.Hosts() {
		api.api(http.StatusCreated, "POST", "/api/v1/hosts", map[string]any{"name": h.Name, "address": h.Addr(),
			"port": h.Port(), "user": "root", "private_key": string(s.cluster.ClientKeyPEM), "host_key": h.HostKey()}, nil)
	}
	// No automatic deployment: the command line decides what goes where.
	api.api(http.StatusCreated, "POST", "/api/v1/projects", map[string]any{"name": "orders", "gitlab_path": "shop/orders",
		"clone_url": s.repo.dir, "webhook_secret": "hook-secret-123456", "trigger": map[string]any{"keyword": ""}}, nil)
	api.api(http.StatusCreated, "POST", "/api/v1/projects/orders/environments",
		map[string]any{"name": "staging", "hosts": []string{"host-1", "host-2"}}, nil)
	return s
}

// ferry runs a client command and checks its exit status; stdout without a terminal must
// hold no terminal control sequences.
func (s *cliSetup) ferry(t *testing.T, wantCode int, stdin string, args ...string) result {
	t.Helper()
	return s.ferryEnv(t, s.env, wantCode, stdin, args...)
}

func (s *cliSetup) ferryEnv(t *testing.T, env []string, wantCode int, stdin string, args ...string) result {
	t.Helper()
	res := runFerry(t, env, stdin, args...)
	if res.code != wantCode {
		t.Fatalf("ferry %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), res.code, wantCode, res.stdout, res.stderr)
	}
	if strings.Contains(res.stdout, "\x1b[") || strings.Contains(res.stdout, "\r") {
		t.Errorf("ferry %s wrote terminal control sequences to a pipe: %q", strings.Join(args, " "), res.stdout)
	}
	if wantCode != 0 {
		checkOneLineError(t, res)
	}
	return res
}

// checkOneLineError checks that a failure is told on one line of stderr, as "ferry: …".
func checkOneLineError(t *testing.T, res result) {
	t.Helper()
	if !strings.HasPrefix(res.stderr, "ferry: ") || strings.Count(res.stderr, "\n") != 1 {
		t.Errorf("stderr %q: want one line starting with \"ferry: \"", res.stderr)
	}
}

var builtVersion = regexp.MustCompile(`(?m)^build \d+ success: version (\S+)$`)

// build builds main with the command line and returns the version.
func (s *cliSetup) build(t *testing.T) string {
	t.Helper()
	res := s.ferry(t, 0, "", "build", "orders", "--ref", "main", "--follow")
	m := builtVersion.FindStringSubmatch(res.stdout)
	if m == nil {
		t.Fatalf("ferry build --follow printed no version:\n%s", res.stdout)
	}
	if !strings.Contains(res.stdout, "artifact dist packed") {
		t.Errorf("ferry build --follow did not show the build's log:\n%s", res.stdout)
	}
	return m[1]
}

// TestCommandLine drives a real ferry serve and real sshd hosts with the ferry command line, as
// a CI script would (no terminal): login, listings, build, deploy, rollback, logs, failures and
// their exit statuses.
func TestCommandLine(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(string(d), func(t *testing.T) {
			testCommandLine(t, newCLISetup(t, d))
		})
	}
}

func testCommandLine(t *testing.T, s *cliSetup) {
	// Nothing works before login, and says so.
	res := s.ferry(t, 1, "", "projects")
	if !strings.Contains(res.stderr, "ferry login") {
		t.Errorf("before login: %q, want a hint to run ferry login", res.stderr)
	}
	testLogin(t, s)

	res = s.ferry(t, 0, "", "projects")
	if !regexp.MustCompile(`(?m)^orders\s+shop/orders\s+20$`).MatchString(res.stdout) {
		t.Errorf("ferry projects:\n%s", res.stdout)
	}
	var projects []store.Project
	if err := json.Unmarshal([]byte(s.ferry(t, 0, "", "projects", "--json").stdout), &projects); err != nil || len(projects) != 1 || projects[0].Name != "orders" {
		t.Errorf("ferry projects --json: %v %+v", err, projects)
	}

	// Usage errors: exit 2.
	s.ferry(t, 2, "", "build", "orders")
	s.ferry(t, 2, "", "deploy", "orders")
	s.ferry(t, 2, "", "deploy", "orders", "staging", "v1", "--latest")
	s.ferry(t, 2, "", "deploy", "orders", "staging", "--latest", "--strategy", "sideways")
	s.ferry(t, 2, "", "logs", "build", "twelve")

	s.repo.commit("first release")
	v1 := s.build(t)
	res = s.ferry(t, 0, "", "deploy", "orders", "staging", "--latest", "--follow")
	for _, want := range []string{"host-1: succeeded", "host-2: succeeded", "host-1 | ", "success: " + v1 + " runs on 2 hosts of staging"} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("ferry deploy --follow: no %q in\n%s", want, res.stdout)
		}
	}
	if !regexp.MustCompile(`(?m)^host-1: succeeded, [1-9]\d* B of [1-9]\d* B uploaded$`).MatchString(res.stdout) {
		t.Errorf("ferry deploy --follow did not show the bytes uploaded:\n%s", res.stdout)
	}
	for _, h := range s.cluster.Hosts() {
		assertRunning(t, h, v1)
	}

	s.repo.commit("second release")
	v2 := s.build(t)
	res = s.ferry(t, 0, "", "deploy", "orders", "staging", v2, "--strategy", "rolling:50%", "--hosts", "host-2,host-1", "--follow")
	if !strings.Contains(res.stdout, "(rolling") || !strings.Contains(res.stdout, "on host-2, host-1") {
		t.Errorf("ferry deploy --strategy rolling:50%% --hosts host-2,host-1 did not roll out so:\n%s", res.stdout)
	}
	for _, h := range s.cluster.Hosts() {
		assertRunning(t, h, v2)
	}

	// Rollback asks first; without a terminal it needs --yes, and does nothing without it.
	res = s.ferry(t, 2, "", "rollback", "orders", "staging")
	if !strings.Contains(res.stderr, "--yes") {
		t.Errorf("rollback without a terminal: %q, want it to ask for --yes", res.stderr)
	}
	for _, h := range s.cluster.Hosts() {
		assertRunning(t, h, v2)
	}
	res = s.ferry(t, 0, "", "rollback", "orders", "staging", "--yes", "--follow")
	if !strings.Contains(res.stdout, "runs "+v2+"; rolling back to "+v1) {
		t.Errorf("ferry rollback did not say what it rolls back to:\n%s", res.stdout)
	}
	if regexp.MustCompile(`\b[1-9][\d.]* [KMG]?i?B of`).MatchString(res.stdout) {
		t.Errorf("the rollback uploaded the kept release again:\n%s", res.stdout)
	}
	for _, h := range s.cluster.Hosts() {
		assertRunning(t, h, v1)
	}
	var instances []store.Instance
	if err := json.Unmarshal([]byte(s.ferry(t, 0, "", "instances", "orders", "--json").stdout), &instances); err != nil || len(instances) != 2 {
		t.Fatalf("ferry instances --json: %v %+v", err, instances)
	}
	for _, in := range instances {
		if in.Version != v1 || in.Previous != v2 {
			t.Errorf("instance %+v: want %s running, %s before it", in, v1, v2)
		}
	}
	res = s.ferry(t, 0, "", "versions", "orders")
	if !strings.Contains(res.stdout, v1) || !strings.Contains(res.stdout, v2) {
		t.Errorf("ferry versions:\n%s", res.stdout)
	}
	testOnTerminal(t, s, v1, v2)
	testJobFailures(t, s, v2)

	// What an operator's Prometheus sees of all this.
	_, metrics := getMetrics(t, s.srv.URL+"/metrics", testMetricsToken)
	for _, want := range []string{
		`ferry_deployments_total{environment="staging",project="orders",status="success"} 4`,
		`ferry_deployment_duration_seconds_count{environment="staging",project="orders",status="success"} 4`,
		`ferry_builds_total{project="orders",status="failed"} 1`,
		`ferry_deployments_total{environment="staging",project="orders",status="failed"} 1`,
		`ferry_queue_waiting{kind="deployment"} 0`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("no %q in /metrics", want)
		}
	}
	testChangeControl(t, s, v1)
}

// testLogin logs in with a password (wrong, then right) and with a token, and checks the
// stored file.
func testLogin(t *testing.T, s *cliSetup) {
	m := adminPasswordLine.FindStringSubmatch(s.srv.logs.String())
	if m == nil {
		t.Fatal("no first admin password in the server log")
	}
	res := s.ferry(t, 1, "not the password\n", "login", s.srv.URL, "--user", "admin")
	if !strings.Contains(res.stderr, "log in as admin") {
		t.Errorf("a wrong password: %q", res.stderr)
	}
	res = s.ferry(t, 0, m[1]+"\n", "login", s.srv.URL, "--user", "admin")
	if !strings.Contains(res.stdout, "as admin") {
		t.Errorf("password login: %q", res.stdout)
	}
	s.ferry(t, 1, "ferry_not-a-token-at-all-0000000000\n", "login", s.srv.URL)
	res = s.ferry(t, 0, s.token+"\n", "login", s.srv.URL)
	if !strings.Contains(res.stdout, "logged in to "+s.srv.URL+" as admin") {
		t.Errorf("token login: %q", res.stdout)
	}
	var dir string
	for _, kv := range s.env {
		if v, ok := strings.CutPrefix(kv, "XDG_CONFIG_HOME="); ok {
			dir = v
		}
	}
	file := filepath.Join(dir, "ferry", "config.json")
	info, err := os.Stat(file)
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("stored login %s: %v, mode %v; want 0600", file, err, info.Mode())
	}
	var stored clientConfig
	raw, _ := os.ReadFile(file)
	if err := json.Unmarshal(raw, &stored); err != nil || stored.URL != s.srv.URL || stored.Token != s.token {
		t.Errorf("stored login %s: %v %+v", file, err, stored)
	}
	// FERRY_TOKEN overrides the stored token, for CI.
	res = s.ferryEnv(t, append(s.env[:len(s.env):len(s.env)], "FERRY_TOKEN=ferry_wrong-token-000000000000000"), 1, "", "projects")
	if !strings.Contains(res.stderr, "FERRY_TOKEN") {
		t.Errorf("a wrong FERRY_TOKEN: %q", res.stderr)
	}
}

// testJobFailures checks the exit status of operations that fail: the API's refusal, a
// failed build followed, and its log.
func testJobFailures(t *testing.T, s *cliSetup, kept string) {
	res := s.ferry(t, 1, "", "deploy", "orders", "staging", "no-such-version")
	if !strings.Contains(res.stderr, "no-such-version") {
		t.Errorf("deploying an unknown version: %q, want the API's message naming it", res.stderr)
	}
	s.ferry(t, 1, "", "cancel", "build", "999999")
	s.ferry(t, 1, "", "builds", "no-such-project")

	// A release that never gets healthy: the deployment fails, and so does ferry.
	sick := strings.Replace(releasePipeline, `health: { command: 'kill -0 "$(cat run/app.pid)" && grep -qx "$FERRY_VERSION" VERSION', timeout: 20s }`,
		`health: { command: 'echo never healthy; exit 1', timeout: 2s }`, 1)
	if sick == releasePipeline {
		t.Fatal("the test pipeline has no health check to break")
	}
	if err := os.WriteFile(filepath.Join(s.repo.dir, ".ferry.yml"), []byte(sick), 0o644); err != nil {
		t.Fatal(err)
	}
	s.repo.commit("a release that never gets healthy")
	v3 := s.build(t)
	res = s.ferry(t, 1, "", "deploy", "orders", "staging", v3, "--follow")
	if !regexp.MustCompile(`^ferry: deployment \d+ failed: .*host-1`).MatchString(res.stderr) || !strings.Contains(res.stdout, "host-1: failed") {
		t.Errorf("a failed deployment followed:\nstdout:\n%s\nstderr: %s", res.stdout, res.stderr)
	}
	for _, h := range s.cluster.Hosts() {
		assertRunning(t, h, kept) // host-1 was switched back, host-2 never reached
	}

	broken := strings.Replace(releasePipeline, "cp -R service dist", "seq 1 3000; echo the build breaks here; exit 3", 1)
	if err := os.WriteFile(filepath.Join(s.repo.dir, ".ferry.yml"), []byte(broken), 0o644); err != nil {
		t.Fatal(err)
	}
	s.repo.commit("a broken build")
	res = s.ferry(t, 1, "", "build", "orders", "--ref", "main", "--follow")
	if !strings.Contains(res.stdout, "the build breaks here") || !regexp.MustCompile(`^ferry: build \d+ failed: `).MatchString(res.stderr) {
		t.Errorf("a failed build followed:\nstdout:\n%s\nstderr: %s", res.stdout, res.stderr)
	}
	var builds []store.Build
	if err := json.Unmarshal([]byte(s.ferry(t, 0, "", "builds", "orders", "--json", "--status", "failed").stdout), &builds); err != nil || len(builds) != 1 {
		t.Fatalf("ferry builds --status failed --json: %v %+v", err, builds)
	}
	id := builds[0].ID
	res = s.ferry(t, 1, "", "logs", "build", itoa(id), "-f")
	if !strings.Contains(res.stdout, "the build breaks here") {
		t.Errorf("ferry logs build -f of the failed build:\n%s", res.stdout)
	}
	res = s.ferry(t, 0, "", "logs", "build", itoa(id))
	if !strings.Contains(res.stdout, "the build breaks here") {
		t.Errorf("ferry logs build:\n%s", res.stdout)
	}
	checkCountedLines(t, res.stdout, 3000)

	// The stream breaks every 128 KiB (a message holds up to 1,000 lines, about 80 KiB here):
	// ferry logs -f reconnects after the last line it got and shows every line once.
	proxy, proxyURL := startCuttingProxy(t, s.srv.URL, 128<<10)
	res = s.ferryEnv(t, append(s.env[:len(s.env):len(s.env)], "FERRY_URL="+proxyURL, "FERRY_TOKEN="+s.token), 1, "", "logs", "build", itoa(id), "-f")
	if !strings.HasPrefix(res.stderr, "ferry: build "+itoa(id)+" failed: ") {
		t.Errorf("ferry logs build -f through the proxy: %q, want the build's failure", res.stderr)
	}
	checkCountedLines(t, res.stdout, 3000)
	if proxy.cutCount() < 2 {
		t.Errorf("the proxy cut %d connections; the log of 3,000 lines should have needed more", proxy.cutCount())
	}
	t.Logf("the log stream was cut %d times", proxy.cutCount())
	var deployments []store.Deployment
	if err := json.Unmarshal([]byte(s.ferry(t, 0, "", "deployments", "orders", "--json", "--status", "success", "--limit", "1").stdout), &deployments); err != nil || len(deployments) != 1 || deployments[0].Version != kept {
		t.Fatalf("ferry deployments --json --status success --limit 1: %v %+v", err, deployments)
	}
	res = s.ferry(t, 0, "", "logs", "deployment", itoa(deployments[0].ID), "--host", "host-2")
	if !strings.Contains(res.stdout, kept) || strings.Contains(res.stdout, "host-1") {
		t.Errorf("ferry logs deployment --host host-2:\n%s", res.stdout)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// TestStoredTokenStaysWithItsServer is the attack on the stored login: FERRY_URL pointing
// elsewhere (a typo, or a variable a job inherits) must not receive the stored token.
func TestStoredTokenStaysWithItsServer(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Get("Authorization"))
		mu.Unlock()
		w.Write([]byte(`[]`))
	}))
	defer other.Close()
	config := filepath.Join(t.TempDir(), "config")
	if err := os.MkdirAll(filepath.Join(config, "ferry"), 0o700); err != nil {
		t.Fatal(err)
	}
	stored := `{"url": "https://ferry.example.com", "token": "ferry_the-stored-secret-token-000000"}`
	if err := os.WriteFile(filepath.Join(config, "ferry", "config.json"), []byte(stored), 0o600); err != nil {
		t.Fatal(err)
	}
	res := runFerry(t, ferryEnv("XDG_CONFIG_HOME="+config, "FERRY_URL="+other.URL), "", "projects")
	if res.code != 1 || !strings.Contains(res.stderr, "not logged in to "+other.URL) {
		t.Errorf("FERRY_URL of another server without FERRY_TOKEN: exit %d, %q", res.code, res.stderr)
	}
	res = runFerry(t, ferryEnv("XDG_CONFIG_HOME="+config, "FERRY_URL="+other.URL, "FERRY_TOKEN=ferry_given-for-this-one-0000000000"), "", "projects")
	if res.code != 0 {
		t.Errorf("with FERRY_TOKEN: exit %d, %q", res.code, res.stderr)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, auth := range seen {
		if strings.Contains(auth, "the-stored-secret") {
			t.Errorf("the stored token was sent to %s", other.URL)
		}
	}
	if len(seen) != 1 || seen[0] != "Bearer ferry_given-for-this-one-0000000000" {
		t.Errorf("requests to the other server carried %q, want only the given token", seen)
	}
}

// testChangeControl schedules a deployment for later and cancels it, then has one that needs
// approval refused to its requester and approved by someone else, all with the command line.
func testChangeControl(t *testing.T, s *cliSetup, kept string) {
	s.ferry(t, 2, "", "deploy", "orders", "staging", kept, "--at", "tonight")
	at := time.Now().Add(2 * time.Hour).UTC().Truncate(time.Second)
	res := s.ferry(t, 0, "", "deploy", "orders", "staging", kept, "--at", at.Format(time.RFC3339))
	m := regexp.MustCompile(`^deployment (\d+) scheduled for `).FindStringSubmatch(res.stdout)
	if m == nil {
		t.Fatalf("ferry deploy --at: %q, want it scheduled", res.stdout)
	}
	s.ferry(t, 0, "", "cancel", "deployment", m[1])

	api := newClient(t, s.srv.URL, s.token)
	api.api(http.StatusOK, "PATCH", "/api/v1/projects/orders/environments/staging", map[string]any{"approvals_required": 1}, nil)
	if res := runFerry(t, s.in.env, "", "user", "add", "bob", "--admin"); res.code != 0 {
		t.Fatalf("ferry user add bob: exit %d: %s", res.code, res.stderr)
	}
	bob := runFerry(t, s.in.env, "", "token", "add", "bob")
	asBob := append(s.env[:len(s.env):len(s.env)], "FERRY_TOKEN="+strings.TrimSpace(bob.stdout))

	res = s.ferry(t, 0, "", "deploy", "orders", "staging", kept)
	m = regexp.MustCompile(`^deployment (\d+) awaits 1 approval\(s\) until [^(]+ \(in 2[34] h \d\d min\) \(ferry approve (\d+)\)`).FindStringSubmatch(res.stdout)
	if m == nil || m[1] != m[2] {
		t.Fatalf("ferry deploy into an environment that needs approval: %q", res.stdout)
	}
	id := m[1]
	res = s.ferry(t, 1, "", "approve", id)
	if !strings.Contains(res.stderr, "someone else must approve") {
		t.Errorf("the requester approving: %q, want the four-eyes refusal", res.stderr)
	}
	res = s.ferryEnv(t, asBob, 0, "", "approvals")
	if !regexp.MustCompile(`(?m)^` + id + `\s+orders\s+staging\s+` + regexp.QuoteMeta(kept) + `\s+admin\s+0 of 1\s`).MatchString(res.stdout) {
		t.Errorf("ferry approvals as bob:\n%s", res.stdout)
	}
	res = s.ferryEnv(t, asBob, 0, "", "approve", id, "--comment", "looks right")
	// Approved, it is queued, and an idle worker may have taken it already.
	if !regexp.MustCompile(`^deployment ` + id + `: approved; now (queued|running|success) `).MatchString(res.stdout) {
		t.Errorf("bob approving: %q, want it approved and on its way", res.stdout)
	}
	res = s.ferryEnv(t, asBob, 1, "", "reject", id)
	if !strings.Contains(res.stderr, "already") && !strings.Contains(res.stderr, "no longer awaits approval") && !strings.Contains(res.stderr, "does not await approval") {
		t.Errorf("deciding twice: %q, want it refused as already decided", res.stderr)
	}
	var d store.Deployment
	api.api(http.StatusOK, "GET", "/api/v1/deployments/"+id, nil, &d)
	if len(d.Approvals) != 1 || d.Approvals[0].User != "bob" || d.Approvals[0].Comment != "looks right" {
		t.Errorf("approvals on deployment %s: %+v", id, d.Approvals)
	}
	runFerry(t, s.env, "", "logs", "deployment", id, "-f") // let it end before the hosts stop
}
