package store_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/jmoiron/sqlx"

	"ferry/store"
	"ferry/store/storetest"
)

func str(s string) *string { return &s }

// TestVariablesNarrowerWinsAndSecretsStaySealed sets a variable at every level, checks the
// narrower wins, that a secret is sealed at rest bound to its row (a copy into another row does
// not open), and that deleting the owner deletes its variables.
func TestVariablesNarrowerWinsAndSecretsStaySealed(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(string(d), func(t *testing.T) {
			ctx := actorCtx()
			u := storetest.URL(t, d)
			db := storetest.OpenURL(t, u)
			p := mustProject(t, db, "shop")
			key, _ := MustKeyPair(t)
			for _, h := range []string{"web-1", "web-2"} {
				if err := db.CreateHost(ctx, &store.Host{Name: h, Address: h + ".local", User: "app", PrivateKey: key}); err != nil {
					t.Fatal(err)
				}
			}
			env := &store.Environment{ProjectID: p.ID, Name: "staging", Hosts: []string{"web-1", "web-2"}}
			if err := db.CreateEnvironment(ctx, env); err != nil {
				t.Fatal(err)
			}
			h1, _ := db.GetHost(ctx, "web-1")
			h2, _ := db.GetHost(ctx, "web-2")
			set := func(scope store.VarScope, vars map[string]store.VariableInput) {
				t.Helper()
				if err := db.SetVariables(ctx, scope, vars); err != nil {
					t.Fatal(err)
				}
			}
			set(store.VarScope{Level: store.VarProject, ID: p.ID}, map[string]store.VariableInput{
				"PORT": {Value: str("8080")}, "DB_URL": {Value: str("postgres://default")}, "TOKEN": {Value: str("project-token-secret"), Secret: true}})
			set(store.VarScope{Level: store.VarEnvironment, ID: env.ID}, map[string]store.VariableInput{"DB_URL": {Value: str("postgres://staging")}})
			set(store.VarScope{Level: store.VarHost, ID: h1.ID}, map[string]store.VariableInput{"PORT": {Value: str("8081")}, "TOKEN": {Value: str("host-token-secret"), Secret: true}})

			got1, err := db.ResolveVariables(ctx, p.ID, env.ID, h1.ID)
			if err != nil {
				t.Fatal(err)
			}
			got2, err := db.ResolveVariables(ctx, p.ID, env.ID, h2.ID)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range []struct {
				got         map[string]store.Variable
				name, value string
				level       string
			}{
				{got1, "PORT", "8081", store.VarHost}, {got1, "DB_URL", "postgres://staging", store.VarEnvironment},
				{got1, "TOKEN", "host-token-secret", store.VarHost},
				{got2, "PORT", "8080", store.VarProject}, {got2, "TOKEN", "project-token-secret", store.VarProject},
			} {
				if v := c.got[c.name]; v.Value != c.value || v.Level != c.level {
					t.Errorf("%s = %+v, want %q from the %s", c.name, v, c.value, c.level)
				}
			}
			listed, err := db.ListVariables(ctx, store.VarScope{Level: store.VarProject, ID: p.ID})
			if err != nil {
				t.Fatal(err)
			}
			for _, v := range listed {
				if v.Name == "TOKEN" && (v.Value != "" || !v.Secret) {
					t.Errorf("ListVariables shows the secret: %+v", v)
				}
			}

			driver, dsn := "postgres", u
			if d == store.SQLite {
				driver, dsn = "sqlite", "file:"+strings.TrimPrefix(u, "sqlite:")
			}
			raw, err := sqlx.Open(driver, dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			var rows []struct {
				Value    string `db:"value"`
				ValueEnc string `db:"value_enc"`
			}
			if err := raw.Select(&rows, `SELECT value, value_enc FROM variables WHERE name = 'TOKEN'`); err != nil {
				t.Fatal(err)
			}
			for _, r := range rows {
				if r.Value != "" || !strings.HasPrefix(r.ValueEnc, "v2:") || strings.Contains(r.ValueEnc, "token-secret") {
					t.Errorf("a secret at rest: %+v", r)
				}
			}
			// Someone with write access to the database copies the project's sealed token into
			// the host's row: it must not open as the host's.
			rawExec(t, d, u, `UPDATE variables SET value_enc = (SELECT value_enc FROM variables WHERE name = 'TOKEN' AND project_id = `+strconv.FormatInt(p.ID, 10)+`) WHERE name = 'TOKEN' AND host_id = `+strconv.FormatInt(h1.ID, 10))
			if _, err := db.ResolveVariables(ctx, p.ID, env.ID, h1.ID); err == nil || !strings.Contains(err.Error(), "does not belong to variables/value_enc/") {
				t.Errorf("a secret copied into another row opened: %v", err)
			}

			if err := db.DeleteHost(ctx, "web-2"); err == nil {
				t.Log("web-2 deleted") // in an environment, deleting may be refused; either way no orphan below
			}
			if err := db.DeleteProject(ctx, "shop"); err != nil {
				t.Fatal(err)
			}
			var left int
			if err := raw.Get(&left, `SELECT COUNT(*) FROM variables WHERE project_id IS NOT NULL OR environment_id IS NOT NULL`); err != nil {
				t.Fatal(err)
			}
			if left != 0 {
				t.Errorf("%d variables of a deleted project are left", left)
			}
		})
	}
}

