package handlers_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"ferry/store"
	"ferry/store/storetest"
)

// autoDeployEnv is a buildEnv whose trigger deploys good builds of main to the protected
// environment prod, with a member who lacks the production right (mallory) and one who has
// it (pat).
type autoDeployEnv struct {
	*buildEnv
	mallory, pat *client
}

func newAutoDeployEnv(t *testing.T, db *store.DB) *autoDeployEnv {
	e := &autoDeployEnv{buildEnv: newBuildEnv(t, db)}
	pem, hostKey := testKeys(t)
	e.admin.must(http.StatusCreated, "POST", "/api/v1/hosts", fmt.Sprintf(`{"name":"prod1","address":"10.0.0.1","user":"deploy","private_key":%s,"host_key":%s}`, jsonString(pem), jsonString(hostKey)))
	e.admin.must(http.StatusCreated, "POST", "/api/v1/projects/app/environments", `{"name":"prod","hosts":["prod1"],"protected":true}`)
	e.admin.must(http.StatusOK, "PATCH", "/api/v1/projects/app", `{"trigger":{"branches":["main"],"keyword":"devops","deploy":{"main":"prod"}}}`)
	e.mallory = tokenClient(t, e.h, db, mustUser(t, db, "mallory", false))
	e.pat = tokenClient(t, e.h, db, mustUser(t, db, "pat", false))
	e.admin.must(http.StatusCreated, "POST", "/api/v1/projects/app/members", `{"user":"mallory","production":false}`)
	e.admin.must(http.StatusCreated, "POST", "/api/v1/projects/app/members", `{"user":"pat","production":true}`)
	return e
}

// deploymentsOf lists the deployments build id queued.
func (e *autoDeployEnv) deploymentsOf(id int64) []store.Deployment {
	e.t.Helper()
	var all []store.Deployment
	e.admin.must(http.StatusOK, "GET", "/api/v1/projects/app/deployments", "").decode(e.t, &all)
	var mine []store.Deployment
	for _, d := range all {
		if d.BuildID != nil && *d.BuildID == id {
			mine = append(mine, d)
		}
	}
	return mine
}

func (e *autoDeployEnv) buildLog(id int64) string {
	e.t.Helper()
	var log struct{ Lines []store.LogLine }
	e.admin.must(http.StatusOK, "GET", fmt.Sprintf("/api/v1/builds/%d/log", id), "").decode(e.t, &log)
	var b strings.Builder
	for _, l := range log.Lines {
		b.WriteString(l.Text + "\n")
	}
	return b.String()
}

// apiBuild asks for a build as c and waits for it to succeed.
func (e *autoDeployEnv) apiBuild(c *client, body string) store.Build {
	e.t.Helper()
	var b store.Build
	c.must(http.StatusCreated, "POST", "/api/v1/projects/app/builds", body).decode(e.t, &b)
	if got := e.waitBuild(b.ID); got.Status != store.BuildSuccess {
		e.t.Fatalf("build %s ended %s %q; want success (a refused deployment does not fail the build)", body, got.Status, got.Error)
	}
	return b
}

// The attack of issue 11 item 2: a member without the production right builds a commit as
// "main" and lets the trigger carry it to the protected environment.
func TestAPIBuildOfMemberWithoutRightDoesNotReachProtected(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newAutoDeployEnv(t, db)
		old := e.commit("old work", "old")
		tip := e.commit("new work", "new")

		// Any commit of main, named as main: not the tip, so nothing deploys.
		b := e.apiBuild(e.mallory, `{"sha":"`+old+`","ref":"main"}`)
		if d := e.deploymentsOf(b.ID); len(d) != 0 {
			t.Fatalf("mallory's build of an old commit queued %+v", d)
		}
		if log := e.buildLog(b.ID); !strings.Contains(log, "deployment to prod not queued: commit "+old[:8]+" is not the tip of branch main") {
			t.Errorf("log of the old commit's build does not say why nothing deployed:\n%s", log)
		}
		// The tip itself: still not, for mallory has no production right.
		b = e.apiBuild(e.mallory, `{"ref":"main"}`)
		if b.SHA != tip {
			t.Fatalf("build of main is %s, want the tip %s", b.SHA, tip)
		}
		if d := e.deploymentsOf(b.ID); len(d) != 0 {
			t.Fatalf("mallory's build of main queued %+v", d)
		}
		if log := e.buildLog(b.ID); !strings.Contains(log, "deployment not queued: prod is protected, and mallory, who asked for this build, has no production right") {
			t.Errorf("log of mallory's build of the tip does not say why nothing deployed:\n%s", log)
		}
	})
}

