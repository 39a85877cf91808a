package deploy_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"ferry/deploy"
	"ferry/deploy/sshtest"
	"ferry/store"
)

func TestRollingUpgradeRollbackAndPrune(t *testing.T) {
	c := sshtest.Start(t, 3, sshtest.Options{})
	spec := testSpec(store.Strategy{Kind: store.StrategyRolling, Batch: "2"})
	spec.KeepReleases = 2
	v1, v2, v3 := makeRelease(t, "v1", artifact{}), makeRelease(t, "v2", artifact{}), makeRelease(t, "v3", artifact{})

	rollout(t, c, spec, v1, nil, allSucceed(3)...)
	rec := newRecorder()
	results := rollout(t, c, spec, v2, rec, allSucceed(3)...)
	for i, h := range c.Hosts() {
		assertServing(t, h, "v2")
		// v2 differs from v1 in its VERSION file only: that file is sent, the service binary
		// is taken from v1 on the host.
		if results[i].BytesSent <= 0 || results[i].BytesSent >= v2.Size/10 || results[i].Previous != "v1" {
			t.Errorf("%s: sent %d bytes after v1, want some but under a tenth of %d, after v1: %+v", h.Name, results[i].BytesSent, v2.Size, results[i])
		}
		wantSteps := []string{"connect", "upload", "stop", "switch", "start", "health", "done"}
		if got := rec.stepNames(h.Name); !slices.Equal(got, wantSteps) {
			t.Errorf("%s: steps %v, want %v", h.Name, got, wantSteps)
		}
		for _, want := range []string{"sending SIGTERM to process", "current -> releases/v2 (was v1)", "health check http://127.0.0.1:8080/health passed: 200 OK ok v2"} {
			if !strings.Contains(rec.log(h.Name), want) {
				t.Errorf("%s: log lacks %q:\n%s", h.Name, want, rec.log(h.Name))
			}
		}
	}
	// Batches of 2: host-3 starts only once host-1 and host-2 are done.
	third := rec.stepTime("host-3", "connect")
	for _, h := range []string{"host-1", "host-2"} {
		if done := rec.stepTime(h, "done"); done.IsZero() || third.Before(done) {
			t.Errorf("host-3 connected at %s, before %s was done at %s", third, h, done)
		}
	}

	results = rollout(t, c, spec, v1, nil, allSucceed(3)...)
	for i, h := range c.Hosts() {
		assertServing(t, h, "v1")
		if results[i].BytesSent != 0 {
			t.Errorf("%s: rollback to v1 sent %d bytes, want none", h.Name, results[i].BytesSent)
		}
	}

	rollout(t, c, spec, v3, nil, allSucceed(3)...)
	for _, h := range c.Hosts() {
		assertServing(t, h, "v3")
		// keep_releases 2: v3 (current) and v1 (previous) stay, v2 goes.
		if got := releaseEntries(t, h); !slices.Equal(got, []string{"v1", "v3"}) {
			t.Errorf("%s: releases %v, want [v1 v3]", h.Name, got)
		}
	}
	conn := dial(t, targetOf(c, c.Hosts()[0]), deploy.DialOptions{})
	state, err := conn.State(context.Background(), spec.Path)
	if err != nil {
		t.Fatal(err)
	}
	if state.Current != "v3" || len(state.Releases) != 2 || state.Releases[0].Version != "v3" || state.Releases[1].SHA256 != v1.SHA256 {
		t.Errorf("state %+v, want current v3 and releases v3, v1 with their sha256", state)
	}
}

func TestStopKillsAProcessIgnoringSIGTERM(t *testing.T) {
	c := sshtest.Start(t, 1, sshtest.Options{})
	spec := testSpec(store.Strategy{})
	rollout(t, c, spec, makeRelease(t, "stubborn", artifact{ignoreTerm: true}), nil, deploy.HostSucceeded)
	rec := newRecorder()
	rollout(t, c, spec, makeRelease(t, "v2", artifact{}), rec, deploy.HostSucceeded)
	assertServing(t, c.Hosts()[0], "v2")
	if log := rec.log("host-1"); !strings.Contains(log, "still running after the grace period of 2s: sending SIGKILL") ||
		!strings.Contains(log, "stopped") {
		t.Errorf("log does not tell of the SIGKILL:\n%s", log)
	}
}

func TestFailedHealthCheckSwitchesBackAndStopsTheCanary(t *testing.T) {
	c := sshtest.Start(t, 3, sshtest.Options{})
	spec := testSpec(store.Strategy{Kind: store.StrategyParallel})
	rollout(t, c, spec, makeRelease(t, "v1", artifact{}), nil, allSucceed(3)...)

	spec = testSpec(store.Strategy{Kind: store.StrategyCanary, Batch: "1"})
	spec.Health.Timeout = store.Duration(2e9)
	rec := newRecorder()
	results := rollout(t, c, spec, makeRelease(t, "bad", artifact{unhealthy: true}), rec,
		deploy.HostFailed, deploy.HostSkipped, deploy.HostSkipped)
	canary := results[0]
	if !canary.RolledBack {
		t.Errorf("host-1 was not switched back: %+v", canary)
	}
	for _, want := range []string{"health check http://127.0.0.1:8080/health did not pass within 2s", "answered 500 Internal Server Error unhealthy bad", "switched back to release v1"} {
		if !strings.Contains(canary.Reason, want) {
			t.Errorf("host-1 reason %q does not say %q", canary.Reason, want)
		}
	}
	if got := rec.stepNames("host-1"); !slices.Contains(got, deploy.StepRollback) {
		t.Errorf("host-1 steps %v lack rollback", got)
	}
	for i, h := range c.Hosts() {
		assertServing(t, h, "v1")
		if i > 0 && slices.Contains(releaseEntries(t, h), "bad") {
			t.Errorf("%s received the bad release although the canary failed", h.Name)
		}
	}
}

