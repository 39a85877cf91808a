package handlers_test

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"ferry/handlers"
	"ferry/store"
	"ferry/store/storetest"
)

var ginParam = regexp.MustCompile(`:(\w+)`)

// TestDocsNameEveryAPIRoute keeps docs/api.md and docs/openapi.yaml in step with the routes.
func TestDocsNameEveryAPIRoute(t *testing.T) {
	md, err := os.ReadFile("../docs/api.md")
	must(t, err)
	raw, err := os.ReadFile("../docs/openapi.yaml")
	must(t, err)
	var spec struct {
		Paths map[string]map[string]any `yaml:"paths"`
	}
	if err := yaml.Unmarshal(raw, &spec); err != nil {
		t.Fatalf("docs/openapi.yaml: %v", err)
	}
	srv := handlers.New(handlers.Config{DB: storetest.Open(t, store.SQLite)})
	documented := map[string]bool{}
	for path, ops := range spec.Paths {
		for method := range ops {
			if method != "parameters" {
				documented[strings.ToUpper(method)+" /api/v1"+path] = true
			}
		}
	}
	for _, route := range srv.Routes() {
		if !strings.Contains(route, " /api/v1/") {
			continue
		}
		route = ginParam.ReplaceAllString(route, "{$1}")
		if !strings.Contains(string(md), "`"+route) {
			t.Errorf("docs/api.md does not describe %s", route)
		}
		if !documented[route] {
			t.Errorf("docs/openapi.yaml does not describe %s", route)
		}
		delete(documented, route)
	}
	for route := range documented {
		t.Errorf("docs/openapi.yaml describes %s, which is not a route", route)
	}
}
