package handlers_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"ferry/store"
	"ferry/store/storetest"
)

// variablePermRoutes: the fixture's project has a protected environment, so its project
// variables need the production right; :env is the unprotected one; the config preview of
// the fixture's version (no ?environment=) answers 400 to everyone who may see it.
func variablePermRoutes() {
	addPermRoutes(map[string][5]int{
		"GET /api/v1/projects/:project/variables":                   {401, 404, 200, 200, 200},
		"PUT /api/v1/projects/:project/variables":                   {401, 404, 403, 200, 200},
		"GET /api/v1/projects/:project/environments/:env/variables": {401, 404, 200, 200, 200},
		"PUT /api/v1/projects/:project/environments/:env/variables": {401, 404, 200, 200, 200},
		"GET /api/v1/hosts/:host/variables":                         {401, 200, 200, 200, 200},
		"PUT /api/v1/hosts/:host/variables":                         {401, 403, 403, 403, 200},
		"GET /api/v1/projects/:project/versions/:version/config":    {401, 404, 400, 400, 400},
	}, map[string]string{
		"PUT /api/v1/projects/:project/variables":                   `{"PORT":{"value":"8080"}}`,
		"PUT /api/v1/projects/:project/environments/:env/variables": `{"PORT":{"value":"8081"}}`,
		"PUT /api/v1/hosts/:host/variables":                         `{"PORT":{"value":"8082"}}`,
	}, nil)
}

// varsAPI is a project "shop" with an unprotected "staging" on web-1 and a protected "prod" on
// db-1, an administrator, a member, a member with the production right, and an outsider.
type varsAPI struct {
	db                           *store.DB
	h                            http.Handler
	admin, member, ops, outsider *client
}

func newVarsAPI(t *testing.T, db *store.DB) *varsAPI {
	t.Helper()
	ctx := context.Background()
	h := newServer(t, db)
	a := &varsAPI{db: db, h: h,
		admin:    tokenClient(t, h, db, mustUser(t, db, "boss", true)),
		member:   tokenClient(t, h, db, mustUser(t, db, "mem", false)),
		ops:      tokenClient(t, h, db, mustUser(t, db, "ops", false)),
		outsider: tokenClient(t, h, db, mustUser(t, db, "plain", false)),
	}
	key, _ := testKeys(t)
	a.admin.must(http.StatusCreated, "POST", "/api/v1/projects", `{"name":"shop","gitlab_path":"g/shop","clone_url":"https://x/y.git"}`)
	for _, h := range []string{"web-1", "db-1"} {
		a.admin.must(http.StatusCreated, "POST", "/api/v1/hosts", `{"name":"`+h+`","address":"10.0.0.5","user":"deploy","private_key":`+jsonString(key)+`}`)
	}
	a.admin.must(http.StatusCreated, "POST", "/api/v1/projects/shop/environments", `{"name":"staging","hosts":["web-1"]}`)
	a.admin.must(http.StatusCreated, "POST", "/api/v1/projects/shop/environments", `{"name":"prod","hosts":["db-1"],"protected":true}`)
	p, err := db.GetProject(ctx, "shop")
	must(t, err)
	for name, prod := range map[string]bool{"mem": false, "ops": true} {
		_, err := db.SetMember(ctx, p.ID, name, prod)
		must(t, err)
	}
	return a
}

