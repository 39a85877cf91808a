package handlers_test

import (
	"bytes"
	"net/http/httptest"
	"os"
	"testing"

	"ferry/handlers"
	"ferry/store"
	"ferry/store/storetest"
)

// openAPIPermRoutes adds the permission rows of these routes (see permRouteParts).
func openAPIPermRoutes() {
	addPermRoutes(map[string][5]int{"GET /api/v1/openapi.yaml": {200, 200, 200, 200, 200}}, nil, nil)
}

// TestServesTheAPIDescription checks that the served description is docs/openapi.yaml as it
// is in the repository, so what tools fetch is what the docs test keeps in step.
func TestServesTheAPIDescription(t *testing.T) {
	want, err := os.ReadFile("../docs/openapi.yaml")
	must(t, err)
	srv := handlers.New(handlers.Config{DB: storetest.Open(t, store.SQLite)})
	w := httptest.NewRecorder()
	srv.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/api/v1/openapi.yaml", nil))
	if w.Code != 200 || !bytes.Equal(w.Body.Bytes(), want) {
		t.Fatalf("GET /api/v1/openapi.yaml: %d, %d bytes; want 200 with docs/openapi.yaml (%d bytes)", w.Code, w.Body.Len(), len(want))
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/yaml; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
}
