package deploy_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"ferry/deploy"
	"ferry/deploy/sshtest"
	"ferry/handlers"
	"ferry/store"
	"ferry/store/storetest"
)

// testPipeline is the .ferry.yml of the test service; health is its health section.
func testPipeline(strategy, health string) string {
	if health == "" {
		health = `{ http: "http://127.0.0.1:8080/health", timeout: 5s }`
	}
	return `build:
  script: [ "true" ]
  artifact: app
deploy:
  path: ` + sshtest.DefaultDeployPath + `
  keep_releases: 3
  stop: { pid_file: run/app.pid, grace: 2s }
  start: bin/app
  health: ` + health + `
  strategy: ` + strategy + `
`
}

// deployFixture is a project with an environment "staging" on real sshd hosts, an API served
// by the real handlers, and a deploy worker on a real store.
type deployFixture struct {
	t       *testing.T
	db      *store.DB
	cluster *sshtest.Cluster
	project *store.Project
	env     *store.Environment
	api     *apiClient // an administrator
	worker  *deploy.Worker
	stop    func() // stops the worker and waits for it
	srv     http.Handler
}

// workerOptions change the worker a fixture starts.
type workerOptions struct {
	maxAttempts int
	unpinned    string // a host added without a pinned host key
	// maxLogBytes and maxHostLogBytes bound the host output a deployment keeps.
	maxLogBytes, maxHostLogBytes int64
	// protected makes the environment protected.
	protected bool
	// noWorker starts no worker in this process: separate processes run them.
	noWorker bool
}

func newDeployFixture(t *testing.T, db *store.DB, hosts int, opts workerOptions) *deployFixture {
	t.Helper()
	ctx := context.Background()
	f := &deployFixture{t: t, db: db, cluster: sshtest.Start(t, hosts, sshtest.Options{})}
	f.project = &store.Project{Name: "shop", GitLabPath: "g/shop", CloneURL: "https://gitlab.example.com/g/shop.git", Trigger: store.DefaultTrigger()}
	must(t, db.CreateProject(ctx, f.project))
	var names []string
	for _, h := range f.cluster.Hosts() {
		host := &store.Host{Name: h.Name, Address: h.Addr(), Port: h.Port(), User: "root", PrivateKey: string(f.cluster.ClientKeyPEM), HostKey: h.HostKey()}
		if h.Name == opts.unpinned {
			host.HostKey = ""
		}
		must(t, db.CreateHost(ctx, host))
		names = append(names, h.Name)
	}
	f.env = &store.Environment{ProjectID: f.project.ID, Name: "staging", Hosts: names, Protected: opts.protected}
	must(t, db.CreateEnvironment(ctx, f.env))
	f.startWorker(opts)
	admin := &store.User{Name: "boss", Email: "boss@example.com", Admin: true}
	must(t, db.CreateUser(ctx, admin, "password-boss"))
	f.api = f.client(admin)
	return f
}

