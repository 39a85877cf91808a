package deploy_test

import (
	"slices"
	"strings"
	"testing"

	"ferry/deploy"
	"ferry/deploy/sshtest"
	"ferry/store"
)

// Stop and switch run as one command; each still has its step, its log and its own error, and
// a failure of either brings the release that ran before back.
func TestStopAndSwitchFailuresSayWhichFailedAndTheOldReleaseComesBack(t *testing.T) {
	c := sshtest.Start(t, 1, sshtest.Options{})
	h := c.Hosts()[0]
	rollout(t, c, testSpec(store.Strategy{}), makeRelease(t, "v1", artifact{}), nil, deploy.HostSucceeded)

	spec := testSpec(store.Strategy{})
	spec.Stop = store.StopSpec{Command: `echo "refusing to stop $FERRY_VERSION" >&2; exit 3`}
	rec := newRecorder()
	res := rollout(t, c, spec, makeRelease(t, "v2", artifact{}), rec, deploy.HostFailed)[0]
	if !strings.Contains(res.Reason, "stop release v1 on host-1") || !strings.Contains(res.Reason, "exit status 3") {
		t.Errorf("reason %q does not say the stop of v1 failed with exit status 3", res.Reason)
	}
	if log := rec.log("host-1"); !strings.Contains(log, "refusing to stop v1") {
		t.Errorf("the stop command's output is missing from the log:\n%s", log)
	}
	if steps := rec.stepNames("host-1"); slices.Contains(steps, deploy.StepSwitch) {
		t.Errorf("steps %v include a switch although the stop failed", steps)
	}
	assertServing(t, h, "v1")

	// The stop works, and leaves a directory where the switch puts its new link.
	spec.Stop = store.StopSpec{Command: `kill "$(cat run/app.pid)"; echo "stopped $FERRY_VERSION"; mkdir -p "$FERRY_SHARED_DIR/../.current.tmp/in-the-way"`}
	rec = newRecorder()
	res = rollout(t, c, spec, makeRelease(t, "v3", artifact{}), rec, deploy.HostFailed)[0]
	if !strings.Contains(res.Reason, "to release v3 on host-1") || !strings.HasPrefix(res.Reason, "switch ") ||
		!strings.Contains(res.Reason, "switched back to release v1, which is running again") {
		t.Errorf("reason %q does not say the switch to v3 failed and v1 runs again", res.Reason)
	}
	if log := rec.log("host-1"); !strings.Contains(log, "stopped v1") || strings.Contains(log, "ferry-stopped-") {
		t.Errorf("log does not show the stop's output, or shows ferry's marker:\n%s", log)
	}
	if steps := rec.stepNames("host-1"); !slices.Contains(steps, deploy.StepSwitch) {
		t.Errorf("steps %v lack the switch", steps)
	}
	assertServing(t, h, "v1")
}

// Stop, switch and start run as one command; a start command that fails at once is the start's
// failure, with its output, ends the health check begun beside it, and the old release comes
// back.
func TestAStartThatFailsAtOnceSaysSoAndTheOldReleaseComesBack(t *testing.T) {
	c := sshtest.Start(t, 1, sshtest.Options{})
	h := c.Hosts()[0]
	spec := testSpec(store.Strategy{})
	spec.Start = `if [ "$FERRY_VERSION" = v2 ]; then echo "cannot start $FERRY_VERSION: no config"; exit 4; fi; exec bin/app`
	rollout(t, c, spec, makeRelease(t, "v1", artifact{}), nil, deploy.HostSucceeded)

	rec := newRecorder()
	res := rollout(t, c, spec, makeRelease(t, "v2", artifact{}), rec, deploy.HostFailed)[0]
	if !strings.HasPrefix(res.Reason, "start release v2 on host-1") || !strings.Contains(res.Reason, "exit status 4") ||
		!strings.Contains(res.Reason, "switched back to release v1, which is running again") {
		t.Errorf("reason %q does not say the start of v2 failed with exit status 4 and v1 runs again", res.Reason)
	}
	log := rec.log("host-1")
	for _, want := range []string{"sending SIGTERM to process", "current -> releases/v2 (was v1)",
		"the start command exited with status 4", "cannot start v2: no config", "health check http://127.0.0.1:8080/health passed: 200 OK ok v1"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	if strings.Contains(log, "ferry-stopped-") || strings.Contains(log, "ferry-switched-") || strings.Contains(log, "ferry-launched-") || strings.Contains(log, "ok v2") {
		t.Errorf("log shows ferry's markers or a health check of v2:\n%s", log)
	}
	steps := rec.stepNames("host-1")
	if i := slices.Index(steps, deploy.StepStart); i < 0 || i+1 >= len(steps) || steps[i+1] != deploy.StepRollback {
		t.Errorf("steps %v: want the rollback right after the start of v2", steps)
	}
	assertServing(t, h, "v1")
}
