package handlers_test

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"ferry/store"
	"ferry/store/storetest"
)

// The deployments of the fixture are to its protected environment, so that canceling and
// retrying them needs the production right. Retrying the fixture's queued deployment is
// refused as not ended (400) once the rights are checked.
// deploymentPermRoutes adds the permission rows of these routes (see permRouteParts).
func deploymentPermRoutes() {
	addPermRoutes(map[string][5]int{
		"POST /api/v1/projects/:project/deployments":  {401, 404, 403, 201, 201},
		"GET /api/v1/projects/:project/deployments":   {401, 404, 200, 200, 200},
		"GET /api/v1/deployments/:deployment":         {401, 404, 200, 200, 200},
		"GET /api/v1/deployments/:deployment/log":     {401, 404, 200, 200, 200},
		"POST /api/v1/deployments/:deployment/cancel": {401, 404, 403, 200, 200},
		"POST /api/v1/deployments/:deployment/retry":  {401, 404, 403, 400, 400},
		"GET /api/v1/projects/:project/instances":     {401, 404, 200, 200, 200},
	}, nil, deploymentFixture)
}

// deploymentFixture adds a queued deployment to the protected environment, of the version the
// builds fixture made (its project has a running build, so no other build of it can be
// claimed to make one), and names that version in the body of the create request.
func deploymentFixture(t *testing.T, db *store.DB, fx *permFixture) {
	ctx := context.Background()
	p, err := db.GetProject(ctx, fx.project)
	must(t, err)
	var v *store.Version
	if id, err := strconv.ParseInt(fx.params["version"], 10, 64); err == nil {
		v, err = db.GetVersion(ctx, id)
		must(t, err)
	} else {
		v = deployableVersion(t, db, p.ID, storetest.Name("v"))
		fx.params["version"] = strconv.FormatInt(v.ID, 10)
	}
	routeBodies["POST /api/v1/projects/:project/deployments"] = `{"environment":"prot","version":` + jsonString(v.Name) + `}`
	env, err := db.GetEnvironment(ctx, p.ID, "prot")
	must(t, err)
	d, err := db.CreateDeployment(ctx, store.NewDeployment{ProjectID: p.ID, EnvironmentID: env.ID, VersionID: v.ID, TriggeredBy: "test"})
	must(t, err)
	fx.params["deployment"] = strconv.FormatInt(d.ID, 10)
}

// deployableVersion makes a kept version called name of the project, as a build does.
func deployableVersion(t *testing.T, db *store.DB, projectID int64, name string) *store.Version {
	t.Helper()
	ctx := context.Background()
	owner := storetest.Name("deployments-test")
	b := claimNew(t, db, projectID, owner, strings.Repeat("d1", 20))
	_, err := db.FinishBuild(ctx, b.ID, owner, store.BuildResult{Status: store.BuildSuccess, Version: &store.NewVersion{
		Name: name, SHA: b.SHA, Ref: "main", SHA256: strings.Repeat("ab", 32), Size: 10, Path: "/nowhere/" + name + ".tar.gz",
		Pipeline: "build:\n  script: [\"true\"]\n  artifact: out\ndeploy:\n  path: /opt/app\n"}})
	must(t, err)
	v, err := db.GetVersionByName(ctx, projectID, name)
	must(t, err)
	return v
}

// deployAPI is a project "shop" with environments staging (hosts web-1, web-2) and protected
// prod (db-1: a host of a protected environment is in no unprotected one), a version v1, an administrator, a member and a member with the production right.
type deployAPI struct {
	db                 *store.DB
	admin, member, ops *client
	h                  http.Handler
}

func newDeployAPI(t *testing.T, db *store.DB) *deployAPI {
	t.Helper()
	ctx := context.Background()
	h := newServer(t, db)
	a := &deployAPI{db: db, h: h,
		admin: tokenClient(t, h, db, mustUser(t, db, "boss", true)), member: tokenClient(t, h, db, mustUser(t, db, "dev", false)),
		ops: tokenClient(t, h, db, mustUser(t, db, "ops", false))}
	p := &store.Project{Name: "shop", GitLabPath: "g/shop", CloneURL: "https://x/y.git", Trigger: store.DefaultTrigger()}
	must(t, db.CreateProject(ctx, p))
	key, _ := testKeys(t)
	for _, name := range []string{"web-1", "web-2", "db-1"} {
		must(t, db.CreateHost(ctx, &store.Host{Name: name, Address: "10.0.0.1", User: "deploy", PrivateKey: key}))
	}
	must(t, db.CreateEnvironment(ctx, &store.Environment{ProjectID: p.ID, Name: "staging", Hosts: []string{"web-1", "web-2"}}))
	must(t, db.CreateEnvironment(ctx, &store.Environment{ProjectID: p.ID, Name: "prod", Hosts: []string{"db-1"}, Protected: true}))
	for name, production := range map[string]bool{"dev": false, "ops": true} {
		_, err := db.SetMember(ctx, p.ID, name, production)
		must(t, err)
	}
	deployableVersion(t, db, p.ID, "v1")
	return a
}

