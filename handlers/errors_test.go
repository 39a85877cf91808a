package handlers

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"

	"ferry/store"
)

func TestErrorStatus(t *testing.T) {
	tests := map[error]int{
		store.Errorf(store.EINVALID, "x"):                         400,
		store.Errorf(store.EUNAUTHORIZED, "x"):                    401,
		store.Errorf(store.EFORBIDDEN, "x"):                       403,
		store.Errorf(store.ENOTFOUND, "x"):                        404,
		fmt.Errorf("get: %w", store.Errorf(store.ECONFLICT, "x")): 409,
		store.Errorf(store.ETOOLARGE, "x"):                        413,
		&http.MaxBytesError{Limit: 1}:                             413,
		errors.New("connection refused"):                          500,
		store.Errorf(store.EINTERNAL, "x"):                        500,
	}
	for err, want := range tests {
		if got := ErrorStatus(err); got != want {
			t.Errorf("ErrorStatus(%v) = %d, want %d", err, got, want)
		}
	}
}

// TestInternalErrorsAreLoggedNotShown checks that a fault's text reaches the log but not the
// user, for a returned error and for a panic.
func TestInternalErrorsAreLoggedNotShown(t *testing.T) {
	var logs bytes.Buffer
	s := &Server{log: slog.New(slog.NewTextHandler(&logs, nil))}
	pages, err := parsePages()
	if err != nil {
		t.Fatal(err)
	}
	s.pages = pages
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.Use(s.recoverPanic)
	r.GET("/api/v1/fault", func(c *gin.Context) { s.fail(c, errors.New("pq: password authentication failed for db-secret")) })
	r.GET("/panic", func(c *gin.Context) { panic("db-secret exploded") })
	for _, path := range []string{"/api/v1/fault", "/panic"} {
		rec := httptest.NewRecorder()
		r.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		if rec.Code != 500 || strings.Contains(rec.Body.String(), "db-secret") || !strings.Contains(rec.Body.String(), "internal error") {
			t.Errorf("%s: %d %s", path, rec.Code, rec.Body.String())
		}
	}
	if !strings.Contains(logs.String(), "failed for db-secret") || !strings.Contains(logs.String(), "panic: db-secret exploded") {
		t.Errorf("the log lacks the real errors:\n%s", logs.String())
	}
}