// startWorker starts a deploy worker with short leases, and the API that wakes it.
func (f *deployFixture) startWorker(opts workerOptions) {
	if opts.noWorker {
		f.stop = func() {}
		f.srv = handlers.New(handlers.Config{DB: f.db, BaseURL: "https://ferry.example.com"}).Handler()
		return
	}
	logger := slog.New(slog.NewTextHandler(testWriter{f.t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	f.worker = deploy.NewWorker(deploy.WorkerConfig{DB: f.db, Owner: storetest.Name("worker"), Workers: 2,
		// Short enough that takeover tests wait little, long enough that a busy machine (the race
		// detector, sshds and SQLite on two cores) renews in time.
		LeaseTTL: 4 * time.Second, Poll: 100 * time.Millisecond, MaxAttempts: opts.maxAttempts, Logger: logger,
		MaxLogBytes: opts.maxLogBytes, MaxHostLogBytes: opts.maxHostLogBytes})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := f.worker.Run(ctx); err != nil {
			f.t.Errorf("worker: %v", err)
		}
	})
	var once sync.Once
	f.stop = func() { once.Do(func() { cancel(); wg.Wait() }) }
	f.t.Cleanup(f.stop)
	f.srv = handlers.New(handlers.Config{DB: f.db, BaseURL: "https://ferry.example.com", Deployer: f.worker}).Handler()
	if f.api != nil {
		f.api.h = f.srv
	}
}

// testWriter sends the worker's log to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// client returns an API client authenticated as u with a new token.
func (f *deployFixture) client(u *store.User) *apiClient {
	_, secret, err := f.db.CreateToken(context.Background(), u.ID, "test")
	must(f.t, err)
	return &apiClient{t: f.t, h: f.srv, token: secret}
}

// version makes a kept version of the test service the way a build does: a build claimed and
// finished with its artifact and .ferry.yml, and the deployments the trigger asks for.
func (f *deployFixture) version(name string, a artifact, pipeline string, then ...store.NewDeployment) deploy.Release {
	f.t.Helper()
	ctx := context.Background()
	rel := makeRelease(f.t, name, a)
	sha := make([]byte, 20)
	rand.Read(sha)
	b, err := f.db.CreateBuild(ctx, store.NewBuild{ProjectID: f.project.ID, Ref: "main", Branch: "main", SHA: hex.EncodeToString(sha), TriggeredBy: "test"})
	must(f.t, err)
	claimed, err := f.db.ClaimBuild(ctx, "builder", time.Minute)
	must(f.t, err)
	if claimed == nil || claimed.ID != b.ID {
		f.t.Fatalf("claimed build %+v, want build %d", claimed, b.ID)
	}
	_, err = f.db.FinishBuild(ctx, b.ID, "builder", store.BuildResult{Status: store.BuildSuccess, Version: &store.NewVersion{
		Name: name, SHA: b.SHA, Ref: "main", SHA256: rel.SHA256, Size: rel.Size, Path: rel.Artifact, Pipeline: pipeline},
		Deploy: then})
	must(f.t, err)
	return rel
}

// deploy queues a deployment through the API and returns its id.
func (f *deployFixture) deploy(body string) int64 {
	f.t.Helper()
	var d store.Deployment
	f.api.must(http.StatusCreated, "POST", "/api/v1/projects/shop/deployments", body).decode(&d)
	return d.ID
}

// deployment returns GET /api/v1/deployments/:id.
func (f *deployFixture) deployment(id int64) *store.Deployment {
	f.t.Helper()
	var d store.Deployment
	f.api.must(http.StatusOK, "GET", fmt.Sprintf("/api/v1/deployments/%d", id), "").decode(&d)
	return &d
}

// stored returns the deployment as the store holds it, with what the API does not show.
func (f *deployFixture) stored(id int64) *store.Deployment {
	f.t.Helper()
	d, err := f.db.GetDeployment(context.Background(), id)
	must(f.t, err)
	return d
}

// waitFor polls the deployment until ok says yes, and fails the test after a minute.
func (f *deployFixture) waitFor(id int64, what string, ok func(d *store.Deployment) bool) *store.Deployment {
	f.t.Helper()
	var d *store.Deployment
	if !storetest.Eventually(time.Minute, func() bool { d = f.deployment(id); return ok(d) }) {
		f.t.Fatalf("deployment %d: waited a minute for %s; it is %s (%s): %s", id, what, d.Status, d.Error, hostsText(d))
	}
	return d
}

// waitEnded waits until the deployment ended and fails the test unless it ended as want.
func (f *deployFixture) waitEnded(id int64, want string) *store.Deployment {
	f.t.Helper()
	d := f.waitFor(id, "its end", func(d *store.Deployment) bool {
		return d.Status != store.DeploymentQueued && d.Status != store.DeploymentRunning
	})
	if d.Status != want {
		f.t.Fatalf("deployment %d ended %s (%s), want %s; hosts: %s\nlog:\n%s", id, d.Status, d.Error, want, hostsText(d), f.log(id, ""))
	}
	return d
}

// hostAt waits until the named host of the deployment is in step.
func (f *deployFixture) hostAt(id int64, host, step string) {
	f.t.Helper()
	f.waitFor(id, host+" at "+step, func(d *store.Deployment) bool {
		hs := hostStep(d, host)
		return hs != nil && hs.Step == step && hs.Status == store.HostRunning
	})
}

func hostStep(d *store.Deployment, host string) *store.HostStep {
	for _, h := range d.Hosts {
		if h.Host == host {
			return h
		}
	}
	return nil
}

func hostsText(d *store.Deployment) string {
	var parts []string
	for _, h := range d.Hosts {
		parts = append(parts, fmt.Sprintf("%s %s/%s %q", h.Host, h.Status, h.Step, h.Error))
	}
	return strings.Join(parts, "; ")
}

// log returns the deployment's log through the API as "host stream: text" lines.
func (f *deployFixture) log(id int64, host string) string {
	f.t.Helper()
	var page struct {
		Lines []store.LogLine `json:"lines"`
	}
	path := fmt.Sprintf("/api/v1/deployments/%d/log?after=0", id)
	if host != "" {
		path += "&host=" + host
	}
	f.api.must(http.StatusOK, "GET", path, "").decode(&page)
	var out []string
	for _, l := range page.Lines {
		out = append(out, fmt.Sprintf("%s %s: %s", l.Host, l.Stream, l.Text))
	}
	return strings.Join(out, "\n")
}

// instances returns GET /api/v1/projects/shop/instances by host.
func (f *deployFixture) instances() map[string]store.Instance {
	f.t.Helper()
	var list []store.Instance
	f.api.must(http.StatusOK, "GET", "/api/v1/projects/shop/instances", "").decode(&list)
	out := map[string]store.Instance{}
	for _, in := range list {
		out[in.Host] = in
	}
	return out
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// apiClient calls the API with a bearer token.
type apiClient struct {
	t     *testing.T
	h     http.Handler
	token string
}

type apiResponse struct {
	t      *testing.T
	status int
	body   string
}

func (r apiResponse) decode(dst any) {
	r.t.Helper()
	if err := json.Unmarshal([]byte(r.body), dst); err != nil {
		r.t.Fatalf("decode %q: %v", r.body, err)
	}
}

func (c *apiClient) do(method, path, body string) apiResponse {
	c.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, rd)
	req.Header.Set("Authorization", "Bearer "+c.token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	rec := httptest.NewRecorder()
	c.h.ServeHTTP(rec, req)
	return apiResponse{t: c.t, status: rec.Code, body: rec.Body.String()}
}

func (c *apiClient) must(want int, method, path, body string) apiResponse {
	c.t.Helper()
	r := c.do(method, path, body)
	if r.status != want {
		c.t.Fatalf("%s %s: status %d, want %d: %s", method, path, r.status, want, r.body)
	}
	return r
}
