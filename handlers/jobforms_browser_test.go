package handlers_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"ferry/store"
	"ferry/store/storetest"
)

// browseAccountForms, in TestBrowserScriptEditorAndRunPage's session: an administrator adds an
// execution account with a key ferry generates (its public half is shown), is told next to the
// field that a user name is bad, changes the user in place and removes the account.
func browseAccountForms(t *testing.T, db *store.DB, f *pageFixture, srv *httptest.Server, c *chrome) {
	ctx := context.Background()
	jobs := srv.URL + "/projects/orders/jobs"
	c.run("add an account with a generated key",
		chromedp.Navigate(jobs+"#accounts"),
		eval(`(document.getElementById('new-account').open = true, true)`),
		chromedp.WaitVisible(`#new-account-form input[name=name]`),
		typeText(`#new-account-form input[name=name]`, "runner"),
		typeText(`#new-account-form input[name=user]`, "app"),
		chromedp.Click(`#na-generate`),
		waitFor(`document.getElementById('na-private-key').disabled`),
		chromedp.Click(`#new-account-form button[type=submit]`),
	)
	settle(c, "see the account with its public key", `!!document.querySelector('tr[data-account="runner"] code.pubkey-line') && document.querySelector('tr[data-account="runner"] code.pubkey-line').textContent.startsWith("ssh-ed25519 ")`)
	a, err := db.GetExecAccount(ctx, f.project.ID, "runner")
	must(t, err)
	if a.User != "app" || !strings.Contains(a.PrivateKey, "OPENSSH PRIVATE KEY") {
		t.Fatalf("account: user %q, has key %v", a.User, a.PrivateKey != "")
	}
	row := `tr[data-account="runner"] `
	c.run("try a bad user name",
		eval(`(document.querySelector('tr[data-account="runner"] details.account-edit').open = true, true)`),
		chromedp.WaitVisible(row+`input[name=user]`),
		eval(`(document.querySelector('tr[data-account="runner"] input[name=user]').value = "Bad User", true)`),
		chromedp.Click(row+`form button[type=submit]`),
		waitFor(`(function (e) { return !!e && e.textContent.includes("is not a Unix user name") })(document.querySelector('tr[data-account="runner"] input[name=user]').closest('label').nextElementSibling)`),
	)
	c.run("change the user in place",
		eval(`(document.querySelector('tr[data-account="runner"] input[name=user]').value = "svc", true)`),
		chromedp.Click(row+`form button[type=submit]`),
	)
	storetest.WaitFor(t, 20*time.Second, "the account's new user", func() bool {
		b, err := db.GetExecAccount(ctx, f.project.ID, "runner")
		return err == nil && b.User == "svc" && b.PrivateKey == a.PrivateKey
	})
	settle(c, "the page after the change", `document.readyState === "complete" && !!document.querySelector('tr[data-account="runner"]') && document.querySelector('tr[data-account="runner"] td:nth-child(2)').textContent === "svc"`)
	c.run("remove the account",
		eval(`(window.confirm = () => true, document.querySelector('tr[data-account="runner"] details.account-edit').open = true, true)`),
		chromedp.Click(row+`button.danger`),
	)
	storetest.WaitFor(t, 20*time.Second, "the account to be removed", func() bool {
		_, err := db.GetExecAccount(ctx, f.project.ID, "runner")
		return store.IsNotFound(err)
	})
	settle(c, "the page without the account", `document.readyState === "complete" && !!document.querySelector('#accounts') && !document.querySelector('tr[data-account="runner"]')`)
}

