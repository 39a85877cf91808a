package deploy_test

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"ferry/deploy/sshtest"
	"ferry/store"
	"ferry/store/storetest"
)

// configPipeline is the test service with a rendered config and every hook: each hook appends
// its stage and a variable to shared/hooks.log on the host, and echoes the secret (which the
// log must mask). extraHooks are more hook lines (already indented).
func configPipeline(template, extraHooks string) string {
	return `build:
  script: [ "true" ]
  artifact: app
deploy:
  path: ` + sshtest.DefaultDeployPath + `
  keep_releases: 3
  stop: { pid_file: run/app.pid, grace: 2s }
  start: bin/app
  health: { http: "http://127.0.0.1:8080/health", timeout: 5s }
  strategy: { kind: parallel }
  config:
    - { template: ` + template + `, path: conf/app.conf, mode: "0600" }
  hooks:
    once: 'echo "once $FERRY_HOST $FERRY_HOST_INDEX" >> "$FERRY_SHARED_DIR/once.log"'
    before_stop: 'echo "before_stop $FERRY_VERSION port=$PORT" >> ../../shared/hooks.log'
    after_switch: 'echo "after_switch $(basename "$PWD")" >> ../../shared/hooks.log'
    after_start: [ 'echo "after_start $FERRY_ENVIRONMENT" >> ../../shared/hooks.log', 'echo "the token is $API_TOKEN"' ]
    after_success: 'echo "after_success $FERRY_HOST" >> ../../shared/hooks.log'
    on_failure: 'echo "on_failure: $FERRY_FAILURE" >> ../../shared/hooks.log'
` + extraHooks
}

const appConfTemplate = `port={{.PORT}}
admin_port={{add .PORT 1}}
db={{.DB_URL}}
token={{.API_TOKEN}}
host={{.FERRY_HOST}} ({{.FERRY_HOST_INDEX}} of {{.FERRY_HOST_COUNT}}) in {{.FERRY_ENVIRONMENT}}, {{.FERRY_VERSION}}
`

func readHostFile(t *testing.T, h *sshtest.Host, rel string) string {
	t.Helper()
	data, err := os.ReadFile(h.Path(rel))
	if err != nil {
		t.Fatalf("%s: %v", h.Name, err)
	}
	return string(data)
}

