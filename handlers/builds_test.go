package handlers_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"ferry/build"
	"ferry/build/gitlabtest"
	"ferry/handlers"
	"ferry/store"
	"ferry/store/storetest"
)

// buildPermRoutes adds the permission rows of these routes (see permRouteParts).
func buildPermRoutes() {
	addPermRoutes(map[string][5]int{
		// Without a body the webhook is refused as malformed, whoever sends it.
		"POST /hooks/gitlab": {400, 400, 400, 400, 400},
		// The permission test's server has no GitLab connection: the admin is told so.
		"POST /api/v1/projects/:project/gitlab-hook": {401, 404, 403, 403, 400},
		"GET /api/v1/projects/:project/events":       {401, 404, 200, 200, 200},
		"GET /api/v1/projects/:project/builds":       {401, 404, 200, 200, 200},
		"POST /api/v1/projects/:project/builds":      {401, 404, 201, 201, 201},
		"GET /api/v1/builds/:build":                  {401, 404, 200, 200, 200},
		"POST /api/v1/builds/:build/cancel":          {401, 404, 200, 200, 200},
		"GET /api/v1/builds/:build/log":              {401, 404, 200, 200, 200},
		"GET /api/v1/projects/:project/versions":     {401, 404, 200, 200, 200},
		"GET /api/v1/versions/:version/artifact":     {401, 404, 200, 200, 200},
	}, map[string]string{
		"POST /api/v1/projects/:project/builds": `{"sha":"` + strings.Repeat("5e", 20) + `"}`,
	}, buildFixture)
}

// buildFixture adds a running build and a version with its artifact file to the fixture.
func buildFixture(t *testing.T, db *store.DB, fx *permFixture) {
	ctx := context.Background()
	p, err := db.GetProject(ctx, fx.project)
	must(t, err)
	owner := storetest.Name("fixture")
	done := claimNew(t, db, p.ID, owner, strings.Repeat("2b", 20))
	artifact := filepath.Join(t.TempDir(), "a.tar.gz")
	must(t, os.WriteFile(artifact, []byte("artifact"), 0o644))
	sum := sha256.Sum256([]byte("artifact"))
	b, err := db.FinishBuild(ctx, done.ID, owner, store.BuildResult{Status: store.BuildSuccess, Version: &store.NewVersion{
		Name: storetest.Name("v"), SHA: done.SHA, Ref: "main", SHA256: hex.EncodeToString(sum[:]), Size: 8, Path: artifact,
	}})
	must(t, err)
	// Running, so that other fixtures claiming pending builds leave it alone.
	running := claimNew(t, db, p.ID, owner, strings.Repeat("1a", 20))
	fx.params["build"] = strconv.FormatInt(running.ID, 10)
	fx.params["version"] = strconv.FormatInt(*b.VersionID, 10)
}

// claimNew queues a build of sha and claims it as owner, claiming (and leaving) older
// pending builds of other fixtures on the way.
func claimNew(t *testing.T, db *store.DB, projectID int64, owner, sha string) *store.Build {
	ctx := context.Background()
	nb, err := db.CreateBuild(ctx, store.NewBuild{ProjectID: projectID, Ref: "main", Branch: "main", SHA: sha})
	must(t, err)
	for {
		b, err := db.ClaimBuild(ctx, owner, time.Hour)
		must(t, err)
		if b == nil {
			t.Fatalf("fixture build %d was not claimable", nb.ID)
		}
		if b.ID == nb.ID {
			return b
		}
	}
}

// buildEnv is ferry's web side and a running build worker on a real git repository, with a
// fake GitLab.
type buildEnv struct {
	t      testing.TB
	db     *store.DB
	h      http.Handler
	admin  *client
	repo   string
	gitlab *gitlabtest.Server
	p      *store.Project
}

