package handlers_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"ferry/handlers"
	"ferry/store"
	"ferry/store/storetest"
)

// chromiumPath is the Debian package's browser, which CI installs.
const chromiumPath = "/usr/bin/chromium"

// chrome drives one headless Chromium tab; a failed step saves a screenshot and says where.
type chrome struct {
	t   *testing.T
	ctx context.Context
}

func newChrome(t *testing.T) *chrome {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("the browser tests need Chromium at %s (Debian package chromium): %v", chromiumPath, err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck, chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 1000),
	}
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(alloc)
	ctx, cancelTime := context.WithTimeout(ctx, 2*time.Minute)
	t.Cleanup(func() { cancelTime(); cancelTab(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start Chromium %s: %v", chromiumPath, err)
	}
	return &chrome{t: t, ctx: ctx}
}

// run does one step of the flow, or saves a screenshot and fails the test.
func (c *chrome) run(step string, actions ...chromedp.Action[chromedp.Void]) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		c.fail(step, err)
	}
}

// location returns the address of the page the tab shows.
func (c *chrome) location() string {
	c.t.Helper()
	loc, err := chromedp.Run(c.ctx, chromedp.Location())
	if err != nil {
		c.fail("read the location", err)
	}
	return loc
}

// fail saves a screenshot of the page and ends the test with where to find it.
func (c *chrome) fail(step string, err error) {
	c.t.Helper()
	dir := filepath.Join(os.TempDir(), "ferry-browser-failures")
	path := filepath.Join(dir, fmt.Sprintf("%s-%s.png", regexp.MustCompile(`\W+`).ReplaceAllString(c.t.Name()+"-"+step, "_"), time.Now().Format("150405")))
	ctx, cancel := context.WithTimeout(c.ctx, 5*time.Second)
	defer cancel()
	url, _ := chromedp.Run(ctx, chromedp.Location())
	png, serr := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100: PNG
	if serr != nil {
		c.t.Fatalf("%s: %v (no screenshot: %v)", step, err, serr)
	}
	if merr := os.MkdirAll(dir, 0o755); merr != nil {
		c.t.Fatalf("%s: %v (no screenshot: %v)", step, err, merr)
	}
	if werr := os.WriteFile(path, png, 0o644); werr != nil {
		c.t.Fatalf("%s: %v (no screenshot: %v)", step, err, werr)
	}
	c.t.Fatalf("%s: %v\npage %s, screenshot saved to %s", step, err, url, path)
}

// waitFor waits until a JavaScript expression is true on the page.
func waitFor(expr string) chromedp.Action[chromedp.Void] {
	return void(chromedp.Poll[bool](expr, chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(15*time.Second)))
}

// typeText types text into the field sel as a person would (key by key). Headless Chromium
// on a loaded machine now and then drops a key event; a field whose value then differs from
// what was typed is set to it (with the input and change events a person's typing fires), and
// the test logs that it happened, so a lost key is not mistaken for a wrong page.
func typeText(sel, text string) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		if _, err := chromedp.WaitVisible(sel)(ctx, t); err != nil {
			return chromedp.Void{}, err
		}
		value := `(e => e ? e.value : "")(document.querySelector(` + jsString(sel) + `))`
		before, err := chromedp.Evaluate[string](value)(ctx, t)
		if err != nil {
			return chromedp.Void{}, err
		}
		if _, err := chromedp.SendKeys(sel, text)(ctx, t); err != nil {
			return chromedp.Void{}, err
		}
		want := before + text
		got, err := chromedp.Evaluate[string](value)(ctx, t)
		if err != nil || got == want {
			return chromedp.Void{}, err
		}
		fmt.Fprintf(os.Stderr, "browser: typing %q into %s gave %q; setting the field to %q\n", text, sel, got, want)
		_, err = chromedp.Evaluate[bool](`(e => { e.value = `+jsString(want)+`; e.dispatchEvent(new Event('input', {bubbles: true})); e.dispatchEvent(new Event('change', {bubbles: true})); return true; })(document.querySelector(`+jsString(sel)+`))`)(ctx, t)
		return chromedp.Void{}, err
	}
}