// TestConfigRenderedPerHostAndHooksRunInOrder deploys two versions to two real hosts with
// variables at every level: each host gets its own rendered file in its release (mode 0600),
// the hooks run in order with the variables in their environment, once runs on exactly one
// host, the secret is masked in the log, and a rollback restores the old release's own file.
func TestConfigRenderedPerHostAndHooksRunInOrder(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		f := newDeployFixture(t, db, 2, workerOptions{})
		f.api.must(200, "PUT", "/api/v1/projects/shop/variables", `{"PORT":{"value":"8080"},"DB_URL":{"value":"postgres://default"},"API_TOKEN":{"value":"tok-5ecr3t-value","secret":true}}`)
		f.api.must(200, "PUT", "/api/v1/projects/shop/environments/staging/variables", `{"DB_URL":{"value":"postgres://staging-db/shop"}}`)
		f.api.must(200, "PUT", "/api/v1/hosts/host-2/variables", `{"PORT":{"value":"9090"}}`)
		pipeline := configPipeline("deploy/app.conf.tmpl", "")
		f.version("v1", artifact{members: map[string]string{"deploy/app.conf.tmpl": appConfTemplate}}, pipeline)
		f.version("v2", artifact{members: map[string]string{"deploy/app.conf.tmpl": "v2 " + appConfTemplate}}, pipeline)

		id := f.deploy(`{"environment":"staging","version":"v1"}`)
		f.waitEnded(id, store.DeploymentSuccess)
		h1, h2 := f.cluster.Hosts()[0], f.cluster.Hosts()[1]
		want1 := "port=8080\nadmin_port=8081\ndb=postgres://staging-db/shop\ntoken=tok-5ecr3t-value\nhost=host-1 (1 of 2) in staging, v1\n"
		if got := readHostFile(t, h1, "current/conf/app.conf"); got != want1 {
			t.Errorf("host-1 config:\n%s\nwant:\n%s", got, want1)
		}
		if got := readHostFile(t, h2, "current/conf/app.conf"); !strings.HasPrefix(got, "port=9090\nadmin_port=9091\n") || !strings.Contains(got, "host=host-2 (2 of 2)") {
			t.Errorf("host-2 config:\n%s", got)
		}
		if info, err := os.Stat(h1.Path("current/conf/app.conf")); err != nil || info.Mode().Perm() != 0o600 {
			t.Errorf("the rendered file's mode: %v %v, want 0600", info.Mode(), err)
		}
		wantHooks := "before_stop v1 port=8080\nafter_switch v1\nafter_start staging\nafter_success host-1\n"
		if got := readHostFile(t, h1, "shared/hooks.log"); got != wantHooks {
			t.Errorf("host-1 hooks ran:\n%s\nwant:\n%s", got, wantHooks)
		}
		once1, _ := os.ReadFile(h1.Path("shared/once.log"))
		once2, _ := os.ReadFile(h2.Path("shared/once.log"))
		if string(once1)+string(once2) != "once host-1 1\n" {
			t.Errorf("the once hook ran as %q on host-1 and %q on host-2, want once on host-1", once1, once2)
		}
		log := f.log(id, "")
		if strings.Contains(log, "tok-5ecr3t-value") || !strings.Contains(log, "the token is ******") {
			t.Errorf("the secret is not masked in the log:\n%s", log)
		}
		if !strings.Contains(log, "hook after_start: echo") || !strings.Contains(log, "rendered conf/app.conf from deploy/app.conf.tmpl") {
			t.Errorf("the log does not show the hooks and the rendered file:\n%s", log)
		}

		// v2, then back to v1: each release keeps the file rendered for it.
		f.waitEnded(f.deploy(`{"environment":"staging","version":"v2"}`), store.DeploymentSuccess)
		if got := readHostFile(t, h2, "current/conf/app.conf"); !strings.HasPrefix(got, "v2 port=9090") {
			t.Errorf("host-2 config of v2: %s", got)
		}
		must(t, db.SetVariables(ctx, store.VarScope{Level: store.VarHost, ID: hostID(t, db, "host-2")}, map[string]store.VariableInput{}))
		f.waitEnded(f.deploy(`{"environment":"staging","version":"v1"}`), store.DeploymentSuccess)
		if got := readHostFile(t, h2, "current/conf/app.conf"); !strings.HasPrefix(got, "port=8080\n") || !strings.HasSuffix(got, "staging, v1\n") {
			t.Errorf("host-2 config back on v1, without its PORT any more: %s", got)
		}
		if got := readHostFile(t, h2, "releases/v2/conf/app.conf"); !strings.HasPrefix(got, "v2 port=9090") {
			t.Errorf("v2's own file was changed by deploying v1: %s", got)
		}
	})
}

func hostID(t *testing.T, db *store.DB, name string) int64 {
	t.Helper()
	h, err := db.GetHost(context.Background(), name)
	must(t, err)
	return h.ID
}

// TestUnknownVariableFailsTheHostBeforeAnythingStops deploys v2 whose template names a variable
// nobody set: the deployment fails naming template, line and variable, and v1 keeps running
// (nothing was stopped, not even uploaded). Then a failing after_start hook switches back.
func TestUnknownVariableFailsTheHostBeforeAnythingStops(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		f := newDeployFixture(t, db, 1, workerOptions{})
		f.api.must(200, "PUT", "/api/v1/projects/shop/variables", `{"PORT":{"value":"8080"},"DB_URL":{"value":"x"},"API_TOKEN":{"value":"token-for-tests","secret":true}}`)
		f.version("v1", artifact{members: map[string]string{"deploy/app.conf.tmpl": appConfTemplate}}, configPipeline("deploy/app.conf.tmpl", ""))
		f.waitEnded(f.deploy(`{"environment":"staging","version":"v1"}`), store.DeploymentSuccess)
		h := f.cluster.Hosts()[0]
		pid := readHostFile(t, h, "current/run/app.pid")

		f.version("v2", artifact{members: map[string]string{"deploy/app.conf.tmpl": "port={{.PORT}}\ncache={{.CACHE_URL}}\n"}}, configPipeline("deploy/app.conf.tmpl", ""))
		d := f.waitEnded(f.deploy(`{"environment":"staging","version":"v2"}`), store.DeploymentFailed)
		want := "config template deploy/app.conf.tmpl line 2: unknown variable CACHE_URL"
		if !strings.Contains(d.Error, want) || !strings.Contains(hostStep(d, "host-1").Error, want) {
			t.Errorf("the deployment failed with %q, want %q", d.Error, want)
		}
		if _, err := os.Stat(h.Path("releases/v2")); err == nil {
			t.Errorf("v2 was uploaded although its config could not be rendered")
		}
		if got := readHostFile(t, h, "current/run/app.pid"); got != pid {
			t.Errorf("v1 was restarted (pid %s, was %s)", got, pid)
		}
		if code, body, err := h.Get("http://127.0.0.1:8080/version"); err != nil || code != 200 || body != "v1" {
			t.Errorf("the service answers %d %q %v, want v1", code, body, err)
		}

		// A failing after_start hook fails the host and switches back to v1.
		f.version("v3", artifact{members: map[string]string{"deploy/app.conf.tmpl": appConfTemplate}},
			strings.Replace(configPipeline("deploy/app.conf.tmpl", ""), "after_start: [", "after_start: [ 'echo warming up; exit 3', ", 1))
		d = f.waitEnded(f.deploy(`{"environment":"staging","version":"v3"}`), store.DeploymentFailed)
		if !strings.Contains(d.Error, "hook after_start (echo warming up; exit 3)") || !strings.Contains(d.Error, "switched back to release v1") {
			t.Errorf("the failing hook: %s", d.Error)
		}
		if code, body, err := h.Get("http://127.0.0.1:8080/version"); err != nil || code != 200 || body != "v1" {
			t.Errorf("after the failing hook the service answers %d %q %v, want v1", code, body, err)
		}
		if log := f.log(d.ID, "host-1"); !strings.Contains(log, "stdout: warming up") {
			t.Errorf("the hook's output is not in the host's log:\n%s", log)
		}
		if got := readHostFile(t, h, "shared/hooks.log"); !strings.Contains(got, "on_failure: ") {
			t.Errorf("on_failure did not run: %s", got)
		}
	})
}

