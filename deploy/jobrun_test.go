package deploy_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"ferry/deploy"
	"ferry/deploy/sshtest"
	"ferry/handlers"
	"ferry/store"
	"ferry/store/storetest"
)

// jobFixture is the deploy fixture (project shop, environment staging on three real sshd
// hosts) with an execution account, a job runner and the API that wakes it.
type jobFixture struct {
	*deployFixture
	runner     *deploy.JobRunner
	stopRunner func()
}

func newJobFixture(t *testing.T, db *store.DB) *jobFixture {
	t.Helper()
	f := &jobFixture{deployFixture: newDeployFixture(t, db, 3, workerOptions{noWorker: true})}
	f.runner, f.stopRunner = startJobRunner(t, db)
	f.srv = handlers.New(handlers.Config{DB: db, BaseURL: "https://ferry.example.com", JobRunner: f.runner,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))}).Handler()
	f.api.h = f.srv
	f.api.must(http.StatusCreated, "POST", "/api/v1/projects/shop/accounts",
		fmt.Sprintf(`{"name":"ops","user":"root","private_key":%q}`, string(f.cluster.ClientKeyPEM)))
	return f
}

// startJobRunner starts a job runner with short leases; stop stops it and waits for it.
func startJobRunner(t *testing.T, db *store.DB) (r *deploy.JobRunner, stop func()) {
	r = deploy.NewJobRunner(deploy.JobRunnerConfig{Store: db, Owner: storetest.Name("jobs"), Workers: 2,
		LeaseTTL: 3 * time.Second, Poll: 100 * time.Millisecond, SchedulePoll: 200 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { r.Run(ctx) })
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); wg.Wait() }) }
	t.Cleanup(stop)
	return r, stop
}

// script saves a bash script through the API.
func (f *jobFixture) script(name, body string) {
	f.t.Helper()
	f.api.do("POST", "/api/v1/projects/shop/scripts", fmt.Sprintf(`{"name":%q,"language":"bash","body":%q}`, name, body))
}

// job saves a job through the API and returns its id.
func (f *jobFixture) job(body string) int64 {
	f.t.Helper()
	var j store.ScriptJob
	r := f.api.do("POST", "/api/v1/projects/shop/jobs", body)
	if r.status != http.StatusCreated && r.status != http.StatusOK {
		f.t.Fatalf("save job: %d %s", r.status, r.body)
	}
	r.decode(&j)
	return j.ID
}

func (f *jobFixture) start(jobID int64, body string) int64 {
	f.t.Helper()
	var r store.JobRun
	f.api.must(http.StatusCreated, "POST", fmt.Sprintf("/api/v1/jobs/%d/runs", jobID), body).decode(&r)
	return r.ID
}

func (f *jobFixture) run(id int64) *store.JobRun {
	f.t.Helper()
	var r store.JobRun
	f.api.must(http.StatusOK, "GET", fmt.Sprintf("/api/v1/runs/%d", id), "").decode(&r)
	return &r
}

// waitRun waits until run id has status.
func (f *jobFixture) waitRun(id int64, status string) *store.JobRun {
	f.t.Helper()
	var r *store.JobRun
	storetest.WaitFor(f.t, 90*time.Second, fmt.Sprintf("run %d to be %s", id, status), func() bool {
		r = f.run(id)
		return r.Status == status
	})
	return r
}

func hostStatuses(s *store.JobRunStep) string {
	var out []string
	for _, h := range s.Hosts {
		out = append(out, h.Host+"="+h.Status)
	}
	return strings.Join(out, " ")
}

// hostFileOrEmpty is a host file's content, or "" when the file is not there.
func hostFileOrEmpty(t *testing.T, h *sshtest.Host, rel string) string {
	t.Helper()
	b, err := os.ReadFile(h.Path(rel))
	if err != nil {
		return ""
	}
	return string(b)
}

const jobPath = sshtest.DefaultDeployPath

