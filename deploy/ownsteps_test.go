package deploy_test

import (
	"os"
	"strings"
	"testing"

	"ferry/deploy"
	"ferry/deploy/sshtest"
	"ferry/store"
	"ferry/store/storetest"
)

// ownPipeline is a .ferry.yml whose steps are this release's own: its start, stop and health
// use its own port and write "<name>-<step> <version>" to shared/steps, so a test sees whose
// steps ran on which release.
func ownPipeline(name, port, healthTimeout string) string {
	return `build:
  script: [ "true" ]
  artifact: app
deploy:
  path: ` + sshtest.DefaultDeployPath + `
  keep_releases: 3
  stop: { command: 'echo "` + name + `-stop $FERRY_VERSION" >> "$FERRY_SHARED_DIR/steps"; kill $(cat run/app.pid)', grace: 2s }
  start: 'echo "` + name + `-start $FERRY_VERSION" >> "$FERRY_SHARED_DIR/steps"; TESTAPP_ADDR=127.0.0.1:` + port + ` exec bin/app'
  health: { http: "http://127.0.0.1:` + port + `/health", timeout: ` + healthTimeout + ` }
  strategy: { kind: serial }
`
}

// stepsRun returns the lines of shared/steps on h.
func stepsRun(t *testing.T, h *sshtest.Host) []string {
	t.Helper()
	data, err := os.ReadFile(h.Path("shared/steps"))
	if err != nil {
		t.Fatalf("%s: read shared/steps: %v", h.Name, err)
	}
	return strings.Split(strings.TrimSpace(string(data)), "\n")
}

// When the new release fails its health check, the release before it is stopped, started
// again and judged with its own .ferry.yml, not with the failed release's.
func TestEachReleaseIsStoppedStartedAndCheckedWithItsOwnSteps(t *testing.T) {
	f := newDeployFixture(t, storetest.Open(t, store.SQLite), 1, workerOptions{})
	h := f.cluster.Hosts()[0]
	f.version("a", artifact{}, ownPipeline("A", "8081", "5s"))
	f.version("b", artifact{unhealthy: true}, ownPipeline("B", "8082", "2s"))
	f.waitEnded(f.deploy(`{"environment":"staging","version":"a"}`), store.DeploymentSuccess)

	d := f.waitEnded(f.deploy(`{"environment":"staging","version":"b"}`), store.DeploymentFailed)
	want := []string{"A-start a", "A-stop a", "B-start b", "B-stop b", "A-start a"}
	if got := stepsRun(t, h); strings.Join(got, "; ") != strings.Join(want, "; ") {
		t.Errorf("steps run on the host:\n  %s\nwant:\n  %s", strings.Join(got, "; "), strings.Join(want, "; "))
	}
	if !strings.Contains(d.Error, "switched back to release a, which is running again") {
		t.Errorf("deployment error %q does not say a is running again", d.Error)
	}
	log := f.log(d.ID, "host-1")
	for _, want := range []string{"health check http://127.0.0.1:8082/health did not pass within 2s",
		"health check http://127.0.0.1:8081/health passed", "release a is running again and passed its own health check"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	if code, body, err := h.Get("http://127.0.0.1:8081/version"); err != nil || code != 200 || body != "a" {
		t.Errorf("a on its own port 8081 answered %d %q (%v), want a", code, body, err)
	}
	if _, _, err := h.Get("http://127.0.0.1:8082/version"); err == nil {
		t.Errorf("something still answers on b's port 8082 after b was stopped")
	}
	assertCurrent(t, h, "a")
	hs := f.stored(d.ID).Hosts[0]
	if !hs.PreviousRecorded || hs.PreviousRelease != "a" || hs.PreviousVersionID == nil {
		t.Errorf("host step %+v does not record that host-1 ran version a", hs)
	}
}

// A release on a host that is not a version ferry knows is stopped with the new release's
// steps, and the log says so.
func TestAnUnknownReleaseIsStoppedWithTheNewReleasesSteps(t *testing.T) {
	f := newDeployFixture(t, storetest.Open(t, store.SQLite), 1, workerOptions{})
	h := f.cluster.Hosts()[0]
	// Put there by hand (the engine alone, no version row), with A's steps.
	manual := makeRelease(t, "manual", artifact{})
	p, err := store.ParsePipeline([]byte(ownPipeline("A", "8081", "5s")))
	must(t, err)
	rollout(t, f.cluster, p.Deploy, manual, nil, deploy.HostSucceeded)
	f.version("b", artifact{}, ownPipeline("B", "8082", "5s"))

	d := f.waitEnded(f.deploy(`{"environment":"staging","version":"b"}`), store.DeploymentSuccess)
	want := []string{"A-start manual", "B-stop manual", "B-start b"}
	if got := stepsRun(t, h); strings.Join(got, "; ") != strings.Join(want, "; ") {
		t.Errorf("steps run on the host: %s, want %s", strings.Join(got, "; "), strings.Join(want, "; "))
	}
	wantLine := "release manual on host-1 is not a version of shop that ferry knows: release manual is stopped, and restarted if need be, with the deploy steps of b"
	if log := f.log(d.ID, "host-1"); !strings.Contains(log, wantLine) {
		t.Errorf("log lacks %q:\n%s", wantLine, log)
	}
	if hs := f.stored(d.ID).Hosts[0]; !hs.PreviousRecorded || hs.PreviousRelease != "manual" || hs.PreviousVersionID != nil {
		t.Errorf("host step %+v, want manual recorded without a version", hs)
	}
}
