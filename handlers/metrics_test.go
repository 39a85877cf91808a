package handlers_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"ferry/handlers"
	"ferry/store"
	"ferry/store/storetest"
)

// TestMetricsReadTheStore scrapes /metrics the way Prometheus does and checks the numbers an
// operator would graph: finished builds by status with their durations, the queues, lease
// takeovers, webhook decisions, notices by channel kind and live log viewers.
func TestMetricsReadTheStore(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		p := &store.Project{Name: "orders", GitLabPath: "shop/orders", CloneURL: "https://x/y.git", Trigger: store.DefaultTrigger()}
		must(t, db.CreateProject(ctx, p))
		ch := &store.Channel{ProjectID: &p.ID, Kind: "webhook", URL: "https://hooks.example.com/x", Enabled: true,
			Events: []string{store.OutboxBuildSucceeded, store.OutboxBuildFailed}}
		must(t, db.CreateChannel(ctx, ch))
		ok := storetest.FinishedBuild(t, db, p, store.BuildSuccess)
		storetest.FinishedBuild(t, db, p, store.BuildFailed)
		_, err := db.QueueDeliveries(ctx, 10)
		must(t, err)
		deliveries, err := db.ListDeliveries(ctx, store.DeliveryFilter{})
		must(t, err)
		must(t, db.RecordDelivery(ctx, []int64{deliveries[0].ID}, store.DeliveryOutcome{Sent: true}))

		// A build whose process died: its lease runs out, it is requeued and claimed again.
		taken, err := db.CreateBuild(ctx, store.NewBuild{ProjectID: p.ID, Ref: "main", Branch: "main", SHA: strings.Repeat("b", 40)})
		must(t, err)
		_, err = db.ClaimBuild(ctx, "dead", time.Millisecond)
		must(t, err)
		time.Sleep(5 * time.Millisecond)
		_, _, err = db.ReapBuilds(ctx, 5)
		must(t, err)
		again, err := db.ClaimBuild(ctx, "alive", time.Hour)
		must(t, err)
		if again == nil || again.ID != taken.ID {
			t.Fatalf("claimed %+v, want build %d again", again, taken.ID)
		}
		_, err = db.CreateBuild(ctx, store.NewBuild{ProjectID: p.ID, Ref: "main", Branch: "main", SHA: strings.Repeat("c", 40)})
		must(t, err)
		_, _, _, err = db.RecordEvent(ctx, &store.Event{ProjectID: &p.ID, Kind: "push", Decision: store.EventSkip, Reason: "no keyword"}, nil)
		must(t, err)
		sub, err := db.SubscribeLog(ctx, store.JobBuild, ok.ID, 0)
		must(t, err)
		defer sub.Close()

		h := handlers.NewMetrics(handlers.MetricsConfig{DB: db})
		body := scrape(t, h, "")
		for _, want := range []string{
			`ferry_builds_total{project="orders",status="success"} 1`,
			`ferry_builds_total{project="orders",status="failed"} 1`,
			`ferry_build_duration_seconds_count{project="orders",status="success"} 1`,
			`ferry_build_duration_seconds_bucket{project="orders",status="failed",le="+Inf"} 1`,
			`ferry_queue_waiting{kind="build"} 1`,
			`ferry_queue_running{kind="build"} 1`,
			`ferry_queue_waiting{kind="notice"} 1`,
			`ferry_queue_waiting{kind="deployment"} 0`,
			`ferry_lease_takeovers_total{kind="build"} 1`,
			`ferry_webhook_events{decision="skip",project="orders"} 1`,
			`ferry_notices_total{channel_kind="webhook",result="sent"} 1`,
			`ferry_live_log_viewers 1`,
			`go_goroutines `,
		} {
			if !strings.Contains(body, want+"\n") && !strings.Contains(body, want) {
				t.Errorf("no %q in /metrics", want)
			}
		}
		if regexp.MustCompile(`ferry_builds_total\{[^}]*status="(pending|running)"`).MatchString(body) {
			t.Error("builds_total counts builds that have not ended")
		}
		// The running build ends: the next scrape counts it, once, and nothing twice.
		_, err = db.FinishBuild(ctx, again.ID, "alive", store.BuildResult{Status: store.BuildFailed, Error: "exit 1"})
		must(t, err)
		for range 2 {
			next := scrape(t, h, "")
			for _, want := range []string{
				`ferry_build_duration_seconds_count{project="orders",status="failed"} 2`,
				`ferry_build_duration_seconds_count{project="orders",status="success"} 1`,
				`ferry_builds_total{project="orders",status="failed"} 2`,
			} {
				if !strings.Contains(next, want) {
					t.Errorf("after the running build failed: no %q in /metrics", want)
				}
			}
		}
		oldest := regexp.MustCompile(`ferry_queue_oldest_waiting_seconds\{kind="build"\} (\S+)`).FindStringSubmatch(body)
		if oldest == nil || oldest[1] == "0" {
			t.Errorf("oldest waiting build: %v, want the age of the waiting build", oldest)
		}
	})
}

// TestMetricsToken is the attack on a token-guarded /metrics: no token, a wrong one, another
// scheme, and a user's API token are all refused.
func TestMetricsToken(t *testing.T) {
	db := storetest.Open(t, store.SQLite)
	h := handlers.NewMetrics(handlers.MetricsConfig{DB: db, Token: "metrics-token-0123456789"})
	for _, auth := range []string{"", "Bearer wrong-token-0123456789", "Basic bWV0cmljcy10b2tlbi0wMTIzNDU2Nzg5", "Bearer metrics-token-012345678"} {
		req := httptest.NewRequest("GET", "/metrics", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusUnauthorized || strings.Contains(w.Body.String(), "ferry_") {
			t.Errorf("Authorization %q: %d %.100s, want 401 without metrics", auth, w.Code, w.Body.String())
		}
	}
	if body := scrape(t, h, "Bearer metrics-token-0123456789"); !strings.Contains(body, "ferry_live_log_viewers 0") {
		t.Errorf("with the token: %.300s", body)
	}
}

func scrape(t *testing.T, h http.Handler, auth string) string {
	t.Helper()
	req := httptest.NewRequest("GET", "/metrics", nil)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	body, _ := io.ReadAll(w.Body)
	if w.Code != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", w.Code, body)
	}
	return string(body)
}
