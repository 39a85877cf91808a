package deploy_test

import (
	"strings"
	"testing"

	"ferry/deploy"
	"ferry/store"
)

// TestRenderHostConfigNeverQuotesASecret: a helper that fails on a secret's value says so
// without the value, and the log line of sources names levels, not values.
func TestRenderHostConfigNeverQuotesASecret(t *testing.T) {
	spec := store.DeploySpec{Config: []store.ConfigFile{{Template: "a.tmpl", Path: "a.conf"}}}
	vars := map[string]store.Variable{
		"PORT":     {Name: "PORT", Value: "8080", Level: store.VarHost},
		"PASSWORD": {Name: "PASSWORD", Value: "not-a-number-secret", Secret: true, Level: store.VarProject},
	}
	_, err := deploy.RenderHostConfig(spec, map[string][]byte{"a.tmpl": []byte("x={{add .PASSWORD 1}}")}, vars)
	if err == nil || strings.Contains(err.Error(), "not-a-number-secret") || !strings.Contains(err.Error(), `add: "******" is not a whole number`) {
		t.Errorf("render error %v, want the secret masked", err)
	}
	x, err := deploy.RenderHostConfig(spec, map[string][]byte{"a.tmpl": []byte("port={{.PORT}}")}, vars)
	if err != nil || string(x.Files[0].Data) != "port=8080" || x.Sources != "PASSWORD (project, secret), PORT (host)" {
		t.Errorf("rendered %+v, %v", x, err)
	}
}