// eval runs a script on the page that returns true.
func eval(script string) chromedp.Action[chromedp.Void] {
	return void(chromedp.Evaluate[bool](script))
}

// void drops the value of an action, to use it as a step.
func void[T any](a chromedp.Action[T]) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		_, err := a(ctx, t)
		return chromedp.Void{}, err
	}
}

func jsString(s string) string { return strconv.Quote(s) }

func TestBrowserLoginDeployLiveLogGridLogout(t *testing.T) {
	db := storetest.Open(t, store.SQLite)
	ctx := context.Background()
	f := newPageFixture(t, db)
	_, err := db.CancelDeployment(ctx, f.deployment.ID) // nothing waits ahead of the page's deployment
	must(t, err)
	_, err = db.SetMember(ctx, f.project.ID, "ann", true)
	must(t, err)
	// The hosts are real sshd hosts and a deploy worker runs, so the page's deployment ends.
	moveToRealHosts(t, db, f)
	shipped := realVersion(t, db, f.project.ID, "20260102030405-main-5b1e7a11")
	worker := startDeployWorker(t, db)
	// No BaseURL: the streams' origin check takes the page's own host.
	srv := httptest.NewServer(handlers.New(handlers.Config{DB: db, Deployer: worker}).Handler())
	defer srv.Close()
	c := newChrome(t)

	// Log in; the login page sends the user on to the page they asked for.
	c.run("log in",
		chromedp.Navigate(srv.URL+"/projects/orders"),
		chromedp.WaitVisible(`input[name=password]`),
		typeText(`input[name=name]`, "ann"),
		typeText(`input[name=password]`, "password-ann"),
		chromedp.Click(`form[action="/login"] button[type=submit]`),
		chromedp.WaitVisible(`#grid`),
		waitFor(`document.querySelector('.hostcell[data-host="web-1"] .version').dataset.version === `+jsString(f.version.Name)),
	)

	// A running build's page shows lines as the build writes them.
	running := runningBuild(t, db, f.project.ID)
	c.run("open the build page",
		chromedp.Navigate(srv.URL+"/builds/"+strconv.FormatInt(running.ID, 10)),
		chromedp.WaitVisible(`#log[data-live="true"]`),
		waitFor(`document.getElementById('job-status').dataset.status === "running"`),
	)
	w, err := db.OpenLog(ctx, store.JobBuild, running.ID)
	must(t, err)
	for i := 1; i <= 3; i++ {
		w.Write("stdout", "", fmt.Sprintf("live line %d <b>not bold</b>", i))
		must(t, w.Flush(ctx))
		c.run(fmt.Sprintf("see live line %d", i),
			waitFor(fmt.Sprintf(`Array.from(document.querySelectorAll('#log .text')).some(e => e.textContent === "live line %d <b>not bold</b>")`, i)))
	}
	must(t, w.Close())
	_, err = db.FinishBuild(ctx, running.ID, "browser-test", store.BuildResult{Status: store.BuildFailed, Error: "exit status 1"})
	must(t, err)
	c.run("see the build end", waitFor(`document.getElementById('job-status').dataset.status === "failed"`),
		waitFor(`document.querySelector('#log b') === null`))

	// Deploy the version to one host of staging from the dialog.
	c.run("deploy from the dialog",
		chromedp.Navigate(srv.URL+"/projects/orders"),
		chromedp.Click(`#deploy-open`),
		chromedp.WaitVisible(`#deploy-form`),
		eval(`(() => { const s = document.getElementById('deploy-env'); s.value = 'staging'; s.dispatchEvent(new Event('change', {bubbles: true})); return true; })()`),
		chromedp.SetValue(`#deploy-version`, shipped.Name),
		chromedp.Click(`fieldset[data-for-env="staging"] input[value="web-2"]`),
		chromedp.Click(`#deploy-submit`),
		chromedp.WaitVisible(`#deployment`),
	)
	location := c.location()
	m := regexp.MustCompile(`/deployments/(\d+)$`).FindStringSubmatch(location)
	if m == nil {
		c.fail("after deploying", fmt.Errorf("the browser is at %s, not a deployment page", location))
	}
	id, _ := strconv.ParseInt(m[1], 10, 64)
	dep, err := db.GetDeployment(ctx, id)
	must(t, err)
	if dep.Environment != "staging" || dep.Version != shipped.Name || len(dep.Hosts) != 1 || dep.Hosts[0].Host != "web-1" {
		t.Fatalf("the page deployed %s to %s on %d hosts (%v), want %s to staging on web-1", dep.Version, dep.Environment, len(dep.Hosts), dep.Hosts, shipped.Name)
	}
	c.run("see the deployment succeed", waitFor(`document.getElementById('job-status').dataset.status === "success"`),
		waitFor(`document.querySelector('tr[data-host="web-1"] [data-field=status]').dataset.status === "succeeded"`))
	c.run("see the host's output", waitFor(`document.getElementById('log').textContent.includes("web-1 is running `+shipped.Name+`")`))

	// The grid follows what runs where, without a reload.
	c.run("open the project", chromedp.Navigate(srv.URL+"/projects/orders"), chromedp.WaitVisible(`#grid`),
		waitFor(`document.querySelector('.hostcell[data-host="web-1"] .version').dataset.version === `+jsString(shipped.Name)),
		waitFor(`document.querySelector('.hostcell[data-host="web-2"] .version').dataset.version === ""`))
	must(t, db.SetInstance(ctx, store.Instance{ProjectID: f.project.ID, HostID: f.web2.ID, EnvironmentID: &f.staging.ID,
		Version: f.version.Name, Status: "running"}))
	c.run("see the grid change", waitFor(`document.querySelector('.hostcell[data-host="web-2"] .version').dataset.version === `+jsString(f.version.Name)))

	// Log out: the pages ask for a login again.
	c.run("log out", chromedp.Click(`#logout`), chromedp.WaitVisible(`input[name=password]`),
		chromedp.Navigate(srv.URL+"/projects/orders"), chromedp.WaitVisible(`input[name=password]`))
	location = c.location()
	if !strings.Contains(location, "/login?next=") {
		c.fail("after logging out", fmt.Errorf("the project page went to %s, not the login page", location))
	}
}

