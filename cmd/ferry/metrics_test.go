package main

import (
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"ferry/store"
)

const testMetricsToken = "metrics-token-for-tests-0123"

// TestMetricsStayOffThePublicListener checks where /metrics is served: nowhere by default, on
// FERRY_METRICS_ADDR when set, and on the public listener only to who sends FERRY_METRICS_TOKEN.
func TestMetricsStayOffThePublicListener(t *testing.T) {
	plain := startServer(t, newInstance(t, store.SQLite).env)
	if code, _ := getMetrics(t, plain.URL+"/metrics", ""); code != http.StatusNotFound {
		t.Errorf("/metrics on the public listener of a default ferry: %d, want 404", code)
	}

	in := newInstance(t, store.SQLite)
	srv := startServer(t, append(in.env, "FERRY_METRICS_ADDR=127.0.0.1:0", "FERRY_METRICS_TOKEN="+testMetricsToken))
	m := regexp.MustCompile(`msg="serving metrics" listen=(\S+)`).FindStringSubmatch(srv.logs.String())
	if m == nil {
		t.Fatalf("no metrics listener in the log:\n%s", srv.logs.String())
	}
	for _, base := range []string{srv.URL, "http://" + m[1]} {
		if code, _ := getMetrics(t, base+"/metrics", ""); code != http.StatusUnauthorized {
			t.Errorf("%s/metrics without the token: %d, want 401", base, code)
		}
		code, body := getMetrics(t, base+"/metrics", testMetricsToken)
		if code != http.StatusOK || !strings.Contains(body, `ferry_queue_waiting{kind="build"} 0`) {
			t.Errorf("%s/metrics with the token: %d %.300s", base, code, body)
		}
	}
	// The rest of the public listener is as before.
	if code, _ := getMetrics(t, srv.URL+"/healthz", ""); code != http.StatusOK {
		t.Errorf("/healthz next to the metrics: %d", code)
	}
}

func getMetrics(t *testing.T, url, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}
