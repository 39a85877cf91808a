package handlers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"ferry/handlers"
	"ferry/store"
	"ferry/store/storetest"
)

// streamPermRoutes adds the permission rows of these routes (see permRouteParts).
func streamPermRoutes() {
	addPermRoutes(map[string][5]int{
		// Allowed viewers get 426 here: the permission test does not upgrade to WebSocket.
		"GET /api/v1/builds/:build/log/stream":           {401, 404, 426, 426, 426},
		"GET /api/v1/deployments/:deployment/log/stream": {401, 404, 426, 426, 426},
	}, nil, func(t *testing.T, db *store.DB, fx *permFixture) {
		if fx.params["build"] != "" && fx.params["deployment"] != "" {
			return
		}
		p, err := db.GetProject(context.Background(), fx.project)
		must(t, err)
		// Use the build and version other fixtures made; claiming builds of our own would
		// take theirs from the queue.
		j := &streamJobs{db: db, project: p}
		j.version, _ = strconv.ParseInt(fx.params["version"], 10, 64)
		if fx.params["build"] == "" || j.version == 0 {
			j = newStreamJobs(t, db, p)
			if fx.params["build"] == "" {
				fx.params["build"] = fmt.Sprint(j.build.ID)
			}
		}
		if fx.params["deployment"] == "" {
			fx.params["deployment"] = fmt.Sprint(j.deployment(t, "unprot").ID)
		}
	})
}

// streamJobs is a running build, and what it takes to start a deployment of its project.
type streamJobs struct {
	db      *store.DB
	project *store.Project
	build   *store.Build
	version int64
}

// newStreamJobs makes a build of p that succeeded (so there is a version to deploy) and a
// second build that runs now.
func newStreamJobs(t testing.TB, db *store.DB, p *store.Project) *streamJobs {
	t.Helper()
	ctx := context.Background()
	nb := store.NewBuild{ProjectID: p.ID, Ref: "main", Branch: "main", SHA: strings.Repeat("b", 40), TriggeredBy: "test"}
	first, err := db.CreateBuild(ctx, nb)
	must(t, err)
	mustClaim(t, db, first.ID)
	_, err = db.FinishBuild(ctx, first.ID, "streams-test", store.BuildResult{Status: store.BuildSuccess, Version: &store.NewVersion{
		Name: storetest.Name("v"), SHA: nb.SHA, Ref: "main", SHA256: strings.Repeat("5", 64), Size: 1, Path: "/nowhere.tar.gz"}})
	must(t, err)
	done, err := db.GetBuild(ctx, first.ID)
	must(t, err)
	b, err := db.CreateBuild(ctx, nb)
	must(t, err)
	mustClaim(t, db, b.ID)
	return &streamJobs{db: db, project: p, build: b, version: *done.VersionID}
}

// mustClaim claims the next build, which must be id.
func mustClaim(t testing.TB, db *store.DB, id int64) {
	t.Helper()
	b, err := db.ClaimBuild(context.Background(), "streams-test", time.Hour)
	must(t, err)
	if b == nil || b.ID != id {
		t.Fatalf("claimed build %+v, want %d (another test left a pending build)", b, id)
	}
}

// deployment queues a deployment to env and, when it is the only one, starts it.
func (j *streamJobs) deployment(t testing.TB, env string) *store.Deployment {
	t.Helper()
	ctx := context.Background()
	e, err := j.db.GetEnvironment(ctx, j.project.ID, env)
	must(t, err)
	d, err := j.db.CreateDeployment(ctx, store.NewDeployment{ProjectID: j.project.ID, EnvironmentID: e.ID, VersionID: j.version, TriggeredBy: "test"})
	must(t, err)
	return d
}

// streamServer is a real HTTP server on db with an admin, a member and a stranger.
type streamServer struct {
	srv                     *httptest.Server
	db                      *store.DB
	admin, member, stranger string // API tokens
	jobs                    *streamJobs
}

