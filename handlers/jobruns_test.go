package handlers_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"ferry/handlers"
	"ferry/store"
	"ferry/store/storetest"
)

// jobPermRoutes adds the permission rows of accounts, scripts, jobs, runs and schedules. The
// fixture has an account "ops", a script "hello", a job on the unprotected environment (its id
// is :job), a queued run of it (:run) and a schedule of it (:schedule).
func jobPermRoutes() {
	addPermRoutes(map[string][5]int{
		"GET /api/v1/projects/:project/accounts":                 {401, 404, 200, 200, 200},
		"POST /api/v1/projects/:project/accounts":                {401, 404, 403, 403, 201},
		"DELETE /api/v1/projects/:project/accounts/:account":     {401, 404, 403, 403, 204},
		"GET /api/v1/projects/:project/scripts":                  {401, 404, 200, 200, 200},
		"POST /api/v1/projects/:project/scripts":                 {401, 404, 403, 403, 201},
		"GET /api/v1/projects/:project/scripts/:script":          {401, 404, 200, 200, 200},
		"GET /api/v1/projects/:project/scripts/:script/versions": {401, 404, 200, 200, 200},
		"GET /api/v1/projects/:project/files":                    {401, 404, 200, 200, 200},
		"POST /api/v1/projects/:project/files":                   {401, 404, 403, 403, 201},
		"GET /api/v1/projects/:project/jobs":                     {401, 404, 200, 200, 200},
		"POST /api/v1/projects/:project/jobs":                    {401, 404, 201, 201, 201},
		"GET /api/v1/projects/:project/schedules":                {401, 404, 200, 200, 200},
		"POST /api/v1/projects/:project/schedules":               {401, 404, 201, 201, 201},
		"PATCH /api/v1/projects/:project/schedules/:schedule":    {401, 404, 200, 200, 200},
		"DELETE /api/v1/projects/:project/schedules/:schedule":   {401, 404, 204, 204, 204},
		"PUT /api/v1/hosts/:host/labels":                         {401, 403, 403, 403, 200},
		"GET /api/v1/jobs/:job":                                  {401, 404, 200, 200, 200},
		"POST /api/v1/jobs/:job/trigger-token":                   {401, 404, 201, 201, 201},
		"POST /api/v1/jobs/:job/runs":                            {401, 404, 201, 201, 201},
		"GET /api/v1/jobs/:job/runs":                             {401, 404, 200, 200, 200},
		// Without X-Ferry-Trigger-Token nobody triggers, logged in or not.
		"POST /api/v1/jobs/:job/trigger":   {401, 401, 401, 401, 401},
		"GET /api/v1/runs/:run":            {401, 404, 200, 200, 200},
		"GET /api/v1/runs/:run/log":        {401, 404, 200, 200, 200},
		"GET /api/v1/runs/:run/log/stream": {401, 404, 426, 426, 426},
		"POST /api/v1/runs/:run/cancel":    {401, 404, 200, 200, 200},
		// The fixture's run is queued: there is no pause to continue and nothing failed to retry.
		"POST /api/v1/runs/:run/continue": {401, 404, 409, 409, 409},
		"POST /api/v1/runs/:run/retry":    {401, 404, 400, 400, 400},
		// ... and it awaits no approval.
		"POST /api/v1/runs/:run/approve": {401, 404, 409, 409, 409},
		"POST /api/v1/runs/:run/reject":  {401, 404, 409, 409, 409},
		"GET /projects/:project/jobs":    {303, 404, 200, 200, 200},
		"GET /runs/:run":                 {303, 404, 200, 200, 200},
	}, map[string]string{
		"POST /api/v1/projects/:project/accounts":             `{"name":"{uniq}","user":"deploy","private_key":{key}}`,
		"POST /api/v1/projects/:project/scripts":              `{"name":"{uniq}","language":"bash","body":"echo hi"}`,
		"POST /api/v1/projects/:project/files":                `{"name":"{uniq}","content":"aGkK"}`,
		"POST /api/v1/projects/:project/jobs":                 `{"name":"{uniq}","steps":[{"name":"s","kind":"script","script":"hello","account":"ops","target":{"environment":"unprot"}}]}`,
		"POST /api/v1/projects/:project/schedules":            `{"job":"unprot-job","cron":"0 3 * * *","time_zone":"Asia/Shanghai"}`,
		"PATCH /api/v1/projects/:project/schedules/:schedule": `{"enabled":false}`,
		"PUT /api/v1/hosts/:host/labels":                      `{"labels":["web"]}`,
		"POST /api/v1/jobs/:job/runs":                         `{}`,
		"POST /api/v1/jobs/:job/trigger":                      `{}`,
	}, func(t *testing.T, db *store.DB, fx *permFixture) {
		fix := newJobsFixture(t, db, fx.project)
		fx.params["account"] = "ops"
		fx.params["script"] = "hello"
		fx.params["job"] = strconv.FormatInt(fix.unprot.ID, 10)
		fx.params["run"] = strconv.FormatInt(fix.run.ID, 10)
		fx.params["schedule"] = strconv.FormatInt(fix.schedule.ID, 10)
	})
}

