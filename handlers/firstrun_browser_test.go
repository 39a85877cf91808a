package handlers_test

import (
	"context"
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

	"github.com/chromedp/chromedp"

	"ferry/build"
	"ferry/deploy"
	"ferry/deploy/sshtest"
	"ferry/handlers"
	"ferry/store"
	"ferry/store/storetest"
)

// walk drives the browser and counts what a person does: clicks (buttons, links, checkboxes,
// the confirmation of a dialog) and fields typed into.
type walk struct {
	c              *chrome
	clicks, fields int
}

func (w *walk) click(sel string) chromedp.Action[chromedp.Void] {
	w.clicks++
	return chromedp.Click(sel)
}

func (w *walk) fill(sel, value string) chromedp.Action[chromedp.Void] {
	w.fields++
	return typeText(sel, value)
}

// confirmNext answers the next confirmation dialog with yes, as the person would (one click).
func (w *walk) confirmNext() chromedp.Action[chromedp.Void] {
	w.clicks++
	return eval(`(() => { window.confirm = () => true; return true; })()`)
}

// text returns the text of the element sel.
func (c *chrome) text(step, sel string) string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.ctx, 20*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`(document.querySelector(`+jsString(sel)+`) || {}).textContent || ""`))
	if err != nil {
		c.fail(step, err)
	}
	return strings.TrimSpace(s)
}

// waitLong waits up to d for a JavaScript expression to be true on the page.
func (c *chrome) waitLong(step, expr string, d time.Duration) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.ctx, d+5*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, void(chromedp.Poll[bool](expr, chromedp.WithPollingInterval(200*time.Millisecond), chromedp.WithPollingTimeout(d)))); err != nil {
		c.fail(step, err)
	}
}

// firstRunRepo is a project's repository with a .ferry.yml whose artifact the test hosts run.
func firstRunRepo(t *testing.T) (dir string, commit func(msg string) string) {
	t.Helper()
	return repoWithPipeline(t, realPipeline)
}

