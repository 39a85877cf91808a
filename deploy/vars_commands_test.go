package deploy_test

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"ferry/deploy/sshtest"
	"ferry/store"
	"ferry/store/storetest"
)

// varsCommandsPipeline's start command takes its port from $PORT; the start, stop and health
// commands each write $EVIL to a file in shared/, and stop says the secret $API_TOKEN.
const varsCommandsPipeline = `build:
  script: [ "true" ]
  artifact: app
deploy:
  path: ` + sshtest.DefaultDeployPath + `
  keep_releases: 3
  stop: { command: 'printf "%s" "$EVIL" > "$FERRY_SHARED_DIR/stop-evil.txt"; echo "stopping with token $API_TOKEN"; kill "$(cat run/app.pid)"', grace: 2s }
  start: 'printf "%s" "$EVIL" > "$FERRY_SHARED_DIR/start-evil.txt"; TESTAPP_ADDR=127.0.0.1:$PORT exec bin/app'
  health: { command: 'printf "%s" "$EVIL" > "$FERRY_SHARED_DIR/health-evil.txt"; grep -q "listening on 127.0.0.1:$PORT as" "$FERRY_SHARED_DIR/logs/$FERRY_VERSION.log"', timeout: 30s }
  strategy: { kind: serial }
`

// TestStartStopAndHealthCommandsSeeTheVariables: a start command using $PORT from a host
// variable listens on that port (and on the new one after the variable changed), the stop and
// health commands see the variables too, a hostile value reaches every command as its value
// and none of it runs, and the secret a stop command prints is masked in the log.
func TestStartStopAndHealthCommandsSeeTheVariables(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		f := newDeployFixture(t, db, 1, workerOptions{})
		h := f.cluster.Hosts()[0]
		evil := `$(touch pwned-1)'; touch pwned-2; echo '` + "`touch pwned-3`\n\"; touch pwned-4 #"
		body, err := json.Marshal(map[string]map[string]any{
			"EVIL":      {"value": evil},
			"API_TOKEN": {"value": "tok-5ecr3t-value", "secret": true},
		})
		must(t, err)
		f.api.must(200, "PUT", "/api/v1/projects/shop/variables", string(body))
		f.api.must(200, "PUT", "/api/v1/hosts/host-1/variables", `{"PORT":{"value":"9091"}}`)
		f.version("v1", artifact{}, varsCommandsPipeline)
		f.version("v2", artifact{}, varsCommandsPipeline)

		f.waitEnded(f.deploy(`{"environment":"staging","version":"v1"}`), store.DeploymentSuccess)
		if code, got, err := h.Get("http://127.0.0.1:9091/version"); err != nil || code != 200 || got != "v1" {
			t.Errorf("v1 on the port of the host's PORT variable (9091) answers %d %q %v", code, got, err)
		}
		if _, _, err := h.Get("http://127.0.0.1:8080/version"); err == nil {
			t.Errorf("the service listens on its default port 8080 as well")
		}

		f.api.must(200, "PUT", "/api/v1/hosts/host-1/variables", `{"PORT":{"value":"9092"}}`)
		id := f.deploy(`{"environment":"staging","version":"v2"}`)
		f.waitEnded(id, store.DeploymentSuccess)
		if code, got, err := h.Get("http://127.0.0.1:9092/version"); err != nil || code != 200 || got != "v2" {
			t.Errorf("v2 on the port of the changed PORT variable (9092) answers %d %q %v", code, got, err)
		}
		for _, file := range []string{"start-evil.txt", "stop-evil.txt", "health-evil.txt"} {
			if got := readHostFile(t, h, "shared/"+file); got != evil {
				t.Errorf("%s: the command saw %q, want %q", file, got, evil)
			}
		}
		for _, dir := range []string{"releases/v1", "releases/v2", "shared", "."} {
			for _, n := range []string{"1", "2", "3", "4"} {
				if _, err := os.Stat(h.Path(dir + "/pwned-" + n)); err == nil {
					t.Errorf("a variable's value ran as shell: %s/pwned-%s exists", dir, n)
				}
			}
		}
		log := f.log(id, "")
		if strings.Contains(log, "tok-5ecr3t-value") || !strings.Contains(log, "stopping with token ******") {
			t.Errorf("the stop command's secret is not masked in the log:\n%s", log)
		}
	})
}