func newBuildEnv(t testing.TB, db *store.DB) *buildEnv {
	e := &buildEnv{t: t, db: db, gitlab: gitlabtest.New(t, "api-token"), repo: filepath.Join(t.TempDir(), "origin")}
	e.gitlab.AddProject("group/app")
	e.git("init", "--quiet", "--initial-branch=main", e.repo)
	e.p = &store.Project{Name: "app", GitLabPath: "group/app", CloneURL: e.repo, Trigger: store.DefaultTrigger(), KeepVersions: 20, WebhookSecret: "hook-secret"}
	must(t, db.CreateProject(context.Background(), e.p))
	w := build.NewWorker(build.WorkerConfig{
		DB: db, DataDir: t.TempDir(), Owner: "test", Workers: 2, LeaseTTL: 3 * time.Second, PollInterval: time.Second,
		BaseURL: testBaseURL, GitLab: build.GitLabConfig{BaseURL: e.gitlab.URL, Token: "api-token", Backoff: 10 * time.Millisecond},
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	e.h = handlers.New(handlers.Config{DB: db, BaseURL: testBaseURL, GitLab: build.NewFrontend(w)}).Handler()
	e.admin = tokenClient(t, e.h, db, mustUser(t, db, "boss", true))
	return e
}

func (e *buildEnv) git(args ...string) string {
	e.t.Helper()
	cmd := exec.Command("git", args...)
	if args[0] != "init" {
		cmd.Dir = e.repo
	}
	cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=Ada", "GIT_AUTHOR_EMAIL=ada@example.com", "GIT_COMMITTER_NAME=Ada", "GIT_COMMITTER_EMAIL=ada@example.com")
	out, err := cmd.CombinedOutput()
	if err != nil {
		e.t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

func (e *buildEnv) commit(msg, appText string) string {
	e.t.Helper()
	files := map[string]string{
		".ferry.yml": "build:\n  script:\n    - mkdir -p dist && cp app.txt dist/\n    - echo \"built $FERRY_VERSION\"\n  artifact: dist\n",
		"app.txt":    appText,
	}
	for name, content := range files {
		must(e.t, os.WriteFile(filepath.Join(e.repo, name), []byte(content), 0o644))
	}
	e.git("add", "-A")
	e.git("commit", "--quiet", "-m", msg)
	return e.git("rev-parse", "HEAD")
}

// pushBody is GitLab's own push payload (testdata/gitlab/push.json) made to name our
// project, branch, head commit and message.
func pushBody(t testing.TB, project, branch, sha, message string) string {
	t.Helper()
	raw, err := os.ReadFile("../testdata/gitlab/push.json")
	must(t, err)
	var m map[string]any
	must(t, json.Unmarshal(raw, &m))
	m["ref"], m["after"], m["checkout_sha"] = "refs/heads/"+branch, sha, sha
	m["project"].(map[string]any)["path_with_namespace"] = project
	commits := m["commits"].([]any)
	head := commits[len(commits)-1].(map[string]any)
	head["id"], head["message"], head["title"] = sha, message, message
	out, err := json.Marshal(m)
	must(t, err)
	return string(out)
}

// hook sends a webhook as GitLab would.
func (e *buildEnv) hook(event, token, key, body string) response {
	e.t.Helper()
	req := httptest.NewRequest("POST", "/hooks/gitlab", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Gitlab-Event", event)
	if token != "" {
		req.Header.Set("X-Gitlab-Token", token)
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	return (&client{t: e.t, h: e.h}).send(req)
}

type hookAnswer struct {
	Event     int64
	Decision  string
	Reason    string
	Build     int64
	Duplicate bool
}

func (e *buildEnv) waitBuild(id int64) store.Build {
	e.t.Helper()
	var b store.Build
	storetest.WaitFor(e.t, time.Minute, fmt.Sprintf("build %d to end", id), func() bool {
		e.admin.must(http.StatusOK, "GET", fmt.Sprintf("/api/v1/builds/%d", id), "").decode(e.t, &b)
		return b.Status != store.BuildPending && b.Status != store.BuildRunning
	})
	return b
}

func TestPushWebhookBuildsVersionAndTags(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newBuildEnv(t, db)
		first := e.commit("ship it [DevOps]", "one")
		e.commit("later work", "two") // the branch moves on before the build runs

		var ans hookAnswer
		r := e.hook("Push Hook", "hook-secret", "delivery-1", pushBody(t, "group/app", "main", first, "ship it [DevOps]"))
		if r.status != http.StatusOK {
			t.Fatalf("webhook: %d %s", r.status, r.body)
		}
		r.decode(t, &ans)
		if ans.Decision != "build" || ans.Build == 0 || ans.Event == 0 {
			t.Fatalf("webhook answer %+v, want a build", ans)
		}
		var again hookAnswer
		e.hook("Push Hook", "hook-secret", "delivery-1", pushBody(t, "group/app", "main", first, "ship it [DevOps]")).decode(t, &again)
		if again.Build != ans.Build || again.Event != ans.Event || !again.Duplicate {
			t.Errorf("redelivery answered %+v, want the first answer %+v marked duplicate", again, ans)
		}

		b := e.waitBuild(ans.Build)
		if b.Status != store.BuildSuccess || b.SHA != first || b.Ref != "main" || b.Version == "" {
			t.Fatalf("build = %+v", b)
		}
		var builds []store.Build
		e.admin.must(http.StatusOK, "GET", "/api/v1/projects/app/builds", "").decode(t, &builds)
		if len(builds) != 1 {
			t.Errorf("%d builds after a delivery and its redelivery, want 1", len(builds))
		}
		var versions []store.Version
		e.admin.must(http.StatusOK, "GET", "/api/v1/projects/app/versions", "").decode(t, &versions)
		if len(versions) != 1 || versions[0].Name != b.Version || versions[0].BuildID != b.ID {
			t.Fatalf("versions = %+v", versions)
		}
		v := versions[0]
		art := e.admin.must(http.StatusOK, "GET", fmt.Sprintf("/api/v1/versions/%d/artifact", v.ID), "")
		sum := sha256.Sum256([]byte(art.body))
		if hex.EncodeToString(sum[:]) != v.SHA256 || int64(len(art.body)) != v.Size || art.header.Get("X-Checksum-Sha256") != v.SHA256 {
			t.Errorf("downloaded artifact: %d bytes, sha256 %x; version says %d bytes, %s", len(art.body), sum, v.Size, v.SHA256)
		}

		var log struct {
			Lines  []store.LogLine
			Status string
			Next   int64
		}
		// GitLab is told beside the build, after its result: its last call (the tag) ends the log.
		storetest.Eventually(10*time.Second, func() bool {
			e.admin.must(http.StatusOK, "GET", fmt.Sprintf("/api/v1/builds/%d/log", b.ID), "").decode(t, &log)
			n := len(log.Lines)
			return n > 0 && strings.Contains(log.Lines[n-1].Text, "GitLab: tagged commit")
		})
		if log.Status != "success" || len(log.Lines) == 0 || log.Next != log.Lines[len(log.Lines)-1].Seq {
			t.Fatalf("log answer: status %s, %d lines, next %d", log.Status, len(log.Lines), log.Next)
		}
		var rest struct{ Lines []store.LogLine }
		e.admin.must(http.StatusOK, "GET", fmt.Sprintf("/api/v1/builds/%d/log?after=%d", b.ID, log.Lines[0].Seq), "").decode(t, &rest)
		if len(rest.Lines) != len(log.Lines)-1 {
			t.Errorf("log after the first line: %d lines, want %d", len(rest.Lines), len(log.Lines)-1)
		}

		// GitLab is told beside the build, just after it ends.
		storetest.Eventually(10*time.Second, func() bool { return len(e.gitlab.Tags("group/app")) > 0 })
		var states []string
		for _, s := range e.gitlab.Statuses("group/app") {
			states = append(states, s.State)
		}
		if strings.Join(states, ",") != "running,success" {
			t.Errorf("GitLab commit statuses %v, want running,success", states)
		}
		tags := e.gitlab.Tags("group/app")
		if len(tags) != 1 || tags[0].SHA != first {
			t.Fatalf("GitLab tags %+v", tags)
		}
		// GitLab then sends the push of ferry's own tag: it must not build again.
		tagBody := strings.NewReplacer(`"refs/heads/main"`, `"refs/tags/`+tags[0].Name+`"`).Replace(pushBody(t, "group/app", "main", first, "x"))
		var tagAns hookAnswer
		e.hook("Tag Push Hook", "hook-secret", "", strings.Replace(tagBody, `"object_kind":"push"`, `"object_kind":"tag_push"`, 1)).decode(t, &tagAns)
		if tagAns.Decision != "skip" || !strings.Contains(tagAns.Reason, "made by ferry") {
			t.Errorf("ferry's own tag: %+v, want skip", tagAns)
		}
	})
}

func TestWebhookRefusalsAndSkips(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newBuildEnv(t, db)
		sha := e.commit("nothing special", "one")
		body := pushBody(t, "group/app", "main", sha, "nothing special")

		var skip hookAnswer
		e.hook("Push Hook", "hook-secret", "", body).decode(t, &skip)
		if skip.Decision != "skip" || !strings.Contains(skip.Reason, "devops") || skip.Build != 0 {
			t.Errorf("push without the keyword: %+v, want skip naming the keyword", skip)
		}
		for _, c := range []struct {
			name, event, token, body string
			status                   int
			want                     string
		}{
			{"wrong token", "Push Hook", "guess", body, 401, "does not match"},
			{"no token", "Push Hook", "", body, 401, "X-Gitlab-Token"},
			{"unknown project", "Push Hook", "hook-secret", pushBody(t, "other/repo", "main", sha, "devops"), 401, "does not match"},
			{"malformed JSON", "Push Hook", "hook-secret", `{"project": `, 400, "malformed JSON"},
			{"no project", "Push Hook", "hook-secret", `{"ref": "refs/heads/main"}`, 400, "path_with_namespace"},
			{"huge body", "Push Hook", "hook-secret", strings.Repeat(" ", 20<<20), 413, "too large"},
		} {
			r := e.hook(c.event, c.token, "", c.body)
			if r.status != c.status || !strings.Contains(r.body, c.want) {
				t.Errorf("%s: %d %.200s, want %d with %q", c.name, r.status, r.body, c.status, c.want)
			}
		}
		var other hookAnswer
		r := e.hook("Merge Request Hook", "hook-secret", "", body)
		r.decode(t, &other)
		if r.status != 200 || other.Decision != "skip" || !strings.Contains(other.Reason, "Merge Request Hook") {
			t.Errorf("merge request event: %d %+v, want 200 skip", r.status, other)
		}
		evil := e.hook("Push Hook", "hook-secret", "", pushBody(t, "group/app", "$(id);rm -rf ~", sha, "devops"))
		var evilAns hookAnswer
		evil.decode(t, &evilAns)

		var events []store.Event
		e.admin.must(http.StatusOK, "GET", "/api/v1/projects/app/events", "").decode(t, &events)
		if len(events) != 2 || events[1].Decision != "skip" || events[1].Reason != skip.Reason || events[0].Ref != "refs/heads/$(id);rm -rf ~" {
			t.Errorf("events = %+v, want the skipped push and the odd branch only", events)
		}
		if evilAns.Build != 0 {
			b := e.waitBuild(evilAns.Build)
			if b.Status != store.BuildSuccess || b.Branch != "$(id);rm -rf ~" {
				t.Errorf("build of branch $(id);rm -rf ~ = %s %q", b.Status, b.Error)
			}
		}
	})
}

func TestManualBuildAndCancel(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newBuildEnv(t, db)
		e.commit("one", "one")
		head := e.commit("two", "two")
		var b store.Build
		e.admin.must(http.StatusCreated, "POST", "/api/v1/projects/app/builds", `{"ref":"main"}`).decode(t, &b)
		if b.SHA != head || b.Branch != "main" || b.Status != "pending" {
			t.Errorf("manual build of main = %+v, want pending on %s", b, head)
		}
		for body, want := range map[string]string{
			`{}`:                     "give ref",
			`{"ref":"-x"}`:           "not a branch or tag",
			`{"ref":"nosuch"}`:       "no branch or tag",
			`{"sha":"abc"}`:          "full commit id",
			`{"ref":"a b","sha":""}`: "not a branch or tag",
		} {
			r := e.admin.do("POST", "/api/v1/projects/app/builds", body)
			if r.status/100 != 4 || !strings.Contains(r.body, want) {
				t.Errorf("POST builds %s: %d %s, want 4xx with %q", body, r.status, r.body, want)
			}
		}
		if got := e.waitBuild(b.ID); got.Status != store.BuildSuccess {
			t.Errorf("manual build ended %s %q", got.Status, got.Error)
		}
		var queued store.Build
		e.admin.must(http.StatusCreated, "POST", "/api/v1/projects/app/builds", `{"sha":"`+strings.Repeat("0f", 20)+`"}`).decode(t, &queued)
		r := e.admin.do("POST", fmt.Sprintf("/api/v1/builds/%d/cancel", queued.ID), "")
		if r.status != 200 && r.status != 409 {
			t.Errorf("cancel: %d %s", r.status, r.body)
		}
		if got := e.waitBuild(queued.ID); got.Status != store.BuildCanceled && got.Status != store.BuildFailed {
			t.Errorf("canceled build of a missing commit ended %s", got.Status)
		}
		r = e.admin.do("POST", fmt.Sprintf("/api/v1/builds/%d/cancel", b.ID), "")
		if r.status != http.StatusConflict {
			t.Errorf("cancel of an ended build: %d %s, want 409", r.status, r.body)
		}
	})
}

func TestRegisterGitLabHook(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newBuildEnv(t, db)
		e.admin.must(http.StatusOK, "POST", "/api/v1/projects/app/gitlab-hook", "")
		e.admin.must(http.StatusOK, "POST", "/api/v1/projects/app/gitlab-hook", "") // updates, does not add
		hooks := e.gitlab.Hooks("group/app")
		if len(hooks) != 1 || hooks[0].URL != testBaseURL+"/hooks/gitlab" || hooks[0].Token != "hook-secret" || !hooks[0].PushEvents || !hooks[0].TagPushEvents {
			t.Errorf("GitLab hooks = %+v", hooks)
		}
	})
}
