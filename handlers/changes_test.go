package handlers_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"ferry/build"
	"ferry/deploy"
	"ferry/deploy/sshtest"
	"ferry/handlers"
	"ferry/store"
	"ferry/store/storetest"
)

// changesPermRoutes adds the permission rows of the history routes (see permRouteParts). The
// permission test's server has no build side to read history from, so members and
// administrators are told so (400): past the right, which is what the table checks.
func changesPermRoutes() {
	addPermRoutes(map[string][5]int{
		"GET /api/v1/projects/:project/changes": {401, 404, 400, 400, 400},
		"GET /api/v1/projects/:project/refs":    {401, 404, 400, 400, 400},
		"GET /api/v1/projects/:project/commits": {401, 404, 400, 400, 400},
	}, nil, nil)
}

// shipFixture is a project built from a real repository by a real build worker, deployed to a
// real sshd host by a real deploy worker.
type shipFixture struct {
	t       *testing.T
	db      *store.DB
	srv     *httptest.Server
	admin   *client
	commit  func(msg string) string
	host    *sshtest.Host
	project *store.Project
}

func newShipFixture(t *testing.T, db *store.DB) *shipFixture {
	return newShipFixtureWith(t, db, 1, realPipeline)
}

// newShipFixtureWith has n hosts (web-1 …) in staging and the .ferry.yml pipeline.
func newShipFixtureWith(t *testing.T, db *store.DB, n int, pipeline string) *shipFixture {
	t.Helper()
	ctx := context.Background()
	f := &shipFixture{t: t, db: db}
	cluster := sshtest.Start(t, n, sshtest.Options{})
	f.host = cluster.Hosts()[0]
	var repo string
	repo, f.commit = repoWithPipeline(t, pipeline)
	f.project = &store.Project{Name: "orders", GitLabPath: "shop/orders", CloneURL: repo, Trigger: store.DefaultTrigger(), KeepVersions: 20}
	must(t, db.CreateProject(ctx, f.project))
	var names []string
	for i, h := range cluster.Hosts() {
		name := fmt.Sprintf("web-%d", i+1)
		must(t, db.CreateHost(ctx, &store.Host{Name: name, Address: h.Addr(), Port: h.Port(), User: "root",
			PrivateKey: string(cluster.ClientKeyPEM), HostKey: h.HostKey()}))
		names = append(names, name)
	}
	must(t, db.CreateEnvironment(ctx, &store.Environment{ProjectID: f.project.ID, Name: "staging", Hosts: names}))
	bw := startBuildWorker(t, db)
	dw := startDeployWorker(t, db)
	f.srv = httptest.NewServer(handlers.New(handlers.Config{DB: db, GitLab: build.NewFrontend(bw), Deployer: dw, ScanHostKey: deploy.ScanHostKey}).Handler())
	t.Cleanup(f.srv.Close)
	f.admin = tokenClient(t, f.srv.Config.Handler, db, mustUser(t, db, "root", true))
	return f
}

// build builds sha through the API and returns its version.
func (f *shipFixture) build(sha string) string {
	f.t.Helper()
	var b store.Build
	f.admin.must(http.StatusCreated, "POST", "/api/v1/projects/orders/builds", `{"ref":"main","sha":"`+sha+`"}`).decode(f.t, &b)
	storetest.WaitFor(f.t, 2*time.Minute, "the build", func() bool {
		got, err := f.db.GetBuild(context.Background(), b.ID)
		must(f.t, err)
		b = *got
		return b.Status != store.BuildPending && b.Status != store.BuildRunning
	})
	if b.Status != store.BuildSuccess {
		f.t.Fatalf("build of %s ended %s: %s", sha, b.Status, b.Error)
	}
	return b.Version
}

// deploy deploys a version to staging through the API and waits for its success.
func (f *shipFixture) deploy(version string) {
	f.t.Helper()
	var d store.Deployment
	f.admin.must(http.StatusCreated, "POST", "/api/v1/projects/orders/deployments", `{"environment":"staging","version":"`+version+`"}`).decode(f.t, &d)
	storetest.WaitFor(f.t, time.Minute, "the deployment", func() bool {
		got, err := f.db.GetDeployment(context.Background(), d.ID)
		must(f.t, err)
		d = *got
		return d.Status != store.DeploymentQueued && d.Status != store.DeploymentRunning
	})
	if d.Status != store.DeploymentSuccess {
		f.t.Fatalf("deploying %s ended %s: %s", version, d.Status, d.Error)
	}
}

type changesAnswer struct {
	Running, Previous, Target, Direction string
	Commits                              []store.CommitSummary
}

func titles(cs []store.CommitSummary) string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Title+" by "+c.Author)
	}
	return strings.Join(out, "; ")
}

