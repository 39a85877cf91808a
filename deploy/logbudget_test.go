package deploy_test

import (
	"context"
	"strings"
	"testing"

	"ferry/deploy/sshtest"
	"ferry/store"
	"ferry/store/storetest"
)

// chattyPipeline is the test service's .ferry.yml with a stop command that prints 500 lines of
// 390 bytes (about 190 KiB) before it stops the service.
const chattyPipeline = `build:
  script: [ "true" ]
  artifact: app
deploy:
  path: ` + sshtest.DefaultDeployPath + `
  stop: { command: 'yes "$(printf "%0390d" 0)" | head -n 500; kill $(cat run/app.pid)', grace: 2s }
  start: bin/app
  health: { http: "http://127.0.0.1:8080/health", timeout: 5s }
  strategy: { kind: serial }
`

// A host that floods the log is cut at its bound, the deployment's log at its own, each with a
// "log truncated" line; the deployment goes on and ferry's own lines are still written.
func TestDeploymentLogsAreCappedPerHostAndPerDeployment(t *testing.T) {
	f := newDeployFixture(t, storetest.Open(t, store.SQLite), 2, workerOptions{maxLogBytes: 24 << 10, maxHostLogBytes: 16 << 10})
	f.version("v1", artifact{}, chattyPipeline)
	f.version("v2", artifact{}, chattyPipeline)
	f.waitEnded(f.deploy(`{"environment":"staging","version":"v1"}`), store.DeploymentSuccess)
	d := f.waitEnded(f.deploy(`{"environment":"staging","version":"v2"}`), store.DeploymentSuccess)

	lines, err := f.db.ReadLog(context.Background(), store.JobDeployment, d.ID, 0, "", 5000)
	must(t, err)
	output := map[string]int{}
	var total int
	var ferry []string
	for _, l := range lines {
		if l.Stream == "ferry" {
			ferry = append(ferry, l.Host+": "+l.Text)
			continue
		}
		output[l.Host] += len(l.Text) + 1
		total += len(l.Text) + 1
	}
	if output["host-1"] > 16<<10 || output["host-1"] < 15<<10 {
		t.Errorf("host-1 kept %d bytes of output, want just under 16 KiB", output["host-1"])
	}
	if total > 24<<10 || total < 23<<10 {
		t.Errorf("the deployment kept %d bytes of output, want just under 24 KiB", total)
	}
	all := strings.Join(ferry, "\n")
	for _, want := range []string{
		"host-1: log truncated: the output of host-1 beyond 16.0 KiB is not kept; the deployment goes on",
		"host-2: log truncated: the output of this deployment's hosts beyond 24.0 KiB is not kept; the deployment goes on",
		"host-2: host-2 is running v2", ": success: v2 is on every host"} {
		if !strings.Contains(all, want) {
			t.Errorf("ferry's lines lack %q:\n%s", want, all)
		}
	}
	if strings.Count(all, "log truncated") != 2 {
		t.Errorf("want exactly two \"log truncated\" lines:\n%s", all)
	}
}