func TestDeployingToAProtectedEnvironmentNeedsTheProductionRight(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		a := newDeployAPI(t, db)
		r := a.member.must(http.StatusForbidden, "POST", "/api/v1/projects/shop/deployments", `{"environment":"prod","version":"v1"}`)
		if got := r.errorText(t); got != "you may not deploy to prod: deploying to a protected environment needs the production right on the project" {
			t.Errorf("refusal says %q", got)
		}
		var list []store.Deployment
		a.admin.must(http.StatusOK, "GET", "/api/v1/projects/shop/deployments", "").decode(t, &list)
		if len(list) != 0 {
			t.Fatalf("a refused request queued %v", list)
		}

		var d store.Deployment
		a.ops.must(http.StatusCreated, "POST", "/api/v1/projects/shop/deployments", `{"environment":"prod","version":"v1"}`).decode(t, &d)
		if d.ID == 0 || d.Status != store.DeploymentQueued || d.Environment != "prod" || d.Version != "v1" || d.TriggeredBy != "api by ops" ||
			len(d.Hosts) != 1 || d.Hosts[0].Host != "db-1" || d.Hosts[0].Status != store.HostWaiting {
			t.Errorf("created %+v", d)
		}
		// Canceling it is a production act too; the member sees it but may not.
		path := fmt.Sprintf("/api/v1/deployments/%d", d.ID)
		a.member.must(http.StatusOK, "GET", path, "")
		a.member.must(http.StatusForbidden, "POST", path+"/cancel", "")
		a.ops.must(http.StatusOK, "POST", path+"/cancel", "").decode(t, &d)
		if d.Status != store.DeploymentCanceled {
			t.Errorf("after cancel the deployment is %s", d.Status)
		}
		r = a.ops.must(http.StatusConflict, "POST", path+"/cancel", "")
		if !strings.Contains(r.errorText(t), "canceled") {
			t.Errorf("canceling twice says %q", r.errorText(t))
		}

		a.member.must(http.StatusCreated, "POST", "/api/v1/projects/shop/deployments", `{"environment":"staging","version":"v1","hosts":["web-2"],"strategy":{"kind":"rolling","batch":"50%"}}`).decode(t, &d)
		if len(d.Hosts) != 1 || d.Hosts[0].Host != "web-2" || d.Strategy.Kind != "rolling" || d.Strategy.Batch != "50%" {
			t.Errorf("created %+v", d)
		}
	})
}

func TestDeploymentRequestsAreCheckedInWords(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		a := newDeployAPI(t, db)
		for _, tc := range []struct{ name, body, want string }{
			{"no environment", `{"version":"v1"}`, "environment: required"},
			{"unknown environment", `{"environment":"qa","version":"v1"}`, `environment: project shop has no environment named "qa"`},
			{"no version", `{"environment":"staging"}`, "version: required"},
			{"unknown version", `{"environment":"staging","version":"v9"}`, `version: project shop has no version named "v9"`},
			{"host of another environment", `{"environment":"staging","version":"v1","hosts":["db-1"]}`, `hosts: "db-1" is not a host of environment staging (its hosts: web-1, web-2)`},
			{"host twice", `{"environment":"staging","version":"v1","hosts":["web-1","web-1"]}`, "hosts: web-1 is named twice"},
			{"bad strategy", `{"environment":"staging","version":"v1","strategy":{"kind":"yolo"}}`, `strategy.kind: "yolo" is not one of serial, parallel, rolling, canary`},
			{"unknown field", `{"environment":"staging","version":"v1","force":true}`, "force"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := a.admin.must(http.StatusBadRequest, "POST", "/api/v1/projects/shop/deployments", tc.body)
				if got := r.errorText(t); !strings.Contains(got, tc.want) {
					t.Errorf("error %q does not say %q", got, tc.want)
				}
			})
		}
		var list []store.Deployment
		a.admin.must(http.StatusOK, "GET", "/api/v1/projects/shop/deployments", "").decode(t, &list)
		if len(list) != 0 {
			t.Errorf("refused requests queued %d deployments", len(list))
		}
		a.admin.must(http.StatusNotFound, "GET", "/api/v1/deployments/999", "")
		a.admin.must(http.StatusNotFound, "GET", "/api/v1/deployments/abc", "")
		a.admin.must(http.StatusBadRequest, "GET", "/api/v1/projects/shop/deployments?environment=qa", "")
	})
}

