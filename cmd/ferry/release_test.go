package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"ferry/deploy/sshtest"
	"ferry/store"
	"ferry/store/storetest"
)

// releasePipeline is the .ferry.yml of the service the end-to-end test releases: the build
// copies service/ and stamps it with its version; the release runs a process from a pid file
// and is healthy once that process lives and VERSION names the version being deployed.
const releasePipeline = `build:
  script:
    - cp -R service dist
    - echo "$FERRY_VERSION" > dist/VERSION
  artifact: dist
deploy:
  path: ` + sshtest.DefaultDeployPath + `
  keep_releases: 3
  stop: { pid_file: run/app.pid, grace: 2s }
  start: bin/start.sh
  health: { command: 'kill -0 "$(cat run/app.pid)" && grep -qx "$FERRY_VERSION" VERSION', timeout: 20s }
`

const startScript = "#!/bin/sh\nmkdir -p run\necho $$ > run/app.pid\nexec sleep 600\n"

// TestPushBuildsDeploysAndRollsBack runs the ferry binary as the README tells a user to, with
// a real git repository and real sshd hosts: a push whose message holds the keyword builds that
// commit, the good build of main deploys itself to staging (the project's trigger says so), and
// a deployment of the first version from the API rolls back without uploading anything.
func TestPushBuildsDeploysAndRollsBack(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(string(d), func(t *testing.T) {
			testRelease(t, newInstance(t, d))
		})
	}
}

func testRelease(t *testing.T, in instance) {
	cluster := sshtest.Start(t, 2, sshtest.Options{})
	repo := newGitRepo(t)
	srv := startServer(t, in.env)
	res := runFerry(t, in.env, "", "token", "add", "admin")
	if res.code != 0 {
		t.Fatalf("ferry token add admin: exit %d: %s", res.code, res.stderr)
	}
	api := newClient(t, srv.URL, strings.TrimSpace(res.stdout))

	for _, h := range cluster.Hosts() {
		api.api(http.StatusCreated, "POST", "/api/v1/hosts", map[string]any{"name": h.Name, "address": h.Addr(),
			"port": h.Port(), "user": "root", "private_key": string(cluster.ClientKeyPEM), "host_key": h.HostKey()}, nil)
	}
	api.api(http.StatusCreated, "POST", "/api/v1/projects", map[string]any{"name": "orders", "gitlab_path": "shop/orders",
		"clone_url": repo.dir, "webhook_secret": "hook-secret-123456",
		"trigger": map[string]any{"keyword": "devops", "branches": []string{"main"}, "deploy": map[string]string{"main": "staging"}}}, nil)
	api.api(http.StatusCreated, "POST", "/api/v1/projects/orders/environments",
		map[string]any{"name": "staging", "hosts": []string{"host-1", "host-2"}}, nil)

	first := repo.commit("first release devops")
	v1 := pushAndDeploy(t, srv, api, repo, first, "deliver-1")
	for _, h := range cluster.Hosts() {
		assertRunning(t, h, v1)
	}

	second := repo.commit("second release, devops")
	v2 := pushAndDeploy(t, srv, api, repo, second, "deliver-2")
	for _, h := range cluster.Hosts() {
		assertRunning(t, h, v2)
	}
	if v1 == v2 {
		t.Fatalf("both builds made version %s", v1)
	}

	// The rollback: v1 is still on both hosts, so nothing is uploaded.
	var d store.Deployment
	api.api(http.StatusCreated, "POST", "/api/v1/projects/orders/deployments",
		map[string]any{"environment": "staging", "version": v1}, &d)
	back := waitDeployment(t, api, d.ID)
	if back.Status != store.DeploymentSuccess {
		t.Fatalf("rollback to %s ended %s: %s", v1, back.Status, back.Error)
	}
	for _, hs := range back.Hosts {
		if hs.BytesSent != 0 {
			t.Errorf("%s: the rollback sent %d bytes, want none (the release was kept)", hs.Host, hs.BytesSent)
		}
	}
	for _, h := range cluster.Hosts() {
		assertRunning(t, h, v1)
	}
	var instances []store.Instance
	api.api(http.StatusOK, "GET", "/api/v1/projects/orders/instances", nil, &instances)
	if len(instances) != 2 {
		t.Fatalf("instances: %+v, want one per host", instances)
	}
	for _, in := range instances {
		if in.Version != v1 || in.Environment != "staging" || !slices.Contains(in.Releases, v2) {
			t.Errorf("instance %+v: want %s running in staging with %s kept", in, v1, v2)
		}
	}
	if code := srv.stop(); code != 0 {
		t.Fatalf("after SIGTERM ferry exited %d", code)
	}
}