func newStreamServer(t testing.TB, db *store.DB) *streamServer {
	t.Helper()
	ctx := context.Background()
	srv := httptest.NewServer(handlers.New(handlers.Config{DB: db, BaseURL: testBaseURL}).Handler())
	t.Cleanup(srv.Close)
	s := &streamServer{srv: srv, db: db}
	token := func(u *store.User) string {
		_, secret, err := db.CreateToken(ctx, u.ID, "t")
		must(t, err)
		return secret
	}
	s.admin = token(mustUser(t, db, "boss", true))
	mem := mustUser(t, db, "mem", false)
	s.member = token(mem)
	s.stranger = token(mustUser(t, db, "stranger", false))
	p := &store.Project{Name: "orders", GitLabPath: "g/orders", CloneURL: "https://x/y.git", Trigger: store.DefaultTrigger()}
	must(t, db.CreateProject(ctx, p))
	for _, h := range []string{"web1", "web2"} {
		must(t, db.CreateHost(ctx, &store.Host{Name: h, Address: "10.0.0.1", User: "deploy"}))
	}
	must(t, db.CreateEnvironment(ctx, &store.Environment{ProjectID: p.ID, Name: "staging", Hosts: []string{"web1", "web2"}}))
	_, err := db.SetMember(ctx, p.ID, mem.Name, false)
	must(t, err)
	s.jobs = newStreamJobs(t, db, p)
	return s
}

// dial opens a stream at path as the holder of token (none when ""), with origin when not "".
func (s *streamServer) dial(t testing.TB, path, token, origin string) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	h := http.Header{}
	if token != "" {
		h.Set("Authorization", "Bearer "+token)
	}
	if origin != "" {
		h.Set("Origin", origin)
	}
	conn, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(s.srv.URL, "http")+path, h)
	if conn != nil {
		t.Cleanup(func() { conn.Close() })
	}
	return conn, resp, err
}

func (s *streamServer) mustDial(t testing.TB, path, token string) *websocket.Conn {
	t.Helper()
	conn, resp, err := s.dial(t, path, token, "")
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial %s: %v (status %d)", path, err, status)
	}
	return conn
}

// streamMsg is a message of a log stream as a browser reads it.
type streamMsg struct {
	Type    string
	Lines   []store.LogLine
	Status  string
	Reason  string
	LastSeq *int64 `json:"last_seq"`
}

func readMsg(t testing.TB, conn *websocket.Conn) streamMsg {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	var m streamMsg
	if err := conn.ReadJSON(&m); err != nil {
		t.Fatalf("read stream message: %v", err)
	}
	return m
}

// readLines reads messages until it has n lines, and returns their texts.
func readLines(t testing.TB, conn *websocket.Conn, n int) []string {
	t.Helper()
	var texts []string
	for len(texts) < n {
		m := readMsg(t, conn)
		if m.Type != "lines" {
			t.Fatalf("got a %q message (%+v) after %d of %d lines", m.Type, m, len(texts), n)
		}
		for _, l := range m.Lines {
			texts = append(texts, l.Text)
		}
	}
	if len(texts) != n {
		t.Fatalf("got %d lines, want %d: %q", len(texts), n, texts)
	}
	return texts
}

func writeLines(t testing.TB, db *store.DB, kind string, id int64, host string, texts ...string) {
	t.Helper()
	w, err := db.OpenLog(context.Background(), kind, id)
	must(t, err)
	for _, text := range texts {
		w.Write("stdout", host, text)
	}
	must(t, w.Close())
}