// The allowed path: a member with the production right builds main, and it deploys.
func TestAPIBuildOfMemberWithRightDeploysToProtected(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newAutoDeployEnv(t, db)
		e.commit("work", "one")
		b := e.apiBuild(e.pat, `{"ref":"main"}`)
		d := e.deploymentsOf(b.ID)
		if len(d) != 1 || d[0].Environment != "prod" {
			t.Fatalf("pat's build of main queued %+v, want one deployment to prod", d)
		}
		if log := e.buildLog(b.ID); !strings.Contains(log, fmt.Sprintf("queued deployment %d of this version to prod", d[0].ID)) {
			t.Errorf("log:\n%s", log)
		}
	})
}

// The webhook attack: a push of main whose checkout_sha is a commit that is not on main.
func TestWebhookCommitNotOnPushedBranchDoesNotDeploy(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newAutoDeployEnv(t, db)
		e.commit("base", "base")
		e.git("checkout", "--quiet", "-b", "experiment")
		side := e.commit("untested [devops]", "side")
		e.git("checkout", "--quiet", "main")
		mainTip := e.git("rev-parse", "main")

		var ans hookAnswer
		r := e.hook("Push Hook", "hook-secret", "", pushBody(t, "group/app", "main", side, "untested [devops]"))
		r.decode(t, &ans)
		if ans.Build == 0 {
			t.Fatalf("webhook %d %s: no build", r.status, r.body)
		}
		if b := e.waitBuild(ans.Build); b.Status != store.BuildSuccess {
			t.Fatalf("build ended %s %q", b.Status, b.Error)
		}
		if d := e.deploymentsOf(ans.Build); len(d) != 0 {
			t.Fatalf("a push naming a commit off main queued %+v", d)
		}
		want := "deployment to prod not queued: commit " + side[:8] + " is not the tip of branch main as just fetched (the tip is " + mainTip[:8] + ")"
		if log := e.buildLog(ans.Build); !strings.Contains(log, want) {
			t.Errorf("build log does not say %q:\n%s", want, log)
		}
		var events []store.Event
		e.admin.must(http.StatusOK, "GET", "/api/v1/projects/app/events", "").decode(t, &events)
		if len(events) != 1 || !strings.Contains(events[0].Reason, want) {
			t.Errorf("events = %+v, want the reason to say %q", events, want)
		}
	})
}

// The allowed webhook path: a real push of main's tip deploys to the protected environment.
func TestWebhookPushOfBranchTipDeploysToProtected(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newAutoDeployEnv(t, db)
		tip := e.commit("ship it [devops]", "one")
		var ans hookAnswer
		e.hook("Push Hook", "hook-secret", "", pushBody(t, "group/app", "main", tip, "ship it [devops]")).decode(t, &ans)
		if b := e.waitBuild(ans.Build); b.Status != store.BuildSuccess || b.Source != store.BuildSourcePush {
			t.Fatalf("build = %s %q, source %q", b.Status, b.Error, b.Source)
		}
		if d := e.deploymentsOf(ans.Build); len(d) != 1 || d[0].Environment != "prod" {
			t.Fatalf("the push of main's tip queued %+v, want one deployment to prod", d)
		}
	})
}