func TestVariablesKeepSecretsSealedAndNeverShowThem(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		a := newVarsAPI(t, db)
		r := a.ops.must(http.StatusOK, "PUT", "/api/v1/projects/shop/variables",
			`{"PORT":{"value":"8080"},"DB_PASSWORD":{"value":"hunter2-very-secret","secret":true}}`)
		if strings.Contains(r.body, "hunter2") || !strings.Contains(r.body, `"DB_PASSWORD":{"secret":true}`) || !strings.Contains(r.body, `"PORT":{"value":"8080","secret":false}`) {
			t.Errorf("PUT answered %s, want PORT's value and DB_PASSWORD as secret only", r.body)
		}
		for _, c := range []*client{a.member, a.ops, a.admin} {
			if got := c.must(http.StatusOK, "GET", "/api/v1/projects/shop/variables", "").body; strings.Contains(got, "hunter2") {
				t.Errorf("GET shows the secret: %s", got)
			}
		}
		// Sent back as {"secret":true} without a value, the secret keeps its value.
		a.ops.must(http.StatusOK, "PUT", "/api/v1/projects/shop/variables", `{"PORT":{"value":"9090"},"DB_PASSWORD":{"secret":true}}`)
		p, err := db.GetProject(context.Background(), "shop")
		must(t, err)
		vars, err := db.ResolveVariables(context.Background(), p.ID, 0, 0)
		must(t, err)
		if vars["DB_PASSWORD"].Value != "hunter2-very-secret" || vars["PORT"].Value != "9090" {
			t.Errorf("after keeping the secret: %+v", vars)
		}

		audit := a.admin.must(http.StatusOK, "GET", "/api/v1/audit", "").body
		if !strings.Contains(audit, `"action":"variables.set"`) || !strings.Contains(audit, `"target":"project/shop"`) ||
			!strings.Contains(audit, "DB_PASSWORD (secret)") || strings.Contains(audit, "hunter2") {
			t.Errorf("the audit log of the change: %s", audit)
		}

		for body, want := range map[string]string{
			`{"port":{"value":"1"}}`:                 `variable \"port\"`,
			`{"9LIVES":{"value":"1"}}`:               `variable \"9LIVES\"`,
			`{"FERRY_VERSION":{"value":"1"}}`:        `variable \"FERRY_VERSION\"`,
			`{"NEW_TOKEN":{"secret":true}}`:          "variable NEW_TOKEN: a new secret needs a value",
			`{"PIN":{"value":"1234","secret":true}}`: "variable PIN: a secret must be at least 8 characters",
			`{"PLAIN":{"secret":false}}`:             "variable PLAIN: give a value",
			`{"A-B":{"value":"1"}}`:                  `variable \"A-B\"`,
			`{"OK":{"value":"1","extra":"what"}}`:    "extra",
		} {
			if r := a.ops.must(http.StatusBadRequest, "PUT", "/api/v1/projects/shop/variables", body); !strings.Contains(r.body, want) {
				t.Errorf("PUT %s answered %s, want it to name %s", body, r.body, want)
			}
		}
	})
}

func TestVariableRightsCannotBeGotAround(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		a := newVarsAPI(t, db)
		body := `{"DB_URL":{"value":"postgres://attacker"}}`
		// A member without the production right cannot reach the protected environment:
		// not through its variables, nor through the project's (which reach it too).
		a.member.must(http.StatusForbidden, "PUT", "/api/v1/projects/shop/environments/prod/variables", body)
		a.member.must(http.StatusForbidden, "PUT", "/api/v1/projects/shop/variables", body)
		a.member.must(http.StatusNotFound, "PUT", "/api/v1/projects/shop/environments/PROD/variables", body) // names are exact: no other spelling reaches prod
		// ... nor through a host of it: host variables are an administrator's.
		a.member.must(http.StatusForbidden, "PUT", "/api/v1/hosts/db-1/variables", body)
		a.ops.must(http.StatusForbidden, "PUT", "/api/v1/hosts/db-1/variables", body)
		// The unprotected environment is a member's to change.
		a.member.must(http.StatusOK, "PUT", "/api/v1/projects/shop/environments/staging/variables", body)
		a.ops.must(http.StatusOK, "PUT", "/api/v1/projects/shop/environments/prod/variables", `{"DB_URL":{"value":"postgres://prod"}}`)
		a.admin.must(http.StatusOK, "PUT", "/api/v1/hosts/db-1/variables", `{"PORT":{"value":"8081"}}`)

		// Outsiders cannot tell the project exists, whichever level they try.
		for _, path := range []string{"/api/v1/projects/shop/variables", "/api/v1/projects/shop/environments/prod/variables",
			"/api/v1/projects/shop/versions/1/config?environment=prod"} {
			a.outsider.must(http.StatusNotFound, "GET", path, "")
		}
		a.outsider.must(http.StatusNotFound, "PUT", "/api/v1/projects/shop/environments/staging/variables", body)
		anonymous := &client{t: t, h: a.h}
		anonymous.must(http.StatusUnauthorized, "GET", "/api/v1/hosts/db-1/variables", "")

		// With no protected environment left, project variables are a member's to change.
		a.admin.must(http.StatusOK, "PATCH", "/api/v1/projects/shop/environments/prod", `{"protected":false}`)
		a.member.must(http.StatusOK, "PUT", "/api/v1/projects/shop/variables", body)

		// What was refused changed nothing.
		prod := a.ops.must(http.StatusOK, "GET", "/api/v1/projects/shop/environments/prod/variables", "").body
		if !strings.Contains(prod, "postgres://prod") || strings.Contains(prod, "attacker") {
			t.Errorf("prod variables: %s", prod)
		}
	})
}

// configVersion makes a kept version of shop whose artifact holds files and whose .ferry.yml
// is pipeline.
func configVersion(t *testing.T, db *store.DB, name, pipeline string, files map[string]string) *store.Version {
	t.Helper()
	return projectConfigVersion(t, db, "shop", name, pipeline, files)
}