func TestDeploymentListLogAndInstances(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		a := newDeployAPI(t, db)
		ctx := context.Background()
		var first, second store.Deployment
		a.admin.must(http.StatusCreated, "POST", "/api/v1/projects/shop/deployments", `{"environment":"staging","version":"v1"}`).decode(t, &first)
		a.admin.must(http.StatusCreated, "POST", "/api/v1/projects/shop/deployments", `{"environment":"prod","version":"v1"}`).decode(t, &second)

		var list []store.Deployment
		a.member.must(http.StatusOK, "GET", "/api/v1/projects/shop/deployments?environment=staging", "").decode(t, &list)
		if len(list) != 1 || list[0].ID != first.ID {
			t.Errorf("staging lists %+v, want deployment %d", list, first.ID)
		}
		a.member.must(http.StatusOK, "GET", "/api/v1/projects/shop/deployments?limit=1", "").decode(t, &list)
		if len(list) != 1 || list[0].ID != second.ID {
			t.Errorf("limit 1 lists %+v, want the newest, %d", list, second.ID)
		}

		logw, err := db.OpenLog(ctx, store.JobDeployment, first.ID)
		must(t, err)
		logw.Write("ferry", "", "deploying v1")
		logw.Write("stdout", "web-1", "started")
		logw.Write("stdout", "web-2", "started too")
		must(t, logw.Close())
		var page struct {
			Status string          `json:"status"`
			Lines  []store.LogLine `json:"lines"`
			Next   int64           `json:"next"`
		}
		path := fmt.Sprintf("/api/v1/deployments/%d/log", first.ID)
		a.member.must(http.StatusOK, "GET", path, "").decode(t, &page)
		if len(page.Lines) != 3 || page.Lines[1].Host != "web-1" || page.Lines[2].Text != "started too" || page.Status != store.DeploymentQueued {
			t.Errorf("log %+v", page)
		}
		a.member.must(http.StatusOK, "GET", fmt.Sprintf("%s?after=%d&host=web-2", path, page.Lines[0].Seq), "").decode(t, &page)
		if len(page.Lines) != 1 || page.Lines[0].Host != "web-2" || page.Next != page.Lines[0].Seq {
			t.Errorf("web-2's lines after the first: %+v", page)
		}
		a.member.must(http.StatusOK, "GET", fmt.Sprintf("%s?after=%d", path, page.Next), "").decode(t, &page)
		if len(page.Lines) != 0 || page.Next == 0 {
			t.Errorf("nothing new should give no lines and the same next: %+v", page)
		}
		a.member.must(http.StatusBadRequest, "GET", path+"?after=x", "")

		var instances []store.Instance
		a.member.must(http.StatusOK, "GET", "/api/v1/projects/shop/instances", "").decode(t, &instances)
		if len(instances) != 0 {
			t.Errorf("instances before any deployment ran: %+v", instances)
		}
		web1, err := db.GetHost(ctx, "web-1")
		must(t, err)
		p, err := db.GetProject(ctx, "shop")
		must(t, err)
		must(t, db.SetInstance(ctx, store.Instance{ProjectID: p.ID, HostID: web1.ID, Version: "v1", Previous: "v0",
			Releases: []string{"v1", "v0"}, Status: store.HostSucceeded, DeploymentID: &first.ID, Since: db.Now()}))
		a.member.must(http.StatusOK, "GET", "/api/v1/projects/shop/instances", "").decode(t, &instances)
		if len(instances) != 1 || instances[0].Host != "web-1" || instances[0].Version != "v1" || instances[0].Previous != "v0" ||
			len(instances[0].Releases) != 2 || instances[0].Since.IsZero() {
			t.Errorf("instances %+v", instances)
		}
	})
}