// jobsFixture is what jobPermRoutes' fixture maker makes in a project with the environments
// "unprot" and "prot" of the permission fixture.
type jobsFixture struct {
	unprot, prot *store.ScriptJob
	run          *store.JobRun
	schedule     *store.JobSchedule
}

func newJobsFixture(t *testing.T, db *store.DB, project string) *jobsFixture {
	t.Helper()
	ctx := context.Background()
	admin := mustGetUser(t, db, "boss")
	as := store.WithActor(ctx, store.Actor{UserID: admin.ID, Name: admin.Name})
	p, err := db.GetProject(ctx, project)
	must(t, err)
	key, _ := testKeys(t)
	must(t, db.CreateExecAccount(as, &store.ExecAccount{ProjectID: p.ID, Name: "ops", User: "deploy", PrivateKey: key}))
	_, err = db.SaveScript(as, &store.Script{ProjectID: p.ID, Name: "hello", Language: store.LangBash, Body: "echo hello"})
	must(t, err)
	step := func(env string) []store.JobStepDef {
		return []store.JobStepDef{{Name: "hello", Kind: store.StepScript, Script: "hello", Account: "ops", Target: store.JobTarget{Environment: env}}}
	}
	f := &jobsFixture{}
	f.unprot, err = db.SaveScriptJob(as, &store.ScriptJob{ProjectID: p.ID, Name: "unprot-job", Steps: step("unprot")})
	must(t, err)
	f.prot, err = db.SaveScriptJob(as, &store.ScriptJob{ProjectID: p.ID, Name: "prot-job", Steps: step("prot")})
	must(t, err)
	f.run, err = db.CreateJobRun(as, store.NewJobRun{JobID: f.unprot.ID, TriggeredBy: "test", AsUserID: admin.ID})
	must(t, err)
	f.schedule, err = db.CreateJobSchedule(as, &store.JobSchedule{ProjectID: p.ID, JobID: f.unprot.ID, Cron: "0 3 * * *", TimeZone: "UTC", Enabled: true})
	must(t, err)
	return f
}