func TestBuildLogStream(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		s := newStreamServer(t, db)
		b := s.jobs.build
		path := fmt.Sprintf("/api/v1/builds/%d/log/stream", b.ID)
		writeLines(t, db, store.JobBuild, b.ID, "", "one", "two", "three")

		conn := s.mustDial(t, path, s.member)
		if got := readLines(t, conn, 3); strings.Join(got, ",") != "one,two,three" {
			t.Errorf("stored lines %q", got)
		}
		writeLines(t, db, store.JobBuild, b.ID, "", "four", "five")
		if got := readLines(t, conn, 2); strings.Join(got, ",") != "four,five" {
			t.Errorf("live lines %q", got)
		}
		_, err := db.FinishBuild(context.Background(), b.ID, "streams-test", store.BuildResult{Status: store.BuildFailed, Error: "exit 1"})
		must(t, err)
		if m := readMsg(t, conn); m.Type != "end" || m.Status != "failed" {
			t.Errorf("after the build ended: %+v, want end with status failed", m)
		}
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, _, err := conn.ReadMessage(); !websocket.IsCloseError(err, websocket.CloseNormalClosure) {
			t.Errorf("after end: %v, want a normal close", err)
		}

		// A viewer reconnecting after seq 3 gets the rest and the end.
		conn = s.mustDial(t, path+"?after=3", s.admin)
		if got := readLines(t, conn, 2); strings.Join(got, ",") != "four,five" {
			t.Errorf("resumed lines %q", got)
		}
		if m := readMsg(t, conn); m.Type != "end" || m.Status != "failed" {
			t.Errorf("resumed stream ends with %+v", m)
		}
	})
}

func TestDeploymentLogStreamOfOneHost(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		s := newStreamServer(t, db)
		ctx := context.Background()
		d := s.jobs.deployment(t, "staging")
		running, err := db.ClaimDeployment(ctx, "streams-test", time.Hour)
		must(t, err)
		if running == nil || running.ID != d.ID {
			t.Fatalf("claimed deployment %+v, want %d", running, d.ID)
		}
		writeLines(t, db, store.JobDeployment, d.ID, "web1", "w1 a")
		writeLines(t, db, store.JobDeployment, d.ID, "web2", "w2 a")
		conn := s.mustDial(t, fmt.Sprintf("/api/v1/deployments/%d/log/stream?host=web2", d.ID), s.member)
		writeLines(t, db, store.JobDeployment, d.ID, "web1", "w1 b")
		writeLines(t, db, store.JobDeployment, d.ID, "web2", "w2 b")
		if got := readLines(t, conn, 2); strings.Join(got, ",") != "w2 a,w2 b" {
			t.Errorf("web2's lines %q", got)
		}
		_, err = db.FinishDeployment(ctx, d.ID, "streams-test", store.DeploymentSuccess, "")
		must(t, err)
		if m := readMsg(t, conn); m.Type != "end" || m.Status != "success" {
			t.Errorf("after the deployment ended: %+v", m)
		}
	})
}

func TestLogStreamRefusals(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		s := newStreamServer(t, db)
		path := fmt.Sprintf("/api/v1/builds/%d/log/stream", s.jobs.build.ID)
		for _, tc := range []struct {
			name, path, token, origin string
			status                    int
			says                      string
		}{
			{"no token", path, "", "", 401, "log in first"},
			{"not a member", path, s.stranger, "", 404, "not found"},
			{"no such build", "/api/v1/builds/999999/log/stream", s.admin, "", 404, "build 999999 not found"},
			{"another site's page", path, s.member, "https://evil.example.com", 403, "may not open this stream"},
			{"bad after", path + "?after=x", s.member, "", 400, "after="},
		} {
			t.Run(tc.name, func(t *testing.T) {
				_, resp, err := s.dial(t, tc.path, tc.token, tc.origin)
				if err == nil || resp == nil || resp.StatusCode != tc.status {
					t.Fatalf("dial: %v, response %+v; want status %d", err, resp, tc.status)
				}
				var body struct{ Error string }
				json.NewDecoder(resp.Body).Decode(&body)
				if !strings.Contains(body.Error, tc.says) {
					t.Errorf("error %q does not say %q", body.Error, tc.says)
				}
			})
		}
		// ferry's own pages may open it, at its base URL or the address they were served from.
		for _, origin := range []string{testBaseURL, s.srv.URL} {
			if _, resp, err := s.dial(t, path, s.member, origin); err != nil {
				t.Errorf("origin %s refused: %v %+v", origin, err, resp)
			}
		}
	})
}