// browseJobEditor: a member builds a job with the structured editor — a parameter, a script
// step and a pause, reordered — is told next to the step's field that an account does not
// exist, fixes it and saves; then loads the job back and sees it as JSON.
func browseJobEditor(t *testing.T, db *store.DB, f *pageFixture, srv *httptest.Server, c *chrome) {
	ctx := context.Background()
	set := func(sel, v string) chromedp.Action[chromedp.Void] {
		return eval(`(function (e) { e.value = ` + jsString(v) + `; e.dispatchEvent(new Event('change', {bubbles: true})); return true })(document.querySelector(` + jsString(sel) + `))`)
	}
	step := func(n int, field string) string {
		return `#job-form .step-row:nth-child(` + string(rune('0'+n)) + `) [data-f="` + field + `"]`
	}
	c.run("fill the job editor",
		chromedp.Navigate(srv.URL+"/projects/orders/jobs"),
		eval(`(document.getElementById('job-editor').open = true, true)`),
		chromedp.WaitVisible(`#job-form input[name=name]`),
		typeText(`#job-form input[name=name]`, "rolling-restart"),
		set(`#job-form .param-row [data-f="name"]`, "COUNT"),
		set(`#job-form .param-row [data-f="default"]`, "2"),
		// the first step is a pause, the second a script step; then they swap places
		set(step(1, "name"), "confirm"),
		set(step(1, "kind"), "pause"),
		waitFor(`document.querySelector('#job-form .step-row [data-f="script"]').closest('[data-kinds]').hidden`),
		chromedp.Click(`#add-step`),
		set(step(2, "name"), "restart"),
		set(step(2, "script"), "restart"),
		set(step(2, "script_version"), "1"),
		set(step(2, "target"), "staging"),
		set(step(2, "account"), "nobody"),
		set(step(2, "timeout"), "2m"),
		set(step(2, "batch"), "1"),
		set(step(2, "on_failure"), "continue"),
		set(step(2, "params"), "COUNT=5"),
		chromedp.Click(`#job-form .step-row:nth-child(2) [data-do="up"]`),
		waitFor(`document.querySelector('#job-form .step-row:first-child [data-f="name"]').value === "restart"`),
		chromedp.Click(`#job-form button[type=submit]`),
		waitFor(`(function (e) { return !!e && e.classList.contains('field-error') && e.textContent.startsWith("steps[0].account") })(document.querySelector('#job-form .step-row:first-child [data-f="account"]').closest('label').nextElementSibling)`),
		set(step(1, "account"), "ops"),
		chromedp.Click(`#job-form button[type=submit]`),
	)
	var j *store.ScriptJob
	storetest.WaitFor(t, 20*time.Second, "the job to be saved", func() bool {
		var err error
		j, err = db.GetScriptJob(ctx, f.project.ID, "rolling-restart")
		return err == nil
	})
	if len(j.Params) != 1 || j.Params[0] != (store.ScriptParam{Name: "COUNT", Default: "2"}) || len(j.Steps) != 2 {
		t.Fatalf("saved job: %+v", j)
	}
	s0, s1 := j.Steps[0], j.Steps[1]
	if s0.Name != "restart" || s0.Kind != store.StepScript || s0.Script != "restart" || s0.ScriptVersion != 1 || s0.Account != "ops" ||
		s0.Target.Environment != "staging" || s0.Batch != 1 || s0.OnFailure != "continue" || time.Duration(s0.Timeout) != 2*time.Minute || s0.Params["COUNT"] != "5" {
		t.Errorf("first step: %+v", s0)
	}
	if s1.Name != "confirm" || s1.Kind != store.StepPause {
		t.Errorf("second step: %+v", s1)
	}
	settle(c, "see the job listed", `!!document.querySelector('.job[data-job="rolling-restart"] button.edit-job')`)
	c.run("load it back and see it as JSON",
		eval(`(document.querySelector('.job[data-job="rolling-restart"] button.edit-job').click(), true)`),
		waitFor(`document.querySelector('#job-form input[name=name]').value === "rolling-restart" && document.querySelectorAll('#job-form .step-row').length === 2`),
		chromedp.Click(`#job-json-toggle`),
		waitFor(`(function (j) { return j.steps[0].account === "ops" && j.steps[1].kind === "pause" && j.params[0].name === "COUNT" })(JSON.parse(document.querySelector('#job-json textarea').value))`),
	)
}

// browseFileUpload: an administrator uploads a 2 MiB file (twice what a JSON body may carry)
// with the page's file form and sees it listed with its checksum.
func browseFileUpload(t *testing.T, db *store.DB, f *pageFixture, srv *httptest.Server, c *chrome) {
	ctx := context.Background()
	content := bytes.Repeat([]byte("0123456789abcdef"), 2<<20/16)
	path := filepath.Join(t.TempDir(), "app.conf")
	must(t, os.WriteFile(path, content, 0o600))
	sum := sha256.Sum256(content)
	c.run("upload a file",
		chromedp.Navigate(srv.URL+"/projects/orders/jobs#files"),
		chromedp.WaitVisible(`#file-form button[type=submit]`),
		chromedp.SetUploadFiles(`#file-form input[type=file]`, []string{path}),
		waitFor(`document.querySelector('#file-form input[name=name]').value === "app.conf"`),
		chromedp.Click(`#file-form button[type=submit]`),
	)
	settle(c, "see the file listed", `!!document.querySelector('tr[data-file="app.conf"]') && document.querySelector('tr[data-file="app.conf"]').textContent.includes("`+hex.EncodeToString(sum[:])+`")`)
	files, err := db.ListJobFiles(ctx, f.project.ID)
	must(t, err)
	if len(files) != 1 || files[0].Size != int64(len(content)) {
		t.Errorf("files: %+v", files)
	}
}
