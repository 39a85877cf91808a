package handlers_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"ferry/store"
	"ferry/store/storetest"
)

// An administrator writes a script in the editor (the line numbers follow the text), saves it,
// saves a second version, runs a job from the jobs page and stops it from its run page.
func TestBrowserScriptEditorAndRunPage(t *testing.T) {
	db, f, srv, c := adminInBrowser(t)
	ctx := context.Background()
	as := store.WithActor(ctx, store.Actor{UserID: f.admin.ID, Name: f.admin.Name})
	must(t, db.CreateExecAccount(as, &store.ExecAccount{ProjectID: f.project.ID, Name: "ops", User: "deploy", PrivateKey: f.privateKey}))
	jobs := srv.URL + "/projects/orders/jobs"
	c.run("write a script",
		chromedp.Navigate(jobs),
		chromedp.WaitVisible(`#editor textarea`),
		typeText(`#editor input[name=name]`, "restart"),
		typeText(`#editor textarea`, "echo one\necho two\necho \"$COUNT\""),
		waitFor(`document.querySelector('#editor .gutter').textContent.trim() === "1\n2\n3"`),
		chromedp.Click(`#editor button[type=submit]`),
	)
	var sc *store.Script
	storetest.WaitFor(t, 20*time.Second, "the script to be saved", func() bool {
		var err error
		sc, err = db.GetScript(ctx, f.project.ID, "restart", 0)
		return err == nil
	})
	settle(c, "see the script listed", `!!document.querySelector('table.scripts a[href$="script=restart#editor"]')`)
	if sc.Version != 1 || sc.Body != "echo one\necho two\necho \"$COUNT\"" || sc.Language != store.LangBash {
		t.Fatalf("saved script: %+v", sc)
	}
	c.run("save a second version",
		chromedp.Navigate(jobs+"?script=restart"),
		chromedp.WaitVisible(`#editor textarea`),
		waitFor(`document.querySelector('#editor .gutter').textContent.trim() === "1\n2\n3"`),
		chromedp.Focus(`#editor textarea`),
		eval(`(function (t) { t.setSelectionRange(t.value.length, t.value.length); return true })(document.querySelector('#editor textarea'))`),
		typeText(`#editor textarea`, "\necho four"),
		waitFor(`document.querySelector('#editor .gutter').textContent.trim() === "1\n2\n3\n4"`),
		chromedp.Click(`#editor button[type=submit]`),
	)
	storetest.WaitFor(t, 20*time.Second, "version 2 of the script", func() bool {
		sc, _ = db.GetScript(ctx, f.project.ID, "restart", 0)
		return sc != nil && sc.Version == 2 && sc.Body == "echo one\necho two\necho \"$COUNT\"\necho four"
	})
	j, err := db.SaveScriptJob(as, &store.ScriptJob{ProjectID: f.project.ID, Name: "restart-web",
		Params: []store.ScriptParam{{Name: "COUNT", Default: "1"}},
		Steps:  []store.JobStepDef{{Name: "restart", Kind: store.StepScript, Script: "restart", Account: "ops", Target: store.JobTarget{Environment: "staging"}}}})
	must(t, err)
	settle(c, "the page after saving", `document.readyState === "complete" && !!document.querySelector('table.scripts tbody td:nth-child(3)') && document.querySelector('table.scripts tbody td:nth-child(3)').textContent === "2"`)
	c.run("run the job",
		chromedp.Navigate(jobs),
		chromedp.WaitVisible(`form.run-form`),
		typeText(`form.run-form input[name="params.COUNT"]`, "3"),
		chromedp.Click(`form.run-form button[type=submit]`),
	)
	settle(c, "see the run page", `!!document.querySelector('#jobrun') && document.querySelector('tr[data-step="1"][data-host="web-2"]') !== null`)
	c.run("stop the run",
		eval(`(window.confirm = () => true, true)`),
		chromedp.Click(`#cancel`),
	)
	storetest.WaitFor(t, 20*time.Second, "the run to be canceled", func() bool {
		runs, _ := db.ListJobRuns(ctx, f.project.ID, j.ID, 10)
		return len(runs) == 1 && runs[0].Status == store.RunCanceled
	})
	settle(c, "see it canceled", `!!document.querySelector('#job-status') && document.querySelector('#job-status').dataset.status === "canceled"`)
	runs, err := db.ListJobRuns(ctx, f.project.ID, j.ID, 10)
	must(t, err)
	if len(runs) != 1 || runs[0].Params["COUNT"] != "3" || runs[0].Status != store.RunCanceled {
		t.Errorf("runs: %s", fmt.Sprint(runs))
	}
	browseAccountForms(t, db, f, srv, c)
	browseJobEditor(t, db, f, srv, c)
	browseFileUpload(t, db, f, srv, c)
}

// settle waits until expr is true on the page, trying again while the page navigates (a form
// that reloads it), and fails the test after 20 seconds.
func settle(c *chrome, step, expr string) {
	c.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(c.ctx, 3*time.Second)
		err := chromedp.Do(ctx, waitFor(expr))
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			c.fail(step, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