// Each right of jobs, tried from the side: a member without the production right reaching a
// protected environment by every way there is.
func TestJobRightsCannotBeGotAround(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		h := handlers.New(handlers.Config{DB: db, BaseURL: testBaseURL}).Handler()
		ctx := context.Background()
		mustUser(t, db, "boss", true)
		mem := mustUser(t, db, "mem", false)
		prodmem := mustUser(t, db, "prodmem", false)
		outsider := mustUser(t, db, "outsider", false)
		key, _ := testKeys(t)
		p := &store.Project{Name: "shop", GitLabPath: "g/shop", CloneURL: "https://x/y.git", Trigger: store.DefaultTrigger()}
		must(t, db.CreateProject(ctx, p))
		must(t, db.CreateHost(ctx, &store.Host{Name: "web-1", Address: "10.0.0.9", Port: 22, User: "deploy", PrivateKey: key}))
		must(t, db.CreateHost(ctx, &store.Host{Name: "prod-1", Address: "10.0.0.7", Port: 22, User: "deploy", PrivateKey: key}))
		must(t, db.CreateEnvironment(ctx, &store.Environment{ProjectID: p.ID, Name: "unprot", Hosts: []string{"web-1"}}))
		must(t, db.CreateEnvironment(ctx, &store.Environment{ProjectID: p.ID, Name: "prot", Hosts: []string{"prod-1"}, Protected: true}))
		for name, production := range map[string]bool{"mem": false, "prodmem": true} {
			_, err := db.SetMember(ctx, p.ID, name, production)
			must(t, err)
		}
		fix := newJobsFixture(t, db, "shop")
		member, production := tokenClient(t, h, db, mem), tokenClient(t, h, db, prodmem)
		runPath := fmt.Sprintf("/api/v1/jobs/%d/runs", fix.prot.ID)

		// Running the job on the protected environment.
		if r := member.do("POST", runPath, `{}`); r.status != http.StatusForbidden || !strings.Contains(r.errorText(t), "production right") {
			t.Errorf("member runs on prot: %d %s", r.status, r.body)
		}
		// A job of its own naming the protected host in a host list, or by a label.
		_, err := db.SetHostLabels(ctx, "prod-1", []string{"web"})
		must(t, err)
		for _, target := range []string{`{"hosts":["prod-1"]}`, `{"label":"web"}`} {
			var j store.ScriptJob
			member.must(http.StatusCreated, "POST", "/api/v1/projects/shop/jobs", `{"name":"sneaky-`+strconv.Itoa(len(target))+`","steps":[{"name":"s","kind":"script","script":"hello","account":"ops","target":`+target+`}]}`).decode(t, &j)
			if r := member.do("POST", fmt.Sprintf("/api/v1/jobs/%d/runs", j.ID), `{}`); r.status != http.StatusForbidden {
				t.Errorf("member runs a job targeting %s: %d %s", target, r.status, r.body)
			}
		}
		// A trigger token the member made acts with the member's rights.
		var tok struct {
			Token string `json:"token"`
		}
		member.must(http.StatusCreated, "POST", fmt.Sprintf("/api/v1/jobs/%d/trigger-token", fix.prot.ID), "").decode(t, &tok)
		req := httptest.NewRequest("POST", fmt.Sprintf("/api/v1/jobs/%d/trigger", fix.prot.ID), strings.NewReader(`{}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Ferry-Trigger-Token", tok.Token)
		if r := (&client{t: t, h: h}).send(req); r.status != http.StatusForbidden {
			t.Errorf("the member's trigger token runs on prot: %d %s", r.status, r.body)
		}
		// A schedule the member made fires without a run on the protected environment.
		as := store.WithActor(ctx, store.Actor{UserID: mem.ID, Name: mem.Name})
		sneaky, err := db.CreateJobSchedule(as, &store.JobSchedule{ProjectID: p.ID, JobID: fix.prot.ID, Cron: "* * * * *", TimeZone: "UTC", Enabled: true})
		must(t, err)
		db.Now = func() time.Time { return time.Now().Add(90 * time.Second) }
		fired, err := db.FireDueSchedules(ctx)
		db.Now = time.Now
		must(t, err)
		for _, f := range fired {
			if f.ScheduleID == sneaky.ID && (f.RunID != 0 || store.ErrorCode(f.Err) != store.EFORBIDDEN) {
				t.Errorf("the member's schedule fired: run %d, err %v", f.RunID, f.Err)
			}
		}
		if len(fired) == 0 {
			t.Error("the member's schedule did not come due")
		}
		// A run on the protected environment someone with the right started: the member may
		// neither cancel nor retry it.
		var run store.JobRun
		production.must(http.StatusCreated, "POST", runPath, `{}`).decode(t, &run)
		for _, op := range []string{"cancel", "continue", "retry"} {
			if r := member.do("POST", fmt.Sprintf("/api/v1/runs/%d/%s", run.ID, op), ""); r.status != http.StatusForbidden {
				t.Errorf("member %s on a prot run: %d %s", op, r.status, r.body)
			}
		}
		production.must(http.StatusOK, "POST", fmt.Sprintf("/api/v1/runs/%d/cancel", run.ID), "")
		// Parameters the job does not have are refused, so they cannot shadow the shell's.
		if r := production.do("POST", fmt.Sprintf("/api/v1/jobs/%d/runs", fix.unprot.ID), `{"params":{"PATH":"/tmp"}}`); r.status != http.StatusBadRequest {
			t.Errorf("unknown parameter PATH: %d %s", r.status, r.body)
		}
		// Someone outside the project sees none of it.
		out := tokenClient(t, h, db, outsider)
		for _, path := range []string{fmt.Sprintf("/api/v1/runs/%d", run.ID), fmt.Sprintf("/api/v1/jobs/%d", fix.prot.ID), "/api/v1/projects/shop/scripts"} {
			if r := out.do("GET", path, ""); r.status != http.StatusNotFound {
				t.Errorf("outsider GET %s: %d", path, r.status)
			}
		}
		// Scripts and accounts are the administrators'.
		if r := production.do("POST", "/api/v1/projects/shop/scripts", `{"name":"hello","language":"bash","body":"rm -rf /"}`); r.status != http.StatusForbidden {
			t.Errorf("production member edits a script: %d", r.status)
		}
		// And the account's key is never shown.
		if r := production.must(http.StatusOK, "GET", "/api/v1/projects/shop/accounts", ""); strings.Contains(r.body, "PRIVATE KEY") {
			t.Errorf("the account list shows a key: %s", r.body)
		}
	})
}

// The jobs page and a run page, in English and Chinese, as a member sees them.
func TestJobPagesInBothLanguages(t *testing.T) {
	db := storetest.Open(t, store.SQLite)
	h := handlers.New(handlers.Config{DB: db, BaseURL: testBaseURL}).Handler()
	ctx := context.Background()
	mustUser(t, db, "boss", true)
	mem := mustUser(t, db, "mem", false)
	key, _ := testKeys(t)
	p := &store.Project{Name: "shop", GitLabPath: "g/shop", CloneURL: "https://x/y.git", Trigger: store.DefaultTrigger()}
	must(t, db.CreateProject(ctx, p))
	must(t, db.CreateHost(ctx, &store.Host{Name: "web-1", Address: "10.0.0.9", Port: 22, User: "deploy", PrivateKey: key}))
	must(t, db.CreateEnvironment(ctx, &store.Environment{ProjectID: p.ID, Name: "unprot", Hosts: []string{"web-1"}}))
	must(t, db.CreateEnvironment(ctx, &store.Environment{ProjectID: p.ID, Name: "prot", Protected: true}))
	_, err := db.SetMember(ctx, p.ID, "mem", false)
	must(t, err)
	fix := newJobsFixture(t, db, "shop")
	member := sessionClient(t, h, db, mem)
	for _, c := range []struct{ lang, jobs, run string }{{"en", "Recent runs", "Run "}, {"zh", "最近的执行", "执行 "}} {
		req := httptest.NewRequest("GET", "/projects/shop/jobs?script=hello", nil)
		req.AddCookie(&http.Cookie{Name: "ferry_lang", Value: c.lang})
		r := member.send(req)
		if r.status != http.StatusOK || !strings.Contains(r.body, c.jobs) || !strings.Contains(r.body, "unprot-job") || !strings.Contains(r.body, `href="/runs/`) {
			t.Errorf("%s jobs page: %d\n%.2000s", c.lang, r.status, r.body)
		}
		if strings.Contains(r.body, `class="api script-editor"`) {
			t.Errorf("%s: a member is offered the script editor", c.lang)
		}
		req = httptest.NewRequest("GET", fmt.Sprintf("/runs/%d", fix.run.ID), nil)
		req.AddCookie(&http.Cookie{Name: "ferry_lang", Value: c.lang})
		r = member.send(req)
		if r.status != http.StatusOK || !strings.Contains(r.body, c.run+strconv.FormatInt(fix.run.ID, 10)) ||
			!strings.Contains(r.body, `data-step="1" data-host="web-1"`) || !strings.Contains(r.body, "/log/stream") {
			t.Errorf("%s run page: %d\n%.3000s", c.lang, r.status, r.body)
		}
	}
	// An administrator gets the editor with line numbers, holding the script's body.
	admin := sessionClient(t, h, db, mustGetUser(t, db, "boss"))
	r := admin.must(http.StatusOK, "GET", "/projects/shop/jobs?script=hello", "")
	if !strings.Contains(r.body, `<pre class="gutter"`) || !strings.Contains(r.body, ">echo hello</textarea>") || !strings.Contains(r.body, "Save as version 2") {
		t.Errorf("the script editor: %.4000s", r.body)
	}
}