// The deploy dialog and the versions list say what a deployment changes, read from the mirror:
// the commits it ships, or for an older version the ones a rollback takes away.
func TestWhatAmIAboutToShip(t *testing.T) {
	db := storetest.Open(t, store.SQLite)
	f := newShipFixture(t, db)
	v1 := f.build(f.commit("One devops"))
	f.commit("Two devops")
	v2 := f.build(f.commit("Three devops"))

	var ch changesAnswer
	f.admin.must(http.StatusOK, "GET", "/api/v1/projects/orders/changes?environment=staging&version="+v1, "").decode(t, &ch)
	if ch.Running != "" || ch.Direction != "first" || titles(ch.Commits) != "One devops by Ada Author" {
		t.Errorf("before any deployment: %+v, want nothing running and the first version's commit", ch)
	}
	f.deploy(v2)
	f.admin.must(http.StatusOK, "GET", "/api/v1/projects/orders/changes?environment=staging&version="+v1, "").decode(t, &ch)
	if ch.Running != v2 || ch.Direction != "rollback" || titles(ch.Commits) != "Three devops by Ada Author; Two devops by Ada Author" {
		t.Errorf("going back to %s: %+v, want a rollback from %s taking away three and two", v1, ch, v2)
	}
	f.admin.must(http.StatusOK, "GET", "/api/v1/projects/orders/changes?version="+v2, "").decode(t, &ch)
	if ch.Previous != v1 || ch.Direction != "forward" || titles(ch.Commits) != "Three devops by Ada Author; Two devops by Ada Author" {
		t.Errorf("changes since the version before %s: %+v, want two commits since %s", v2, ch, v1)
	}
	// Around the right: someone who is not a member learns nothing of the project's history, and a
	// member of another project cannot read this one's through their own.
	outsider := tokenClient(t, f.srv.Config.Handler, db, mustUser(t, db, "eve", false))
	for _, path := range []string{"/changes?environment=staging&version=" + v1, "/refs", "/commits?branch=main"} {
		outsider.must(http.StatusNotFound, "GET", "/api/v1/projects/orders"+path, "")
	}
	other := &store.Project{Name: "other", GitLabPath: "g/other", CloneURL: "https://gitlab.example.com/g/other.git", Trigger: store.DefaultTrigger()}
	must(t, db.CreateProject(context.Background(), other))
	_, err := db.SetMember(context.Background(), other.ID, "eve", true)
	must(t, err)
	outsider.must(http.StatusBadRequest, "GET", "/api/v1/projects/other/changes?version="+v1, "")
	r := f.admin.must(http.StatusBadRequest, "GET", "/api/v1/projects/orders/changes?environment=staging&version=nope", "")
	if !strings.HasPrefix(r.errorText(t), "version: ") {
		t.Errorf("an unknown version says %q", r.errorText(t))
	}

	c := newChrome(t)
	c.login(f.srv.URL, "root", "password-root")
	c.run("open the deploy dialog", chromedp.Navigate(f.srv.URL+"/projects/orders/deploy?version="+v1),
		waitFor(`document.getElementById('ship-changes').dataset.direction === "rollback"`),
		waitFor(`document.querySelector('#ship-changes .running').textContent.includes(`+jsString(v2)+`)`),
		waitFor(`document.querySelector('#ship-changes .direction').textContent.startsWith("Rollback")`),
		waitFor(`Array.from(document.querySelectorAll('#ship-changes li .title')).map(e => e.textContent).join(",") === "Three devops,Two devops"`),
		waitFor(`document.querySelector('#ship-changes li .author').textContent === "Ada Author"`))
	c.run("choose the running version", chromedp.SetValue(`#deploy-version`, v2),
		eval(`(() => { document.getElementById('deploy-version').dispatchEvent(new Event('change', {bubbles: true})); return true; })()`),
		waitFor(`document.getElementById('ship-changes').dataset.direction === "same"`))
	c.run("changes since the version before", chromedp.Navigate(f.srv.URL+"/projects/orders"),
		chromedp.Click(fmt.Sprintf(`tr[data-version=%q] .changes-box summary`, v2)),
		waitFor(fmt.Sprintf(`document.querySelector('tr[data-version=%q] .version-changes').dataset.direction === "forward"`, v2)),
		waitFor(fmt.Sprintf(`document.querySelector('tr[data-version=%q] .version-changes .running').textContent.includes(%s)`, v2, jsString(v1))),
		waitFor(fmt.Sprintf(`document.querySelectorAll('tr[data-version=%q] .version-changes li').length === 2`, v2)))
	// The version page: where it runs, what it changed, and a rollback from it in the dialog.
	c.run("open the version page", chromedp.Click(fmt.Sprintf(`tr[data-version=%q] a.version-link`, v2)),
		chromedp.WaitVisible(`#version-facts`),
		waitFor(`!!document.querySelector('#version-runs tr[data-env="staging"][data-host="web-1"]')`),
		waitFor(`document.getElementById('version-changes').dataset.direction === "forward"`),
		waitFor(`Array.from(document.querySelectorAll('#version-changes li .title')).map(e => e.textContent).join(",") === "Three devops,Two devops"`))
	c.run("roll back from the older version's page", chromedp.Navigate(f.srv.URL+"/projects/orders/versions/"+v1),
		waitFor(`document.getElementById('version-changes').dataset.direction === "first"`),
		waitFor(`document.getElementById('version-runs').textContent.includes("runs on no host")`),
		waitFor(`document.getElementById('version-deploy').textContent.includes("roll back")`),
		chromedp.Click(`#version-deploy`), chromedp.WaitVisible(`#deploy-form`),
		waitFor(`document.getElementById('deploy-version').value === `+jsString(v1)),
		waitFor(`document.getElementById('ship-changes').dataset.direction === "rollback"`))
}