// projectConfigVersion is configVersion for another project.
func projectConfigVersion(t *testing.T, db *store.DB, project, name, pipeline string, files map[string]string) *store.Version {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for n, content := range files {
		must(t, tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(content)), Typeflag: tar.TypeReg}))
		_, err := tw.Write([]byte(content))
		must(t, err)
	}
	must(t, tw.Close())
	must(t, gz.Close())
	path := filepath.Join(t.TempDir(), name+".tar.gz")
	must(t, os.WriteFile(path, buf.Bytes(), 0o644))
	sum := sha256.Sum256(buf.Bytes())
	ctx := context.Background()
	p, err := db.GetProject(ctx, project)
	must(t, err)
	owner := storetest.Name("vars-test")
	b := claimNew(t, db, p.ID, owner, strings.Repeat("c3", 20))
	_, err = db.FinishBuild(ctx, b.ID, owner, store.BuildResult{Status: store.BuildSuccess, Version: &store.NewVersion{
		Name: name, SHA: b.SHA, Ref: "main", SHA256: hex.EncodeToString(sum[:]), Size: int64(buf.Len()), Path: path, Pipeline: pipeline}})
	must(t, err)
	v, err := db.GetVersionByName(ctx, p.ID, name)
	must(t, err)
	return v
}

const previewPipeline = `build:
  script: ["true"]
  artifact: out
deploy:
  path: /opt/shop
  config:
    - {template: deploy/app.conf.tmpl, path: conf/app.conf, mode: "0640"}
  hooks:
    after_start: ["./warm-cache"]
`

func TestConfigPreviewRendersOneHostWithSecretsMasked(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		a := newVarsAPI(t, db)
		configVersion(t, db, "v1", previewPipeline, map[string]string{"deploy/app.conf.tmpl": `http={{.PORT}}
shutdown={{add .PORT 1}}
db={{.DB_URL}}
password={{.DB_PASSWORD}}
hex={{printf "%x" .DB_PASSWORD}}
host={{.FERRY_HOST}} {{.FERRY_ENVIRONMENT}} {{.FERRY_VERSION}} {{.FERRY_HOST_INDEX}}/{{.FERRY_HOST_COUNT}}
`})
		a.ops.must(http.StatusOK, "PUT", "/api/v1/projects/shop/variables", `{"PORT":{"value":"8080"},"DB_PASSWORD":{"value":"hunter2-pw","secret":true}}`)
		a.ops.must(http.StatusOK, "PUT", "/api/v1/projects/shop/environments/prod/variables", `{"DB_URL":{"value":"postgres://prod-db/shop"}}`)
		a.admin.must(http.StatusOK, "PUT", "/api/v1/hosts/db-1/variables", `{"PORT":{"value":"9000"}}`)

		var got struct {
			Host  string `json:"host"`
			Files []struct {
				Path, Mode, Content string
			} `json:"files"`
			Variables map[string]struct {
				Value  *string `json:"value"`
				Secret bool    `json:"secret"`
				Level  string  `json:"level"`
			} `json:"variables"`
		}
		r := a.member.must(http.StatusOK, "GET", "/api/v1/projects/shop/versions/v1/config?environment=prod", "")
		r.decode(t, &got)
		if strings.Contains(r.body, "hunter2") || strings.Contains(r.body, "68756e74657232") {
			t.Fatalf("the preview shows the secret: %s", r.body)
		}
		want := "http=9000\nshutdown=9001\ndb=postgres://prod-db/shop\npassword=******\nhex=2a2a2a2a2a2a\nhost=db-1 prod v1 1/1\n"
		if got.Host != "db-1" || len(got.Files) != 1 || got.Files[0].Content != want || got.Files[0].Path != "conf/app.conf" || got.Files[0].Mode != "0640" {
			t.Errorf("preview %+v, want conf/app.conf 0640 with %q", got, want)
		}
		if v := got.Variables["PORT"]; v.Value == nil || *v.Value != "9000" || v.Level != "host" {
			t.Errorf("PORT in the preview: %+v, want 9000 from the host", v)
		}
		if v := got.Variables["DB_PASSWORD"]; v.Value != nil || !v.Secret {
			t.Errorf("DB_PASSWORD in the preview: %+v", v)
		}

		// An unknown variable is named, with the template and the line.
		a.admin.must(http.StatusOK, "PUT", "/api/v1/projects/shop/environments/staging/variables", `{}`)
		r = a.member.must(http.StatusBadRequest, "GET", "/api/v1/projects/shop/versions/v1/config?environment=staging&host=web-1", "")
		if !strings.Contains(r.errorText(t), "config template deploy/app.conf.tmpl line 3: unknown variable DB_URL") {
			t.Errorf("unknown variable: %s", r.errorText(t))
		}
		r = a.member.must(http.StatusBadRequest, "GET", "/api/v1/projects/shop/versions/v1/config?environment=staging&host=db-1", "")
		if !strings.Contains(r.errorText(t), `host "db-1" is not in environment staging`) {
			t.Errorf("host of another environment: %s", r.errorText(t))
		}
	})
}