func TestRenderConfigNamesTemplateLineAndVariable(t *testing.T) {
	vars := map[string]string{"PORT": "8080", "NAME": "orders", "EMPTY": ""}
	tests := []struct {
		name, text, want, err string
	}{
		{"arithmetic on a string variable", `http={{.PORT}} shutdown={{add .PORT 1}} ajp={{add .PORT 2}} x={{mul 2 3}}`, "http=8080 shutdown=8081 ajp=8082 x=6", ""},
		{"default and optional", `{{default "none" .EMPTY}} {{default "9090" (optional "MISSING")}} {{quote .NAME}} {{upper .NAME}}`, `none 9090 "orders" ORDERS`, ""},
		{"unknown variable", "a\nb\nport={{.PROT}}\n", "", "config template t.tmpl line 3: unknown variable PROT"},
		{"not a number", `{{add .NAME 1}}`, "", `add: "orders" is not a whole number`},
		{"bad syntax", "ok\n{{if}}", "", "config template t.tmpl line 2: "},
		{"unknown function", "{{nope .PORT}}", "", `function "nope" not defined`},
		{"division by zero", "{{div .PORT 0}}", "", "div by zero"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := store.RenderConfig("t.tmpl", []byte(tt.text), vars)
			if tt.err == "" {
				if err != nil || string(out) != tt.want {
					t.Errorf("got %q, %v; want %q", out, err, tt.want)
				}
				return
			}
			var te *store.TemplateError
			if err == nil || !errors.As(err, &te) || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("error %v, want a *TemplateError with %q", err, tt.err)
			}
		})
	}
}

func TestMaskSecretsAndReadArtifactFiles(t *testing.T) {
	if got := store.MaskSecrets("pw=abc123 and abc", []string{"abc", "abc123"}); got != "pw=****** and ******" {
		t.Errorf("MaskSecrets = %q", got)
	}
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for name, body := range map[string]string{"./deploy/app.tmpl": "port={{.PORT}}", "app.jar": "jar"} {
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg})
		tw.Write([]byte(body))
	}
	tw.WriteHeader(&tar.Header{Name: "link.tmpl", Typeflag: tar.TypeSymlink, Linkname: "/etc/shadow"})
	tw.Close()
	gz.Close()
	files, err := store.ReadArtifactFiles(bytes.NewReader(buf.Bytes()), []string{"deploy/app.tmpl"})
	if err != nil || string(files["deploy/app.tmpl"]) != "port={{.PORT}}" {
		t.Errorf("ReadArtifactFiles = %q, %v", files, err)
	}
	if _, err := store.ReadArtifactFiles(bytes.NewReader(buf.Bytes()), []string{"missing.tmpl"}); err == nil || !strings.Contains(err.Error(), "config template missing.tmpl is not in the artifact") {
		t.Errorf("a missing template: %v", err)
	}
	if _, err := store.ReadArtifactFiles(bytes.NewReader(buf.Bytes()), []string{"link.tmpl"}); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("a symlink template: %v", err)
	}
}

func TestPipelineConfigAndHooks(t *testing.T) {
	base := "build:\n  script: [make]\n  artifact: out\ndeploy:\n  path: /opt/app\n"
	p, err := store.ParsePipeline([]byte(base + `  config:
    - {template: deploy/server.xml.tmpl, path: conf/server.xml, mode: "0640"}
  hooks:
    once: "./migrate"
    before_stop: ["./drain", "sleep 1"]
    after_success: ./notify
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Deploy.Config) != 1 || p.Deploy.Config[0].Mode != "0640" || len(p.Deploy.Hooks.BeforeStop) != 2 || p.Deploy.Hooks.Once[0] != "./migrate" {
		t.Errorf("parsed %+v", p.Deploy)
	}
	for text, want := range map[string]string{
		"  config:\n    - {template: a.tmpl, path: a.conf, mod: \"0640\"}\n": `line 7: unknown key "mod" in deploy.config[]`,
		"  config:\n    - {template: a.tmpl, path: ../etc/passwd}\n":         "leaves the checkout",
		"  config:\n    - {template: a.tmpl, path: a.conf, mode: \"999\"}\n": `mode "999" is not an octal file mode`,
		"  config:\n    - {template: a.tmpl}\n":                              "needs both template and path",
		"  hooks:\n    before_start: x\n":                                    `unknown key "before_start" in deploy.hooks`,
	} {
		_, err := store.ParsePipeline([]byte(base + text))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want %q", text, err, want)
		}
	}
}
