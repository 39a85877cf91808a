package build

import (
	"context"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"ferry/store"
	"ferry/store/storetest"
)

const cloneToken = "glpat-S3cretCloneToken42"

// gitHTTPServer serves the repository at origin over git's smart HTTP protocol (the real
// `git http-backend`, as CGI) at <URL>/git/origin, to requests with basic auth user:password.
func gitHTTPServer(t *testing.T, origin *testRepo, user, password string) *httptest.Server {
	t.Helper()
	gitPath, err := exec.LookPath("git")
	if err != nil {
		t.Fatalf("these tests need git: %v", err)
	}
	backend := &cgi.Handler{
		Path: gitPath, Args: []string{"http-backend"}, Root: "/git",
		Env: []string{"GIT_PROJECT_ROOT=" + filepath.Dir(origin.Dir), "GIT_HTTP_EXPORT_ALL=1", "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null"},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		if !ok || u != user || p != password {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(w, "who are you?", http.StatusUnauthorized)
			return
		}
		backend.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestMirrorOverAuthenticatedHTTP(t *testing.T) {
	origin := newTestRepo(t)
	first := origin.commit("first", map[string]string{"app.txt": "v1"})
	srv := gitHTTPServer(t, origin, "oauth2", cloneToken)
	url := srv.URL + "/git/origin"
	ctx := context.Background()
	argv := recordGitArgs(t)

	g := &Git{DataDir: t.TempDir()}
	r := Repo{Project: "demo", URL: url, Credentials: "oauth2:" + cloneToken}
	if _, err := g.Mirror(ctx, r); err != nil {
		t.Fatalf("clone over authenticated HTTP: %v", err)
	}
	if _, err := g.Commit(ctx, r, first); err != nil {
		t.Fatal(err)
	}
	second := origin.commit("second", map[string]string{"app.txt": "v2"})
	if cloned, err := g.Mirror(ctx, r); err != nil || cloned {
		t.Fatalf("fetch over authenticated HTTP: cloned %v, %v", cloned, err)
	}
	if sha, _, err := g.ResolveRef(ctx, r, "main"); err != nil || sha != second {
		t.Errorf("ls-remote over authenticated HTTP: %s %v, want %s", sha, err, second)
	}
	assertMirrorHasNoSecret(t, g, "demo")

	// A URL that still carries the token (as projects saved before) is split before git
	// sees it: the token reaches neither git's command line nor the mirror's config.
	legacy := Repo{Project: "legacy", URL: strings.Replace(url, "://", "://oauth2:"+cloneToken+"@", 1)}
	if _, err := g.Mirror(ctx, legacy); err != nil {
		t.Fatalf("clone with the token in the URL: %v", err)
	}
	assertMirrorHasNoSecret(t, g, "legacy")

	// Command lines are readable by every local user (ps); the token was on none of them.
	args, err := os.ReadFile(argv)
	if err != nil || !strings.Contains(string(args), "clone --mirror") {
		t.Fatalf("the git wrapper recorded no clone: %v\n%s", err, args)
	}
	if strings.Contains(string(args), cloneToken) {
		t.Errorf("a git command line holds the token:\n%s", args)
	}
}

// recordGitArgs puts a git on PATH that appends its arguments to a file, whose path it
// returns, and runs the real git.
func recordGitArgs(t *testing.T) string {
	t.Helper()
	real, err := exec.LookPath("git")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	log := filepath.Join(dir, "argv.log")
	script := "#!/bin/sh\necho \"$*\" >> '" + log + "'\nexec '" + real + "' \"$@\"\n"
	if err := os.WriteFile(filepath.Join(dir, "git"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	return log
}

func assertMirrorHasNoSecret(t *testing.T, g *Git, project string) {
	t.Helper()
	err := filepath.WalkDir(g.MirrorDir(project), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.Contains(p, "objects") {
			return err
		}
		data, err := os.ReadFile(p)
		if err == nil && strings.Contains(string(data), cloneToken) {
			t.Errorf("%s holds the clone token:\n%s", p, data)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestWrongCloneCredentialsSayWhatIsWrong(t *testing.T) {
	origin := newTestRepo(t)
	origin.commit("first", map[string]string{"app.txt": "v1"})
	srv := gitHTTPServer(t, origin, "oauth2", cloneToken)
	url := srv.URL + "/git/origin"
	g := &Git{DataDir: t.TempDir()}
	ctx := context.Background()

	const wrong = "glpat-WrongToken-0000000"
	_, err := g.Mirror(ctx, Repo{Project: "demo", URL: url, Credentials: "oauth2:" + wrong})
	if err == nil || !strings.Contains(err.Error(), "refused the clone credentials") || strings.Contains(err.Error(), wrong) {
		t.Errorf("clone with a wrong token: %v; want 'refused the clone credentials' without the token", err)
	}
	if store.ErrorCode(err) != store.EINVALID {
		t.Errorf("a refused credential is the user's to fix (EINVALID), got %q", store.ErrorCode(err))
	}
	_, _, err = g.ResolveRef(ctx, Repo{Project: "demo", URL: url, Credentials: "oauth2:" + wrong}, "main")
	if err == nil || !strings.Contains(err.Error(), "refused the clone credentials") || strings.Contains(err.Error(), wrong) {
		t.Errorf("ls-remote with a wrong token: %v", err)
	}
	_, err = g.Mirror(ctx, Repo{Project: "demo", URL: url})
	if err == nil || !strings.Contains(err.Error(), "wants credentials") {
		t.Errorf("clone without credentials: %v; want 'wants credentials'", err)
	}
}

func TestRepoOfUsesTheProjectTokenOnlyOnItsGitLab(t *testing.T) {
	p := &store.Project{Name: "app", CloneURL: "https://gitlab.example.com/g/app.git", GitLabToken: "project-token"}
	if r := RepoOf(p, "https://gitlab.example.com"); r.Credentials != "oauth2:project-token" {
		t.Errorf("clone URL on the GitLab server: credentials %q, want the project's token", r.Credentials)
	}
	if r := RepoOf(p, "https://other.example.com"); r.Credentials != "" {
		t.Errorf("the project's token went to another host: %q", r.Credentials)
	}
	p.CloneCredentials = "deploy:own-token"
	if r := RepoOf(p, "https://gitlab.example.com"); r.Credentials != "deploy:own-token" {
		t.Errorf("clone credentials should win over the GitLab token: %q", r.Credentials)
	}
}

func TestBuildClonesWithCredentialsAndNeverLogsThem(t *testing.T) {
	db := storetest.Open(t, store.SQLite)
	e := newWorkerEnv(t, db)
	sha := e.origin.commit("v1", map[string]string{".ferry.yml": pipelineFile, "app.txt": "one"})
	srv := gitHTTPServer(t, e.origin, "oauth2", cloneToken)
	withToken := strings.Replace(srv.URL, "://", "://oauth2:"+cloneToken+"@", 1) + "/git/origin"
	_, err := db.UpdateProject(context.Background(), "app", store.ProjectUpdate{CloneURL: &withToken})
	must(t, err)
	e.start(e.config("w1"))
	b := e.waitEnd(e.queue(sha, "main").ID)
	log := e.log(b.ID)
	if b.Status != store.BuildSuccess {
		t.Fatalf("build over authenticated HTTP: %s %s\n%s", b.Status, b.Error, log)
	}
	if strings.Contains(log, cloneToken) {
		t.Errorf("the build log shows the clone token:\n%s", log)
	}
	if !strings.Contains(log, "fetching "+srv.URL+"/git/origin") {
		t.Errorf("the build log does not name the clone URL without its credentials:\n%s", log)
	}
}