// runningBuild queues a build of a new commit and claims it, as a worker would.
func runningBuild(t *testing.T, db *store.DB, projectID int64) *store.Build {
	t.Helper()
	ctx := context.Background()
	b, err := db.CreateBuild(ctx, store.NewBuild{ProjectID: projectID, Ref: "main", Branch: "main", SHA: strings.Repeat("d4", 20),
		CommitTitle: "Live build", CommitAuthor: "Ann Author", TriggeredBy: "push by ann"})
	must(t, err)
	got, err := db.ClaimBuild(ctx, "browser-test", time.Minute)
	must(t, err)
	if got == nil || got.ID != b.ID {
		t.Fatalf("claimed %v, want build %d", got, b.ID)
	}
	return got
}

// adminInBrowser starts a server on a new SQLite store with the page fixture, and a browser
// logged in to it as the fixture's administrator; the server closes when t ends.
func adminInBrowser(t *testing.T) (*store.DB, *pageFixture, *httptest.Server, *chrome) {
	t.Helper()
	db := storetest.Open(t, store.SQLite)
	f := newPageFixture(t, db)
	srv := httptest.NewServer(handlers.New(handlers.Config{DB: db}).Handler())
	t.Cleanup(srv.Close)
	c := newChrome(t)
	c.login(srv.URL, f.admin.Name, "password-"+f.admin.Name)
	return db, f, srv, c
}