// TestOnceHookFailureStopsEveryHost: when the once hook fails, no host is changed.
func TestOnceHookFailureStopsEveryHost(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		f := newDeployFixture(t, db, 2, workerOptions{})
		f.api.must(200, "PUT", "/api/v1/projects/shop/variables", `{"PORT":{"value":"8080"},"DB_URL":{"value":"x"},"API_TOKEN":{"value":"token-for-tests","secret":true}}`)
		pipeline := strings.Replace(configPipeline("deploy/app.conf.tmpl", ""), `once: 'echo`, `once: 'echo migration failed >&2; exit 1; echo`, 1)
		f.version("v1", artifact{members: map[string]string{"deploy/app.conf.tmpl": appConfTemplate}}, pipeline)
		d := f.waitEnded(f.deploy(`{"environment":"staging","version":"v1"}`), store.DeploymentFailed)
		if !strings.Contains(d.Error, "the once hook failed on host-1, so no host was changed") {
			t.Errorf("deployment error: %s", d.Error)
		}
		for _, h := range f.cluster.Hosts() {
			if _, err := os.Stat(h.Path("current")); err == nil {
				t.Errorf("%s was switched although the once hook failed", h.Name)
			}
		}
		if log := f.log(d.ID, "host-1"); !strings.Contains(log, "stderr: migration failed") {
			t.Errorf("the once hook's output is not in host-1's log:\n%s", log)
		}
	})
}

// TestHookVariablesArriveAsDataNotShell: a variable full of shell syntax reaches the hook as
// its value, and none of it runs.
func TestHookVariablesArriveAsDataNotShell(t *testing.T) {
	db := storetest.Open(t, store.SQLite)
	f := newDeployFixture(t, db, 1, workerOptions{})
	evil := `'; touch pwned-1; echo '$(touch pwned-2)` + "`touch pwned-3`\n\"; touch pwned-4"
	body, err := json.Marshal(map[string]map[string]string{"EVIL": {"value": evil}})
	must(t, err)
	f.api.must(200, "PUT", "/api/v1/projects/shop/variables", string(body))
	pipeline := testPipeline("{ kind: serial }", "") + "  hooks:\n    after_switch: 'printf \"%s\" \"$EVIL\" > ../../shared/evil.txt'\n"
	f.version("v1", artifact{}, pipeline)
	f.waitEnded(f.deploy(`{"environment":"staging","version":"v1"}`), store.DeploymentSuccess)
	h := f.cluster.Hosts()[0]
	if got := readHostFile(t, h, "shared/evil.txt"); got != evil {
		t.Errorf("the hook saw %q, want %q", got, evil)
	}
	for _, dir := range []string{"releases/v1", "shared", "."} {
		for i := 1; i <= 4; i++ {
			if _, err := os.Stat(h.Path(dir + "/pwned-" + string(rune('0'+i)))); err == nil {
				t.Errorf("a variable's value ran as shell: %s/pwned-%d exists", dir, i)
			}
		}
	}
}
