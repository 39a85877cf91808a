package handlers_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"ferry/store"
)

// A run and a deployment awaiting approval on prod say until when, in English and in Chinese,
// and the minutes left count down while the page is open.
func TestBrowserApprovalDeadline(t *testing.T) {
	db, f, srv, c := adminInBrowser(t)
	ctx := context.Background()
	as := store.WithActor(ctx, store.Actor{UserID: f.admin.ID, Name: f.admin.Name})
	one := 1
	_, err := db.UpdateEnvironment(ctx, f.project.ID, "prod", store.EnvironmentUpdate{ApprovalsRequired: &one})
	must(t, err)
	db.ApprovalExpiry = 23*time.Minute + 20*time.Second
	must(t, db.CreateExecAccount(as, &store.ExecAccount{ProjectID: f.project.ID, Name: "ops", User: "deploy", PrivateKey: f.privateKey}))
	_, err = db.SaveScript(as, &store.Script{ProjectID: f.project.ID, Name: "hello", Language: store.LangBash, Body: "echo hello"})
	must(t, err)
	j, err := db.SaveScriptJob(as, &store.ScriptJob{ProjectID: f.project.ID, Name: "prod-hello",
		Steps: []store.JobStepDef{{Name: "hello", Kind: store.StepScript, Script: "hello", Account: "ops", Target: store.JobTarget{Environment: "prod"}}}})
	must(t, err)
	run, err := db.CreateJobRun(as, store.NewJobRun{JobID: j.ID, TriggeredBy: "api by root", AsUserID: f.admin.ID})
	must(t, err)
	dep, err := db.CreateDeployment(as, store.NewDeployment{ProjectID: f.project.ID, EnvironmentID: f.prod.ID,
		VersionID: f.version.ID, TriggeredBy: "api by root"})
	must(t, err)
	if run.Status != store.RunAwaitingApproval || run.ApprovalExpiresAt == nil || dep.Status != store.DeploymentAwaitingApproval || dep.ApprovalExpiresAt == nil {
		t.Fatalf("run %s (expires %v), deployment %s (expires %v): want both awaiting approval with an expiry",
			run.Status, run.ApprovalExpiresAt, dep.Status, dep.ApprovalExpiresAt)
	}

	for _, page := range []struct {
		path    string
		expires time.Time
		ends    string
	}{
		{fmt.Sprintf("/runs/%d", run.ID), *run.ApprovalExpiresAt, "Not approved by then, it ends as canceled."},
		{fmt.Sprintf("/deployments/%d", dep.ID), *dep.ApprovalExpiresAt, "Not approved by then, it ends as rejected."},
	} {
		until := page.expires.UTC().Format("15:04") + " UTC"
		if page.expires.UTC().Format(time.DateOnly) != time.Now().UTC().Format(time.DateOnly) {
			until = page.expires.UTC().Format("2006-01-02 15:04") + " UTC"
		}
		c.run("open "+page.path,
			chromedp.Navigate(srv.URL+page.path),
			chromedp.WaitVisible(`#approval-deadline`),
		)
		if text, want := c.text("read "+page.path, `#approval-deadline`), "Awaiting approval until "+until+" (in 23 min). "+page.ends; text != want {
			t.Errorf("%s says %q, want %q", page.path, text, want)
		}
		// The page left open counts down: 2 h 05 min before the deadline it says so.
		c.run("move the deadline of "+page.path,
			eval(`(e => { e.dataset.until = new Date(Date.now() + (2*3600 + 5*60 + 10) * 1000).toISOString(); return true })(document.querySelector('#approval-deadline'))`),
		)
		settle(c, "count down on "+page.path, `document.querySelector('#approval-deadline .until').textContent === "Awaiting approval until `+until+` (in 2 h 05 min)."`)

		c.run("open "+page.path+" in Chinese",
			chromedp.Navigate(srv.URL+"/lang/zh?next="+page.path),
			chromedp.WaitVisible(`#approval-deadline`),
		)
		if text, want := c.text("read "+page.path+" in Chinese", `#approval-deadline .until`), "等待审批，截止 "+until+"（23 分钟后）。"; text != want {
			t.Errorf("%s in Chinese says %q, want %q", page.path, text, want)
		}
		c.run("back to English", chromedp.Navigate(srv.URL+"/lang/en?next="+page.path), chromedp.WaitVisible(`#approval-deadline`))
	}
}