// A run's live log streams over WebSocket as a deployment's does; ?step=&host= keeps one
// host's lines of one step, ?step= alone a step's, ?host= alone a host's; a stranger cannot
// open it.
func TestJobRunLogStream(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		s := newStreamServer(t, db)
		ctx := context.Background()
		admin := mustGetUser(t, db, "boss")
		as := store.WithActor(ctx, store.Actor{UserID: admin.ID, Name: admin.Name})
		p, err := db.GetProject(ctx, "orders")
		must(t, err)
		key, _ := testKeys(t)
		must(t, db.CreateExecAccount(as, &store.ExecAccount{ProjectID: p.ID, Name: "ops", User: "deploy", PrivateKey: key}))
		_, err = db.SaveScript(as, &store.Script{ProjectID: p.ID, Name: "hello", Language: store.LangBash, Body: "echo hello"})
		must(t, err)
		j, err := db.SaveScriptJob(as, &store.ScriptJob{ProjectID: p.ID, Name: "hello", Steps: []store.JobStepDef{
			{Name: "hello", Kind: store.StepScript, Script: "hello", Account: "ops", Target: store.JobTarget{Environment: "staging"}}}})
		must(t, err)
		run, err := db.CreateJobRun(as, store.NewJobRun{JobID: j.ID, TriggeredBy: "test", AsUserID: admin.ID})
		must(t, err)
		writeLines(t, db, store.JobRunLog, run.ID, store.RunLogHost(1, "web1"), "one from web1")
		writeLines(t, db, store.JobRunLog, run.ID, store.RunLogHost(1, "web2"), "one from web2")
		all := s.mustDial(t, fmt.Sprintf("/api/v1/runs/%d/log/stream", run.ID), s.member)
		if got := readLines(t, all, 2); got[0] != "one from web1" || got[1] != "one from web2" {
			t.Errorf("all lines: %q", got)
		}
		one := s.mustDial(t, fmt.Sprintf("/api/v1/runs/%d/log/stream?step=1&host=web2", run.ID), s.member)
		step1 := s.mustDial(t, fmt.Sprintf("/api/v1/runs/%d/log/stream?step=1", run.ID), s.member)
		web2 := s.mustDial(t, fmt.Sprintf("/api/v1/runs/%d/log/stream?host=web2", run.ID), s.member)
		writeLines(t, db, store.JobRunLog, run.ID, store.RunLogHost(1, "web1"), "two from web1")
		writeLines(t, db, store.JobRunLog, run.ID, store.RunLogHost(1, "web2"), "two from web2")
		writeLines(t, db, store.JobRunLog, run.ID, store.RunLogHost(2, "web2"), "step 2 from web2")
		writeLines(t, db, store.JobRunLog, run.ID, store.RunLogHost(2, "web1"), "step 2 from web1")
		if got := readLines(t, one, 2); got[0] != "one from web2" || got[1] != "two from web2" {
			t.Errorf("web2's lines of step 1: %q", got)
		}
		if got := readLines(t, all, 4); got[0] != "two from web1" || got[1] != "two from web2" || got[2] != "step 2 from web2" {
			t.Errorf("live lines: %q", got)
		}
		// ?step= alone keeps every host's lines of that step; ?host= alone that host's of every step.
		if got := readLines(t, step1, 4); strings.Join(got, "|") != "one from web1|one from web2|two from web1|two from web2" {
			t.Errorf("step 1's lines: %q", got)
		}
		if got := readLines(t, web2, 3); strings.Join(got, "|") != "one from web2|two from web2|step 2 from web2" {
			t.Errorf("web2's lines of every step: %q", got)
		}
		if _, resp, err := s.dial(t, fmt.Sprintf("/api/v1/runs/%d/log/stream", run.ID), s.stranger, ""); err == nil || resp == nil || resp.StatusCode != http.StatusNotFound {
			t.Errorf("a stranger opened the stream: %v", err)
		}
	})
}

