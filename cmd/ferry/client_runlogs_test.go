package main

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"ferry/store"
	"ferry/store/storetest"
)

// testRunLogs checks ferry logs run on the runs testCommandLineJobs made on two sshd hosts:
// greet (succeeded, one step on host-1 and host-2) and broken (failed); then follows a run
// live through a pause with a host filter, and one awaiting approval until it is canceled.
func testRunLogs(t *testing.T, s *cliSetup, env []string, api *client, greet, broken int64) {
	ferry := func(code int, args ...string) result { t.Helper(); return s.ferryEnv(t, env, code, "", args...) }
	g, b := strconv.FormatInt(greet, 10), strconv.FormatInt(broken, 10)

	res := ferry(0, "logs", "run", g)
	for _, want := range []string{"1/host-1 | hello 3 on host-1", "1/host-2 | hello 3 on host-2"} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("ferry logs run %s does not show %q:\n%s", g, want, res.stdout)
		}
	}
	for _, filter := range [][]string{{"--host", "host-2"}, {"--step", "1", "--host", "host-2"}, {"--host", "1/host-2"}} {
		res := ferry(0, append([]string{"logs", "run", g}, filter...)...)
		if !strings.Contains(res.stdout, "1/host-2 | hello 3 on host-2") || strings.Contains(res.stdout, "host-1") {
			t.Errorf("ferry logs run %s %s:\n%s", g, strings.Join(filter, " "), res.stdout)
		}
	}
	if res := ferry(0, "logs", "run", g, "--step", "1"); !strings.Contains(res.stdout, "1/host-1 | ") || !strings.Contains(res.stdout, "1/host-2 | ") {
		t.Errorf("ferry logs run %s --step 1:\n%s", g, res.stdout)
	}

	// Following an ended run prints it all with how each host did, and exits as the run ended.
	res = ferry(0, "logs", "run", g, "-f")
	for _, want := range []string{"1/host-1 | hello 3 on host-1", "step 1 hello, host-1: succeeded (exit 0)", "run " + g + " success: job greet"} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("ferry logs run %s -f does not show %q:\n%s", g, want, res.stdout)
		}
	}
	res = ferry(1, "logs", "run", b, "--follow")
	if !strings.Contains(res.stdout, "about to fail") || !strings.Contains(res.stderr, "ferry: run "+b+" failed") {
		t.Errorf("ferry logs run %s --follow of a failed run:\nstdout %s\nstderr %s", b, res.stdout, res.stderr)
	}
	if res := ferry(0, "logs", "run", b); !strings.Contains(res.stdout, "about to fail") {
		t.Errorf("ferry logs run %s (the stored log of a failed run): %s", b, res.stdout)
	}

	// Bad ids, steps and hosts: said in words.
	for args, want := range map[string]string{
		"logs run 987654":              "ferry: run 987654 not found (ferry runs PROJECT JOB lists a job's runs)",
		"logs run " + g + " --step 2":  "run " + g + " has 1 step(s): there is no step 2",
		"logs run " + g + " --host db": "run " + g + " does not run on db (its hosts: host-1, host-2)",
	} {
		if res := ferry(1, strings.Fields(args)...); !strings.Contains(res.stderr, want) {
			t.Errorf("ferry %s: %q, want %q", args, res.stderr, want)
		}
	}
	ferry(2, "logs", "run", "twelve")
	ferry(2, "logs", "run", "-3")
	ferry(2, "logs", "run", g, "--host", "x/host-1")
	ferry(2, "logs", "run", g, "--step", "2", "--host", "1/host-1")
	ferry(2, "logs", "build", "1", "--step", "1")

	// Live: a run waits at its pause; the follower of host-2 sees step 2 run after it goes on.
	res = ferry(0, "run", "orders", "gate")
	gate := runIDOf(t, res.stdout)
	id := strconv.FormatInt(gate, 10)
	waitRunStatus(t, api, gate, store.RunWaiting)
	follower := startFerry(t, env, "logs", "run", id, "-f", "--host", "host-2")
	follower.waitOutput(t, "waits at a pause (ferry run-continue "+id)
	ferry(0, "run-continue", id)
	out := follower.wait(t, 0)
	for _, want := range []string{"2/host-2 | hello 1 on host-2", "step 2 hello, host-2: succeeded (exit 0)", "run " + id + " success: job gate, 2 steps"} {
		if !strings.Contains(out.stdout, want) {
			t.Errorf("ferry logs run %s -f --host host-2 does not show %q:\n%s", id, want, out.stdout)
		}
	}
	if strings.Contains(out.stdout, "host-1") {
		t.Errorf("ferry logs run %s -f --host host-2 shows host-1:\n%s", id, out.stdout)
	}

	// A run awaiting approval: the follower says until when, and ends with the run (canceled: 1).
	api.api(http.StatusOK, "PATCH", "/api/v1/projects/orders/environments/staging", map[string]any{"approvals_required": 1}, nil)
	res = ferry(0, "run", "orders", "greet")
	if !regexp.MustCompile(`awaits 1 approval\(s\) until [^(]+ \(in 2[34] h \d\d min\)`).MatchString(res.stdout) {
		t.Errorf("ferry run into an environment that needs approval: %q, want until when it waits", res.stdout)
	}
	waiting := runIDOf(t, res.stdout)
	id = strconv.FormatInt(waiting, 10)
	follower = startFerry(t, env, "logs", "run", id, "-f")
	follower.waitOutput(t, "run "+id+" awaits 1 approval(s) until ")
	ferry(0, "run-cancel", id)
	out = follower.wait(t, 1)
	if !strings.Contains(out.stderr, "ferry: run "+id+" canceled") {
		t.Errorf("following a run canceled while it awaited approval: stderr %q", out.stderr)
	}
	api.api(http.StatusOK, "PATCH", "/api/v1/projects/orders/environments/staging", map[string]any{"approvals_required": 0}, nil)
}