func stepJSON(name, script string, extra string) string {
	return fmt.Sprintf(`{"name":%q,"kind":"script","script":%q,"account":"ops","target":{"environment":"staging"}%s}`, name, script, extra)
}

func TestJobRunsStepsOnRealHosts(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		f := newJobFixture(t, db)
		f.version("20260101000000-main-abc1234", artifact{}, testPipeline("{ kind: parallel }", ""))
		f.script("stop", `echo "stopping $FERRY_HOST"; echo stopped > `+jobPath+`/state`)
		f.script("start", `echo "started $VERSION" > `+jobPath+`/state; cat `+jobPath+`/releases/$VERSION/VERSION`)
		hosts := f.cluster.Hosts()

		t.Run("stop, distribute a version, start on three hosts", func(t *testing.T) {
			id := f.job(`{"name":"release","params":[{"name":"VERSION","default":""}],"steps":[` +
				stepJSON("stop", "stop", "") + `,` +
				`{"name":"distribute","kind":"distribute","version":"$VERSION","path":"` + jobPath + `","account":"ops","target":{"environment":"staging"}},` +
				stepJSON("start", "start", `,"batch":1`) + `]}`)
			run := f.waitRun(f.start(id, `{"params":{"VERSION":"20260101000000-main-abc1234"}}`), store.RunSuccess)
			if len(run.Steps) != 3 {
				t.Fatalf("steps: %+v", run.Steps)
			}
			for _, s := range run.Steps {
				if s.Status != store.StepSucceeded || len(s.Hosts) != 3 {
					t.Errorf("step %s: %s, hosts %s", s.Name, s.Status, hostStatuses(s))
				}
				for _, h := range s.Hosts {
					if h.Status != store.HostSucceeded || (s.Kind == store.StepScript && (h.ExitCode == nil || *h.ExitCode != 0)) || h.DurationMS == nil {
						t.Errorf("step %s host %s: %+v", s.Name, h.Host, h)
					}
				}
			}
			for _, h := range hosts {
				if got := hostFileOrEmpty(t, h, "state"); got != "started 20260101000000-main-abc1234\n" {
					t.Errorf("%s state = %q", h.Name, got)
				}
			}
			var page struct {
				Lines []store.RunLogLine `json:"lines"`
			}
			f.api.must(http.StatusOK, "GET", fmt.Sprintf("/api/v1/runs/%d/log?step=3&host=host-2", run.ID), "").decode(&page)
			if !containsLine(page.Lines, "20260101000000-main-abc1234") {
				t.Errorf("host-2's log of step 3 lacks the VERSION file's line: %+v", page.Lines)
			}
			// The version is there now: a second run moves no bytes.
			run = f.waitRun(f.start(id, `{"params":{"VERSION":"20260101000000-main-abc1234"}}`), store.RunSuccess)
			f.api.must(http.StatusOK, "GET", fmt.Sprintf("/api/v1/runs/%d/log?step=2", run.ID), "").decode(&page)
			if n := countLines(page.Lines, "same sha256: skipped"); n != 3 {
				t.Errorf("second distribution: %d hosts skipped, want 3: %+v", n, page.Lines)
			}
		})

		t.Run("distribute an uploaded file", func(t *testing.T) {
			content := "listen 8080\nname \"shop\"\n"
			f.api.must(http.StatusCreated, "POST", "/api/v1/projects/shop/files",
				fmt.Sprintf(`{"name":"app.conf","content":%q}`, base64.StdEncoding.EncodeToString([]byte(content))))
			id := f.job(`{"name":"push-conf","steps":[{"name":"conf","kind":"distribute","file":"app.conf","path":"` + jobPath + `/conf","account":"ops","target":{"environment":"staging"}}]}`)
			f.waitRun(f.start(id, `{}`), store.RunSuccess)
			for _, h := range hosts {
				if got := hostFileOrEmpty(t, h, "conf/app.conf"); got != content {
					t.Errorf("%s conf/app.conf = %q", h.Name, got)
				}
			}
			run := f.waitRun(f.start(id, `{}`), store.RunSuccess)
			var page struct {
				Lines []store.RunLogLine `json:"lines"`
			}
			f.api.must(http.StatusOK, "GET", fmt.Sprintf("/api/v1/runs/%d/log", run.ID), "").decode(&page)
			if n := countLines(page.Lines, "same sha256: skipped"); n != 3 {
				t.Errorf("second distribution: %d hosts skipped, want 3", n)
			}
		})

		t.Run("a host fails: stop and go on", func(t *testing.T) {
			f.script("flaky", `echo x >> `+jobPath+`/flaky-count; if [ "$FERRY_HOST" = host-2 ]; then echo broken >&2; exit 3; fi`)
			f.script("after", `echo after > `+jobPath+`/after-$RUNMARK`)
			stop := f.job(`{"name":"flaky-stop","params":[{"name":"RUNMARK","default":"stop"}],"steps":[` + stepJSON("flaky", "flaky", `,"batch":1`) + `,` + stepJSON("after", "after", "") + `]}`)
			run := f.waitRun(f.start(stop, `{}`), store.RunFailed)
			if got := hostStatuses(run.Steps[0]); got != "host-1=succeeded host-2=failed host-3=skipped" {
				t.Errorf("stop: step 1 hosts %s", got)
			}
			if h := run.Steps[0].Hosts[1]; h.ExitCode == nil || *h.ExitCode != 3 {
				t.Errorf("host-2 exit code %v, want 3", h.ExitCode)
			}
			if run.Steps[1].Status != store.StepSkipped || hostFileOrEmpty(t, hosts[0], "after-stop") != "" {
				t.Errorf("stop: the step after ran: %s", run.Steps[1].Status)
			}
			// Retry runs the failed step on its failed (and skipped) hosts only.
			f.api.must(http.StatusOK, "POST", fmt.Sprintf("/api/v1/runs/%d/retry", run.ID), "")
			run = f.waitRun(run.ID, store.RunFailed)
			if got := hostFileOrEmpty(t, hosts[0], "flaky-count"); got != "x\n" {
				t.Errorf("retry ran host-1 again: flaky-count %q", got)
			}
			if got := hostFileOrEmpty(t, hosts[1], "flaky-count"); got != "x\nx\n" {
				t.Errorf("retry did not run host-2 again: flaky-count %q", got)
			}

			goOn := f.job(`{"name":"flaky-go-on","params":[{"name":"RUNMARK","default":"goon"}],"steps":[` + stepJSON("flaky", "flaky", `,"on_failure":"continue"`) + `,` + stepJSON("after", "after", "") + `]}`)
			run = f.waitRun(f.start(goOn, `{}`), store.RunFailed)
			if got := hostStatuses(run.Steps[0]); got != "host-1=succeeded host-2=failed host-3=succeeded" {
				t.Errorf("go on: step 1 hosts %s", got)
			}
			if run.Steps[1].Status != store.StepSucceeded || hostFileOrEmpty(t, hosts[2], "after-goon") != "after\n" {
				t.Errorf("go on: the step after did not run: %s", run.Steps[1].Status)
			}
			if !strings.Contains(run.Error, "host-2") {
				t.Errorf("run error %q does not name host-2", run.Error)
			}
		})

		t.Run("a pause continued and one stopped", func(t *testing.T) {
			f.script("mark", `echo "$WHAT" >> `+jobPath+`/pause-$TAG`)
			id := f.job(`{"name":"paused","params":[{"name":"TAG","default":""}],"steps":[` + stepJSON("before", "mark", `,"params":{"WHAT":"before"}`) +
				`,{"name":"check","kind":"pause"},` + stepJSON("after", "mark", `,"params":{"WHAT":"after"}`) + `]}`)
			run := f.waitRun(f.start(id, `{"params":{"TAG":"go"}}`), store.RunWaiting)
			if run.Steps[1].Status != store.StepPaused || hostFileOrEmpty(t, hosts[0], "pause-go") != "before\n" {
				t.Fatalf("waiting run: %+v", run.Steps[1])
			}
			f.api.must(http.StatusOK, "POST", fmt.Sprintf("/api/v1/runs/%d/continue", run.ID), "")
			f.waitRun(run.ID, store.RunSuccess)
			if got := hostFileOrEmpty(t, hosts[0], "pause-go"); got != "before\nafter\n" {
				t.Errorf("continued run: %q", got)
			}
			run = f.waitRun(f.start(id, `{"params":{"TAG":"stop"}}`), store.RunWaiting)
			f.api.must(http.StatusOK, "POST", fmt.Sprintf("/api/v1/runs/%d/cancel", run.ID), "")
			run = f.waitRun(run.ID, store.RunCanceled)
			time.Sleep(500 * time.Millisecond) // nothing may pick it up again
			if got := hostFileOrEmpty(t, hosts[0], "pause-stop"); got != "before\n" {
				t.Errorf("stopped run went on: %q", got)
			}
			if run.Steps[2].Status != store.StepCanceled {
				t.Errorf("step after a stopped pause: %s", run.Steps[2].Status)
			}
		})

		t.Run("canceled mid-step", func(t *testing.T) {
			f.script("slow", `echo started; sleep 120; echo finished > `+jobPath+`/slow`)
			id := f.job(`{"name":"slow","steps":[` + stepJSON("slow", "slow", "") + `]}`)
			runID := f.start(id, `{}`)
			storetest.WaitFor(t, 60*time.Second, "the slow script to start on every host", func() bool {
				lines, _ := db.ReadRunLog(context.Background(), runID, 0, 1, "", 100)
				return countLines(lines, "started") == 3
			})
			f.api.must(http.StatusOK, "POST", fmt.Sprintf("/api/v1/runs/%d/cancel", runID), "")
			run := f.waitRun(runID, store.RunCanceled)
			if got := hostStatuses(run.Steps[0]); got != "host-1=canceled host-2=canceled host-3=canceled" {
				t.Errorf("hosts after cancel: %s", got)
			}
			if hostFileOrEmpty(t, hosts[0], "slow") != "" {
				t.Error("the canceled script went on to its end")
			}
		})

		t.Run("a runner that stops hands its run over", func(t *testing.T) {
			f.script("handover", `if [ "$FERRY_HOST" = host-1 ]; then echo fast >> `+jobPath+`/handover; exit 0; fi
while [ ! -f `+jobPath+`/handover-go ]; do echo waiting; sleep 0.2; done
echo done >> `+jobPath+`/handover`)
			id := f.job(`{"name":"handover","steps":[` + stepJSON("handover", "handover", "") + `]}`)
			runID := f.start(id, `{}`)
			storetest.WaitFor(t, 60*time.Second, "host-1 done and the others waiting", func() bool {
				r := f.run(runID)
				lines, _ := db.ReadRunLog(context.Background(), runID, 0, 1, "", 1000)
				return len(r.Steps) == 1 && r.Steps[0].Hosts[0].Status == store.HostSucceeded &&
					containsLine(lines, "waiting") && hostFileOrEmpty(t, hosts[0], "handover") == "fast\n"
			})
			f.stopRunner() // ferry stops: the run goes back to the queue at once
			if r := f.run(runID); r.Status != store.RunQueued || r.Steps[0].Hosts[0].Status != store.HostSucceeded {
				t.Fatalf("after the stop: run %s, host-1 %s", r.Status, r.Steps[0].Hosts[0].Status)
			}
			for _, h := range hosts {
				must(t, os.WriteFile(h.Path("handover-go"), nil, 0o644))
			}
			f.runner, f.stopRunner = startJobRunner(f.t, db) // lives as long as the fixture
			run := f.waitRun(runID, store.RunSuccess)
			if got := hostStatuses(run.Steps[0]); got != "host-1=succeeded host-2=succeeded host-3=succeeded" {
				t.Errorf("hosts: %s", got)
			}
			if got := hostFileOrEmpty(t, hosts[0], "handover"); got != "fast\n" {
				t.Errorf("host-1 ran again after the handover: %q", got)
			}
			for _, h := range hosts[1:] {
				if got := hostFileOrEmpty(t, h, "handover"); got != "done\n" {
					t.Errorf("%s: %q", h.Name, got)
				}
			}
		})

		t.Run("hostile parameter values are data", func(t *testing.T) {
			f.script("echo-msg", `printf '%s' "$MSG" > `+jobPath+`/msg`)
			id := f.job(`{"name":"hostile","params":[{"name":"MSG","default":""}],"steps":[` + stepJSON("echo", "echo-msg", "") + `]}`)
			hostile := "$(touch " + jobPath + "/pwned)`touch " + jobPath + "/pwned2`'\"; touch " + jobPath + "/pwned3\nline two\\n"
			body := fmt.Sprintf(`{"params":{"MSG":%q}}`, hostile)
			f.waitRun(f.start(id, body), store.RunSuccess)
			for _, h := range hosts {
				if got := hostFileOrEmpty(t, h, "msg"); got != hostile {
					t.Errorf("%s got %q, want %q", h.Name, got, hostile)
				}
				for _, p := range []string{"pwned", "pwned2", "pwned3"} {
					if _, err := os.Stat(h.Path(p)); err == nil {
						t.Errorf("%s: %s exists: a parameter was run as code", h.Name, p)
					}
				}
			}
		})

		t.Run("a trigger token runs only its own job", func(t *testing.T) {
			f.script("ping", `echo pong`)
			a := f.job(`{"name":"trig-a","steps":[` + stepJSON("ping", "ping", "") + `]}`)
			b := f.job(`{"name":"trig-b","steps":[` + stepJSON("ping", "ping", "") + `]}`)
			var tok struct {
				Token string `json:"token"`
			}
			f.api.must(http.StatusCreated, "POST", fmt.Sprintf("/api/v1/jobs/%d/trigger-token", a), "").decode(&tok)
			trigger := func(job int64, token string) (int, string) {
				req := httptest.NewRequest("POST", fmt.Sprintf("/api/v1/jobs/%d/trigger", job), nil) // no body: no parameters
				if token != "" {
					req.Header.Set("X-Ferry-Trigger-Token", token)
				}
				rec := httptest.NewRecorder()
				f.srv.ServeHTTP(rec, req)
				return rec.Code, rec.Body.String()
			}
			code, body := trigger(a, tok.Token)
			if code != http.StatusCreated {
				t.Fatalf("trigger with its token: %d %s", code, body)
			}
			for _, c := range []struct {
				job   int64
				token string
			}{{b, tok.Token}, {a, ""}, {a, tok.Token + "x"}, {a, "Bearer " + tok.Token}} {
				if code, body := trigger(c.job, c.token); code != http.StatusUnauthorized {
					t.Errorf("trigger job %d with %q: %d %s, want 401", c.job, c.token, code, body)
				}
			}
			// The token is no API token either.
			other := &apiClient{t: t, h: f.srv, token: tok.Token}
			if r := other.do("GET", fmt.Sprintf("/api/v1/jobs/%d/runs", a), ""); r.status != http.StatusUnauthorized {
				t.Errorf("the trigger token read runs: %d", r.status)
			}
		})
	})
}

func containsLine(lines []store.RunLogLine, s string) bool { return countLines(lines, s) > 0 }

func countLines(lines []store.RunLogLine, s string) int {
	n := 0
	for _, l := range lines {
		if strings.Contains(l.Text, s) {
			n++
		}
	}
	return n
}