// A run reaching an environment that needs an approval waits for one from someone other than
// the person it acts for, who may run the job there; a rejection ends it.
func TestJobRunApprovals(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		h := handlers.New(handlers.Config{DB: db, BaseURL: testBaseURL}).Handler()
		ctx := context.Background()
		mustUser(t, db, "boss", true)
		users := map[string]*store.User{}
		for _, name := range []string{"mem", "prodmem", "prodmem2"} {
			users[name] = mustUser(t, db, name, false)
		}
		key, _ := testKeys(t)
		p := &store.Project{Name: "shop", GitLabPath: "g/shop", CloneURL: "https://x/y.git", Trigger: store.DefaultTrigger()}
		must(t, db.CreateProject(ctx, p))
		must(t, db.CreateHost(ctx, &store.Host{Name: "web-1", Address: "10.0.0.9", Port: 22, User: "deploy", PrivateKey: key}))
		must(t, db.CreateHost(ctx, &store.Host{Name: "prod-1", Address: "10.0.0.7", Port: 22, User: "deploy", PrivateKey: key}))
		must(t, db.CreateEnvironment(ctx, &store.Environment{ProjectID: p.ID, Name: "unprot", Hosts: []string{"web-1"}}))
		must(t, db.CreateEnvironment(ctx, &store.Environment{ProjectID: p.ID, Name: "prot", Hosts: []string{"prod-1"}, Protected: true, ApprovalsRequired: 1}))
		for name, production := range map[string]bool{"mem": false, "prodmem": true, "prodmem2": true} {
			_, err := db.SetMember(ctx, p.ID, name, production)
			must(t, err)
		}
		fix := newJobsFixture(t, db, "shop")
		member, asker, approver := tokenClient(t, h, db, users["mem"]), tokenClient(t, h, db, users["prodmem"]), tokenClient(t, h, db, users["prodmem2"])
		var run store.JobRun
		asker.must(http.StatusCreated, "POST", fmt.Sprintf("/api/v1/jobs/%d/runs", fix.prot.ID), "").decode(t, &run)
		if run.Status != store.RunAwaitingApproval || run.ApprovalsRequired != 1 {
			t.Fatalf("run on an environment needing approval: %s, %d approvals", run.Status, run.ApprovalsRequired)
		}
		approve := fmt.Sprintf("/api/v1/runs/%d/approve", run.ID)
		if r := asker.do("POST", approve, `{"comment":"me"}`); r.status != http.StatusForbidden {
			t.Errorf("the requester approved: %d %s", r.status, r.body)
		}
		if r := member.do("POST", approve, ""); r.status != http.StatusForbidden {
			t.Errorf("a member without the production right approved: %d %s", r.status, r.body)
		}
		page := sessionClient(t, h, db, users["prodmem2"]).must(http.StatusOK, "GET", fmt.Sprintf("/runs/%d", run.ID), "")
		if !strings.Contains(page.body, `id="approve"`) || !strings.Contains(page.body, "1 approval(s) needed") {
			t.Errorf("the run page offers no approval: %.3000s", page.body)
		}
		approver.must(http.StatusOK, "POST", approve, `{"comment":"looks right"}`).decode(t, &run)
		if run.Status != store.RunQueued || len(run.Approvals) != 1 || run.Approvals[0].User != "prodmem2" || run.Approvals[0].Comment != "looks right" {
			t.Errorf("after an approval: %s %+v", run.Status, run.Approvals)
		}
		// A second one is rejected: it ends canceled, saying by whom.
		asker.must(http.StatusCreated, "POST", fmt.Sprintf("/api/v1/jobs/%d/runs", fix.prot.ID), "").decode(t, &run)
		approver.must(http.StatusOK, "POST", fmt.Sprintf("/api/v1/runs/%d/reject", run.ID), `{"comment":"not today"}`).decode(t, &run)
		if run.Status != store.RunCanceled || !strings.Contains(run.Error, "rejected by prodmem2: not today") {
			t.Errorf("after a rejection: %s %q", run.Status, run.Error)
		}
	})
}
