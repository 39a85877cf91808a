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
	testRunApprovals(t, s, env, api)
}

// testRunApprovals has a run into an environment that needs approval refused to the person it
// acts for, approved by someone else and followed to its end, and another one rejected, all
// with the command line.
func testRunApprovals(t *testing.T, s *cliSetup, env []string, api *client) {
	api.api(http.StatusOK, "PATCH", "/api/v1/projects/orders/environments/staging", map[string]any{"approvals_required": 1}, nil)
	defer api.api(http.StatusOK, "PATCH", "/api/v1/projects/orders/environments/staging", map[string]any{"approvals_required": 0}, nil)
	if res := runFerry(t, s.in.env, "", "user", "add", "bob", "--admin"); res.code != 0 {
		t.Fatalf("ferry user add bob: exit %d: %s", res.code, res.stderr)
	}
	bob := runFerry(t, s.in.env, "", "token", "add", "bob")
	asBob := append(env[:len(env):len(env)], "FERRY_TOKEN="+strings.TrimSpace(bob.stdout))

	res := s.ferryEnv(t, env, 0, "", "run", "orders", "greet")
	m := regexp.MustCompile(`^run (\d+) of job greet \(orders\) awaits 1 approval\(s\) until [^(]+ \(in [^)]+\) \(ferry approve run (\d+)\)`).FindStringSubmatch(res.stdout)
	if m == nil || m[1] != m[2] {
		t.Fatalf("ferry run into an environment that needs approval: %q", res.stdout)
	}
	id := m[1]
	if res := s.ferryEnv(t, env, 1, "", "approve", "run", id); !strings.Contains(res.stderr, "someone else must approve") {
		t.Errorf("the person the run acts for approving: %q, want the four-eyes refusal", res.stderr)
	}
	res = s.ferryEnv(t, asBob, 0, "", "approve", "run", id, "--comment", "fine")
	if !regexp.MustCompile(`^run ` + id + `: approved; now (queued|running|success) \(job greet of orders\)`).MatchString(res.stdout) {
		t.Errorf("bob approving the run: %q, want it approved and on its way", res.stdout)
	}
	if res := s.ferryEnv(t, asBob, 1, "", "reject", "run", id); res.stderr == "" {
		t.Error("bob deciding twice: no error")
	}
	if res := s.ferryEnv(t, env, 0, "", "logs", "run", id, "-f"); !strings.Contains(res.stdout, "approved by bob") || !strings.Contains(res.stdout, "hello 1 on host-1") {
		t.Errorf("the approved run's log:\n%s", res.stdout)
	}

	other := strconv.FormatInt(runIDOf(t, s.ferryEnv(t, env, 0, "", "run", "orders", "greet").stdout), 10)
	res = s.ferryEnv(t, asBob, 0, "", "reject", "run", other, "--comment", "not now")
	if want := "run " + other + ": rejected; now canceled (job greet of orders)"; strings.TrimSpace(res.stdout) != want {
		t.Errorf("bob rejecting a run: %q, want %q", res.stdout, want)
	}
	var r store.JobRun
	api.api(http.StatusOK, "GET", "/api/v1/runs/"+other, nil, &r)
	if r.Status != store.RunCanceled || !strings.Contains(r.Error, "rejected by bob: not now") {
		t.Errorf("the rejected run: %s, %q", r.Status, r.Error)
	}
	s.ferryEnv(t, env, 2, "", "approve", "run")
	s.ferryEnv(t, env, 2, "", "reject", "run", "seven")
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
