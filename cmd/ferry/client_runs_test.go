package main

import (
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"ferry/store"
	"ferry/store/storetest"
)

// The job commands against a running ferry with two sshd hosts: list jobs, start a run with
// parameters and follow its live log, list runs, retry a failed run, continue and cancel runs
// waiting at a pause; bad use exits 2, a failed run 1.
func TestCommandLineJobs(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(string(d), func(t *testing.T) {
			testCommandLineJobs(t, newCLISetup(t, d))
		})
	}
}

func testCommandLineJobs(t *testing.T, s *cliSetup) {
	env := append(append([]string(nil), s.env...), "FERRY_URL="+s.srv.URL, "FERRY_TOKEN="+s.token)
	ferry := func(code int, args ...string) result { t.Helper(); return s.ferryEnv(t, env, code, "", args...) }
	api := newClient(t, s.srv.URL, s.token)
	api.api(http.StatusCreated, "POST", "/api/v1/projects/orders/accounts",
		map[string]any{"name": "ops", "user": "root", "private_key": string(s.cluster.ClientKeyPEM)}, nil)
	for name, body := range map[string]string{"hello": `echo "hello $COUNT on $FERRY_HOST"`, "broken": "echo about to fail; exit 3"} {
		api.api(http.StatusCreated, "POST", "/api/v1/projects/orders/scripts", map[string]any{"name": name, "language": "bash", "body": body}, nil)
	}
	step := func(name, script string) map[string]any {
		return map[string]any{"name": name, "kind": "script", "script": script, "account": "ops", "target": map[string]any{"environment": "staging"}}
	}
	for name, steps := range map[string][]any{
		"greet":  {step("hello", "hello")},
		"broken": {step("fail", "broken")},
		"gate":   {map[string]any{"name": "confirm", "kind": "pause"}, step("hello", "hello")},
	} {
		api.api(http.StatusCreated, "POST", "/api/v1/projects/orders/jobs", map[string]any{"name": name,
			"params": []map[string]string{{"name": "COUNT", "default": "1"}}, "steps": steps}, nil)
	}

	res := ferry(0, "jobs", "orders")
	if !regexp.MustCompile(`(?m)^\d+\s+greet\s+hello\s+COUNT=1\s+-\s*$`).MatchString(res.stdout) || !strings.Contains(res.stdout, "confirm → hello") {
		t.Errorf("ferry jobs orders:\n%s", res.stdout)
	}

	res = ferry(0, "run", "orders", "greet", "-p", "COUNT=3", "--follow")
	for _, want := range []string{"1/host-1 | hello 3 on host-1", "1/host-2 | hello 3 on host-2", "step 1 hello, host-2: succeeded (exit 0)", "success: job greet, 1 steps"} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("ferry run --follow does not show %q:\n%s", want, res.stdout)
		}
	}
	greet := runIDOf(t, res.stdout)
	res = ferry(0, "runs", "orders", "greet")
	if !regexp.MustCompile(`(?m)^` + strconv.FormatInt(greet, 10) + `\s+success\s+api by admin`).MatchString(res.stdout) {
		t.Errorf("ferry runs orders greet:\n%s", res.stdout)
	}

	// Usage errors exit 2; a job that does not exist, 1.
	ferry(2, "run", "orders", "greet", "-p", "COUNT")
	ferry(2, "run")
	ferry(2, "run-cancel", "twelve")
	ferry(2, "run-cancel", "1", "--follow")
	if res := ferry(1, "run", "orders", "nosuch"); !strings.Contains(res.stderr, `project orders has no job "nosuch"`) {
		t.Errorf("a missing job: %s", res.stderr)
	}

	// A failing run exits 1 with its error; retry runs the failed hosts again.
	res = ferry(1, "run", "orders", "broken", "--follow")
	broken := runIDOf(t, res.stdout)
	if !strings.Contains(res.stdout, "about to fail") || !strings.Contains(res.stderr, "run "+strconv.FormatInt(broken, 10)+" failed") {
		t.Errorf("a failing run:\nstdout %s\nstderr %s", res.stdout, res.stderr)
	}
	res = ferry(1, "run-retry", strconv.FormatInt(broken, 10), "--follow")
	if !strings.Contains(res.stdout, "retry asked") {
		t.Errorf("run-retry: %s", res.stdout)
	}
	if res := ferry(1, "run-retry", strconv.FormatInt(greet, 10)); !strings.Contains(res.stderr, "only a failed run is retried") {
		t.Errorf("retrying a run that succeeded: %s", res.stderr)
	}

	// A run at a pause: continue it and follow it to the end; stop another.
	for _, verb := range []string{"continue", "cancel"} {
		res = ferry(0, "run", strconv.FormatInt(jobID(t, api, "gate"), 10))
		id := runIDOf(t, res.stdout)
		storetest.WaitFor(t, 60*time.Second, "the run to wait at its pause", func() bool {
			var r store.JobRun
			api.api(http.StatusOK, "GET", "/api/v1/runs/"+strconv.FormatInt(id, 10), nil, &r)
			return r.Status == store.RunWaiting
		})
		if verb == "continue" {
			res = ferry(0, "run-continue", strconv.FormatInt(id, 10), "--follow")
			if !strings.Contains(res.stdout, "success: job gate, 2 steps") {
				t.Errorf("run-continue --follow:\n%s", res.stdout)
			}
			continue
		}
		res = ferry(0, "run-cancel", strconv.FormatInt(id, 10))
		if !strings.Contains(res.stdout, "cancel asked (now canceled)") {
			t.Errorf("run-cancel: %s", res.stdout)
		}
	}
	testRunLogs(t, s, env, api, greet, broken)
}

func runIDOf(t *testing.T, stdout string) int64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^run (\d+) of job`).FindStringSubmatch(stdout)
	if m == nil {
		t.Fatalf("no run id in:\n%s", stdout)
	}
	id, _ := strconv.ParseInt(m[1], 10, 64)
	return id
}

func jobID(t *testing.T, api *client, name string) int64 {
	t.Helper()
	var jobs []store.ScriptJob
	api.api(http.StatusOK, "GET", "/api/v1/projects/orders/jobs", nil, &jobs)
	for _, j := range jobs {
		if j.Name == name {
			return j.ID
		}
	}
	t.Fatalf("no job %s", name)
	return 0
}