func TestDiskFullLeavesTheOldReleaseServing(t *testing.T) {
	c := sshtest.Start(t, 1, sshtest.Options{DiskLimit: "16m"})
	h := c.Hosts()[0]
	spec := testSpec(store.Strategy{})
	rollout(t, c, spec, makeRelease(t, "v1", artifact{}), nil, deploy.HostSucceeded)
	results := rollout(t, c, spec, makeRelease(t, "big", artifact{padding: 24 << 20}), nil, deploy.HostFailed)
	wantError(t, errorOf(results[0].Reason), "no space left on host-1", "while uploading big to /srv/ferry-test/app/releases")
	assertServing(t, h, "v1")
	if got := releaseEntries(t, h); !slices.Equal(got, []string{"v1"}) {
		t.Errorf("releases %v after the failed upload, want only [v1]", got)
	}
}

// TestAChangedArtifactIsRefusedOnTheHost: the sha256 of what arrived (ferry's seal of what it
// sent, checked on the host) must be the version's; a file that differs (changed on ferry's disk, or in transit) never becomes a
// release, and what ran before keeps running.
func TestAChangedArtifactIsRefusedOnTheHost(t *testing.T) {
	c := sshtest.Start(t, 1, sshtest.Options{})
	h := c.Hosts()[0]
	spec := testSpec(store.Strategy{})
	rollout(t, c, spec, makeRelease(t, "v1", artifact{}), nil, deploy.HostSucceeded)
	v2 := makeRelease(t, "v2", artifact{})
	recorded := v2.SHA256
	v2.SHA256 = strings.Repeat("0", 64)
	results := rollout(t, c, spec, v2, nil, deploy.HostFailed)
	wantError(t, errorOf(results[0].Reason), "sha256 mismatch for v2 on host-1", "the uploaded file has "+recorded)
	assertServing(t, h, "v1")
	if got := releaseEntries(t, h); !slices.Equal(got, []string{"v1"}) {
		t.Errorf("releases %v after the refused upload, want only [v1] without temp files", got)
	}
}

func TestConnectionCutMidUpload(t *testing.T) {
	c := sshtest.Start(t, 1, sshtest.Options{})
	h := c.Hosts()[0]
	spec := testSpec(store.Strategy{})
	rollout(t, c, spec, makeRelease(t, "v1", artifact{}), nil, deploy.HostSucceeded)
	v2 := makeRelease(t, "v2", artifact{padding: 8 << 20})
	h.CutAfter(2 << 20)
	results := rollout(t, c, spec, v2, nil, deploy.HostFailed)
	wantError(t, errorOf(results[0].Reason), "connection to host-1", "was lost while uploading v2")
	assertServing(t, h, "v1")
	if got := releaseEntries(t, h); slices.Contains(got, "v2") || slices.Contains(got, "v2.tmp") {
		t.Errorf("releases %v after the cut: a partial v2 is in place", got)
	}

	h.CutAfter(0)
	rollout(t, c, spec, v2, nil, deploy.HostSucceeded)
	assertServing(t, h, "v2")
	if got := releaseEntries(t, h); !slices.Equal(got, []string{"v1", "v2"}) {
		t.Errorf("releases %v after the retry, want [v1 v2] without temp files", got)
	}
}

func TestCancelInTheMiddleOfARollout(t *testing.T) {
	c := sshtest.Start(t, 3, sshtest.Options{})
	spec := testSpec(store.Strategy{Kind: store.StrategyParallel})
	rollout(t, c, spec, makeRelease(t, "v1", artifact{}), nil, allSucceed(3)...)

	spec = testSpec(store.Strategy{Kind: store.StrategySerial})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rec := newRecorder()
	events := func(host string) deploy.HostEvents {
		ev := rec.events(host)
		if host == "host-2" {
			ev.Progress = func(sent, total int64) { cancel() }
		}
		return ev
	}
	v2 := makeRelease(t, "v2", artifact{padding: 16 << 20})
	results := deploy.Rollout(ctx, targetsOf(c), deploy.RolloutOptions{Spec: spec, Release: v2, Events: events})
	want := []string{deploy.HostSucceeded, deploy.HostCanceled, deploy.HostCanceled}
	for i, res := range results {
		if res.Status != want[i] {
			t.Errorf("%s: %s (%s), want %s", res.Host, res.Status, res.Reason, want[i])
		}
	}
	assertServing(t, c.Hosts()[0], "v2")
	for _, h := range c.Hosts()[1:] {
		assertServing(t, h, "v1")
		if got := releaseEntries(t, h); !slices.Equal(got, []string{"v1"}) {
			t.Errorf("%s: releases %v after the cancel, want only [v1]", h.Name, got)
		}
	}
}