func waitRunStatus(t *testing.T, api *client, id int64, status string) {
	t.Helper()
	storetest.WaitFor(t, 60*time.Second, "run "+strconv.FormatInt(id, 10)+" to be "+status, func() bool {
		var r store.JobRun
		api.api(http.StatusOK, "GET", "/api/v1/runs/"+strconv.FormatInt(id, 10), nil, &r)
		return r.Status == status
	})
}

// background is a ferry command running while the test goes on.
type background struct {
	args   []string
	cmd    *exec.Cmd
	cancel context.CancelFunc
	done   chan error
	mu     sync.Mutex
	stdout bytes.Buffer
	stderr bytes.Buffer
}

func (b *background) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.stdout.Write(p)
}

// startFerry starts a ferry command without waiting for it; it is killed when t ends.
func startFerry(t *testing.T, env []string, args ...string) *background {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	b := &background{args: args, cancel: cancel, done: make(chan error, 1)}
	b.cmd = exec.CommandContext(ctx, ferryBinary(t), args...)
	b.cmd.Env, b.cmd.Stdout, b.cmd.Stderr = env, b, &b.stderr
	if err := b.cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start ferry %s: %v", strings.Join(args, " "), err)
	}
	go func() { b.done <- b.cmd.Wait() }()
	t.Cleanup(cancel)
	return b
}

// waitOutput waits until the command has written want to stdout.
func (b *background) waitOutput(t *testing.T, want string) {
	t.Helper()
	storetest.WaitFor(t, 30*time.Second, "ferry "+strings.Join(b.args, " ")+" to print "+want, func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return strings.Contains(b.stdout.String(), want)
	})
}

// wait waits for the command to end with exit code want and returns what it wrote.
func (b *background) wait(t *testing.T, want int) result {
	t.Helper()
	var err error
	select {
	case err = <-b.done:
	case <-time.After(90 * time.Second):
		b.cancel()
		err = <-b.done
	}
	code := 0
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		code = exit.ExitCode()
	} else if err != nil {
		t.Fatalf("ferry %s: %v", strings.Join(b.args, " "), err)
	}
	b.mu.Lock()
	res := result{code: code, stdout: b.stdout.String(), stderr: b.stderr.String()}
	b.mu.Unlock()
	if code != want {
		t.Fatalf("ferry %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(b.args, " "), code, want, res.stdout, res.stderr)
	}
	if want != 0 {
		checkOneLineError(t, res)
	}
	return res
}

func TestUntilWords(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{-time.Second, "past"},
		{0, "past"},
		{20 * time.Second, "in less than a minute"},
		{23*time.Minute + 20*time.Second, "in 23 min"},
		{22*time.Minute + 40*time.Second, "in 23 min"},
		{2*time.Hour + 5*time.Minute, "in 2 h 05 min"},
		{24 * time.Hour, "in 24 h 00 min"},
		{3*24*time.Hour + 4*time.Hour + 10*time.Minute, "in 3 d 4 h"},
	} {
		if got := untilWords(tc.d); got != tc.want {
			t.Errorf("untilWords(%v) = %q, want %q", tc.d, got, tc.want)
		}
	}
}

func TestRunLogFilter(t *testing.T) {
	for _, tc := range []struct {
		name       string
		step       int
		host       string
		want       runLogFilter
		bad        bool
		keeps, not []string
	}{
		{name: "none", keeps: []string{"", "1/", "1/web-1", "2/web-2"}},
		{name: "step", step: 2, want: runLogFilter{step: 2}, keeps: []string{"2/", "2/web-1"}, not: []string{"", "1/web-1", "12/web-1"}},
		{name: "host", host: "web-1", want: runLogFilter{host: "web-1"}, keeps: []string{"1/web-1", "2/web-1"}, not: []string{"", "1/", "1/web-10"}},
		{name: "step/host", host: "2/web-1", want: runLogFilter{step: 2, host: "web-1"}, keeps: []string{"2/web-1"}, not: []string{"1/web-1", "2/"}},
		{name: "same step twice", step: 2, host: "2/web-1", want: runLogFilter{step: 2, host: "web-1"}},
		{name: "other step", step: 1, host: "2/web-1", bad: true},
		{name: "not a step", host: "x/web-1", bad: true},
		{name: "no host", host: "2/", bad: true},
		{name: "negative step", step: -1, bad: true},
	} {
		f, err := parseRunLogFilter(tc.step, tc.host)
		if tc.bad {
			var usage *usageError
			if !errors.As(err, &usage) {
				t.Errorf("%s: %v, want a usage error", tc.name, err)
			}
			continue
		}
		if err != nil || f != tc.want {
			t.Errorf("%s: %+v, %v; want %+v", tc.name, f, err, tc.want)
		}
		for _, h := range tc.keeps {
			if !f.keeps(h) {
				t.Errorf("%s: drops a line of %q", tc.name, h)
			}
		}
		for _, h := range tc.not {
			if f.keeps(h) {
				t.Errorf("%s: keeps a line of %q", tc.name, h)
			}
		}
	}
}