// repoWithPipeline is a project's repository with the .ferry.yml pipeline and app/bin/start.
func repoWithPipeline(t *testing.T, pipeline string) (dir string, commit func(msg string) string) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), "orders")
	git := func(args ...string) string {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1",
			"GIT_AUTHOR_NAME=Ada Author", "GIT_AUTHOR_EMAIL=ada@example.com", "GIT_COMMITTER_NAME=Ada Author", "GIT_COMMITTER_EMAIL=ada@example.com")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	must(t, os.MkdirAll(filepath.Join(dir, "app", "bin"), 0o755))
	git("init", "--quiet", "--initial-branch=main", ".")
	must(t, os.WriteFile(filepath.Join(dir, ".ferry.yml"), []byte(pipeline), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "app", "bin", "start"), []byte("#!/bin/sh\necho started\n"), 0o755))
	commit = func(msg string) string {
		f, err := os.OpenFile(filepath.Join(dir, "app", "CHANGES"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		must(t, err)
		f.WriteString(msg + "\n")
		f.Close()
		git("add", "-A")
		git("commit", "--quiet", "-m", msg)
		return git("rev-parse", "HEAD")
	}
	return dir, commit
}

// An empty ferry guides its first administrator to a first deployment using only pages: a
// host with a generated key and a confirmed host key, a project, an environment a push to main
// deploys to, GitLab's webhook (the push is the test's), and the deployment on a real sshd host.
// It logs how many clicks and fields it took.
func TestBrowserFirstRunFromAnEmptyFerryToTheFirstDeployment(t *testing.T) {
	db := storetest.Open(t, store.SQLite)
	ctx := context.Background()
	mustUser(t, db, "root", true) // `ferry user add --admin root`, before any page
	cluster := sshtest.Start(t, 1, sshtest.Options{})
	sshHost := cluster.Hosts()[0]
	repo, commit := firstRunRepo(t)

	bw := startBuildWorker(t, db)
	dw := startDeployWorker(t, db)
	srv := httptest.NewServer(handlers.New(handlers.Config{DB: db, GitLab: build.NewFrontend(bw), Deployer: dw,
		ScanHostKey: deploy.ScanHostKey}).Handler())
	t.Cleanup(srv.Close)
	c := newChrome(t)
	w := &walk{c: c}

	c.run("log in", chromedp.Navigate(srv.URL+"/"), chromedp.WaitVisible(`input[name=password]`),
		w.fill(`input[name=name]`, "root"), w.fill(`input[name=password]`, "password-root"),
		w.click(`form[action="/login"] button[type=submit]`),
		chromedp.WaitVisible(`#setup-banner[data-step="host"]`))

	// 1. A host: ferry generates the key pair and shows the public half.
	c.run("add a host", w.click(`#setup-next`), chromedp.WaitVisible(`#new-host-form`),
		w.fill(`#new-host-form input[name=name]`, "web-1"),
		w.fill(`#new-host-form input[name=address]`, sshHost.Addr()),
		chromedp.SetValue(`#new-host-form input[name=port]`, ""), w.fill(`#new-host-form input[name=port]`, itoa(sshHost.Port())),
		w.fill(`#new-host-form input[name=user]`, "root"),
		w.click(`#nh-generate`), w.click(`#new-host-form button[type=submit]`),
		waitFor(`!!document.querySelector('tr[data-host="web-1"] .pubkey-line')`))
	pub := c.text("read the public key", `tr[data-host="web-1"] .pubkey-line`)
	if !strings.HasPrefix(pub, "ssh-ed25519 ") {
		c.fail("read the public key", errorf("the page shows %q, not an ed25519 public key", pub))
	}
	cluster.Authorize(t, pub) // the administrator adds it to the host's authorized_keys
	want := fingerprintOf(t, sshHost.HostKey())
	c.run("fetch the host key", w.click(`tr[data-host="web-1"] .scan-key`),
		waitFor(`(e => e && e.dataset.offered === `+jsString(want)+`)(document.querySelector('tr[data-host="web-1"] .offered'))`))
	c.run("confirm the fingerprint", w.confirmNext(), w.click(`tr[data-host="web-1"] .offered button`),
		waitFor(`document.querySelector('tr[data-host="web-1"]').textContent.includes(`+jsString(want)+`) && !document.querySelector('tr[data-host="web-1"] .offered')`),
		waitFor(`(b => b && b.dataset.step === "project")(document.getElementById('setup-banner'))`))

	// 2. A project; ferry shows the webhook's secret once.
	c.run("create the project", w.click(`#setup-next`), chromedp.WaitVisible(`#new-project-form`),
		w.fill(`#np-name`, "orders"), w.fill(`#np-path`, "shop/orders"), w.fill(`#np-clone`, repo),
		w.click(`#np-submit`), chromedp.WaitVisible(`#project-created`),
		waitFor(`(b => b && b.dataset.step === "environment")(document.getElementById('setup-banner'))`))
	secret := c.text("read the secret", `#np-secret`)
	if len(secret) < 16 {
		c.fail("read the secret", errorf("the secret shown is %q", secret))
	}

	// 3. An environment with the host, and main deploys to it.
	envForm := `form[data-method="POST"][data-url="/api/v1/projects/orders/environments"]`
	c.run("create the environment", w.click(`#setup-next`), chromedp.WaitVisible(`#project-form`),
		w.click(`details:has(`+envForm+`) > summary`),
		w.fill(envForm+` input[name=name]`, "production"), w.click(envForm+` input[value="web-1"]`),
		w.click(envForm+` button[type=submit]`),
		waitFor(`!!document.querySelector('#environments tr[data-env="production"]')`))
	c.run("deploy main to it", w.fill(`#project-form textarea[name="trigger.deploy"]`, "main = production"),
		w.click(`#project-save`), chromedp.WaitVisible(`#project-saved`),
		waitFor(`(b => b && b.dataset.step === "webhook")(document.getElementById('setup-banner'))`))

	// 4. The webhook: the page shows the address; the push is the test's.
	c.run("open the webhook", w.click(`#setup-next`), chromedp.WaitVisible(`#hook-url`))
	hookURL := c.text("read the webhook address", `#hook-url`)
	if hookURL != srv.URL+"/hooks/gitlab" {
		c.fail("read the webhook address", errorf("the page shows %q, want %s/hooks/gitlab", hookURL, srv.URL))
	}
	sha := commit("First release devops")
	req, err := http.NewRequest("POST", hookURL, strings.NewReader(pushBody(t, "shop/orders", "main", sha, "First release devops")))
	must(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Gitlab-Event", "Push Hook")
	req.Header.Set("X-Gitlab-Token", secret)
	res, err := http.DefaultClient.Do(req)
	must(t, err)
	res.Body.Close()
	if res.StatusCode/100 != 2 {
		t.Fatalf("GitLab's push webhook: status %d", res.StatusCode)
	}

	// 5. The project page shows the version running on the host when the deployment is done.
	c.run("open the project", w.click(`.crumbs a[href="/projects/orders"]`), chromedp.WaitVisible(`#grid`))
	c.waitLong("see the first deployment", `(e => e && e.dataset.version !== "")(document.querySelector('.hostcell[data-host="web-1"] .version'))`, 3*time.Minute)
	deps, err := db.ListDeployments(ctx, store.DeploymentFilter{})
	must(t, err)
	if len(deps) != 1 || deps[0].Status != store.DeploymentSuccess || deps[0].Environment != "production" {
		t.Fatalf("deployments after the first push: %+v, want one successful to production", deps)
	}
	c.run("the guide is done", chromedp.Navigate(srv.URL+"/setup"), chromedp.WaitVisible(`#setup-finished`),
		waitFor(`document.getElementById('setup-banner') === null`))
	if _, err := os.Stat(sshHost.Path("current/bin/start")); err != nil {
		t.Errorf("the host has no current release: %v", err)
	}
	t.Logf("first run, from an empty ferry to the first deployment: %d clicks and %d fields (login included: 1 click, 2 fields); "+
		"outside ferry: one line added to authorized_keys, the webhook's address and secret pasted into GitLab, one push",
		w.clicks, w.fields)
}

func itoa(n int) string { return strconv.Itoa(n) }

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }

// startBuildWorker runs a build worker (scripts in the sandbox) against db until the test ends.
func startBuildWorker(t *testing.T, db *store.DB) *build.Worker {
	t.Helper()
	bw := build.NewWorker(build.WorkerConfig{DB: db, DataDir: t.TempDir(), Owner: storetest.Name("builder"), Workers: 1,
		LeaseTTL: 5 * time.Second, PollInterval: 200 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); bw.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return bw
}