// pushAndDeploy sends GitLab's push webhook for sha on main and waits for its build and for
// the deployment the good build queues; it returns the version.
func pushAndDeploy(t *testing.T, srv *server, api *client, repo *gitRepo, sha, delivery string) string {
	t.Helper()
	body := pushPayload(t, repo, sha)
	req, err := http.NewRequest("POST", srv.URL+"/hooks/gitlab", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Gitlab-Event", "Push Hook")
	req.Header.Set("X-Gitlab-Token", "hook-secret-123456")
	req.Header.Set("X-Gitlab-Event-UUID", delivery)
	hook := newClient(t, srv.URL, "").send(req)
	var answer struct {
		Decision, Reason string
		Build            int64
	}
	if err := json.Unmarshal([]byte(hook.body), &answer); err != nil || hook.status/100 != 2 || answer.Build == 0 {
		t.Fatalf("webhook for %s: status %d %s, want a queued build", sha, hook.status, hook.body)
	}
	b := waitBuild(t, api, answer.Build)
	if b.Status != store.BuildSuccess || b.Version == "" || b.SHA != sha {
		t.Fatalf("build %d of %s ended %+v, want success with a version", b.ID, sha, b)
	}
	var deployments []store.Deployment
	i := -1
	storetest.WaitFor(t, 30*time.Second, "a deployment of "+b.Version+" after its good build", func() bool {
		api.api(http.StatusOK, "GET", "/api/v1/projects/orders/deployments", nil, &deployments)
		i = slices.IndexFunc(deployments, func(d store.Deployment) bool { return d.Version == b.Version })
		return i >= 0
	})
	d := waitDeployment(t, api, deployments[i].ID)
	if d.Status != store.DeploymentSuccess {
		t.Fatalf("the deployment of %s after the build ended %s: %s", b.Version, d.Status, d.Error)
	}
	return b.Version
}

func waitBuild(t *testing.T, api *client, id int64) store.Build {
	t.Helper()
	var b store.Build
	waitFor(t, fmt.Sprintf("build %d", id), func() bool {
		api.api(http.StatusOK, "GET", fmt.Sprintf("/api/v1/builds/%d", id), nil, &b)
		return b.Status != store.BuildPending && b.Status != store.BuildRunning
	})
	return b
}

func waitDeployment(t *testing.T, api *client, id int64) store.Deployment {
	t.Helper()
	var d store.Deployment
	waitFor(t, fmt.Sprintf("deployment %d", id), func() bool {
		api.api(http.StatusOK, "GET", fmt.Sprintf("/api/v1/deployments/%d", id), nil, &d)
		return d.Status != store.DeploymentQueued && d.Status != store.DeploymentRunning
	})
	return d
}

func waitFor(t *testing.T, what string, done func() bool) {
	t.Helper()
	storetest.WaitFor(t, 90*time.Second, what+" to end", done)
}

// assertRunning checks on the host what an operator would: current names the version, and
// the process of the pid file is alive (in the host's own pid namespace, so it is asked there).
func assertRunning(t *testing.T, h *sshtest.Host, version string) {
	t.Helper()
	link, err := os.Readlink(h.Path("current"))
	if err != nil || link != "releases/"+version {
		t.Errorf("%s: current -> %q (%v), want releases/%s", h.Name, link, err, version)
	}
	stamp, err := os.ReadFile(h.Path("current/VERSION"))
	if err != nil || strings.TrimSpace(string(stamp)) != version {
		t.Errorf("%s: current/VERSION holds %q (%v), want %s", h.Name, stamp, err, version)
	}
	if _, err := os.Stat(h.Path("current/run/app.pid")); err != nil {
		t.Errorf("%s: the started release wrote no pid file: %v", h.Name, err)
	}
}

// pushPayload is GitLab's own push payload made to name the project, main and sha.
func pushPayload(t testing.TB, repo *gitRepo, sha string) string {
	t.Helper()
	raw, err := os.ReadFile("../../testdata/gitlab/push.json")
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	m["ref"], m["after"], m["checkout_sha"] = "refs/heads/main", sha, sha
	m["project"].(map[string]any)["path_with_namespace"] = "shop/orders"
	commits := m["commits"].([]any)
	head := commits[len(commits)-1].(map[string]any)
	msg := gitOutput(t, repo.dir, "log", "-1", "--format=%s", sha)
	head["id"], head["message"], head["title"] = sha, msg, msg
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// gitRepo is the project's repository, as GitLab would hold it.
type gitRepo struct {
	t   testing.TB
	dir string
}

func newGitRepo(t testing.TB) *gitRepo {
	r := &gitRepo{t: t, dir: filepath.Join(t.TempDir(), "orders")}
	gitOutput(t, "", "init", "--quiet", "--initial-branch=main", r.dir)
	for name, content := range map[string]string{".ferry.yml": releasePipeline, "service/bin/start.sh": startScript} {
		file := filepath.Join(r.dir, name)
		if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(file, []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

// commit commits a change with msg and returns its sha.
func (r *gitRepo) commit(msg string) string {
	r.t.Helper()
	stamp := filepath.Join(r.dir, "service", "CHANGES")
	f, err := os.OpenFile(stamp, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		r.t.Fatal(err)
	}
	fmt.Fprintln(f, msg)
	f.Close()
	gitOutput(r.t, r.dir, "add", "-A")
	gitOutput(r.t, r.dir, "commit", "--quiet", "-m", msg)
	return gitOutput(r.t, r.dir, "rev-parse", "HEAD")
}

func gitOutput(t testing.TB, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=Ada", "GIT_AUTHOR_EMAIL=ada@example.com", "GIT_COMMITTER_NAME=Ada", "GIT_COMMITTER_EMAIL=ada@example.com")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}
