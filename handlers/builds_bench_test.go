package handlers_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"ferry/build"
	"ferry/handlers"
	"ferry/store"
	"ferry/store/storetest"
)

// BenchmarkWebhookAck sends push webhooks at 200 a second to a real HTTP server on PostgreSQL
// and reports the answer latency (p50, p99) and that every event was stored. For the figure
// of the issue run it for 30 s: go test -run XXX -bench WebhookAck -benchtime 6000x ./handlers
func BenchmarkWebhookAck(b *testing.B) {
	db := storetest.Open(b, store.Postgres)
	p := &store.Project{Name: "app", GitLabPath: "group/app", CloneURL: "/nowhere.git", Trigger: store.DefaultTrigger(), KeepVersions: 20, WebhookSecret: "hook-secret"}
	must(b, db.CreateProject(context.Background(), p))
	w := build.NewWorker(build.WorkerConfig{DB: db, DataDir: b.TempDir()}) // not run: builds stay pending
	srv := httptest.NewServer(handlers.New(handlers.Config{DB: db, BaseURL: testBaseURL, GitLab: build.NewFrontend(w)}).Handler())
	defer srv.Close()
	sha := strings.Repeat("ab", 20)
	body := pushBody(b, "group/app", "main", sha, "release devops")
	tick := time.NewTicker(5 * time.Millisecond) // 200 a second
	defer tick.Stop()
	var mu sync.Mutex
	var lat []time.Duration
	var wg sync.WaitGroup
	b.ResetTimer()
	for i := range b.N {
		<-tick.C
		wg.Go(func() {
			req, _ := http.NewRequest("POST", srv.URL+"/hooks/gitlab", strings.NewReader(body))
			req.Header.Set("X-Gitlab-Event", "Push Hook")
			req.Header.Set("X-Gitlab-Token", "hook-secret")
			req.Header.Set("Idempotency-Key", fmt.Sprintf("bench-%d", i))
			start := time.Now()
			resp, err := http.DefaultClient.Do(req)
			d := time.Since(start)
			if err != nil || resp.StatusCode != 200 {
				b.Errorf("webhook %d: %v %v", i, err, resp)
				return
			}
			resp.Body.Close()
			mu.Lock()
			lat = append(lat, d)
			mu.Unlock()
		})
	}
	wg.Wait()
	b.StopTimer()
	slices.Sort(lat)
	events, err := db.ListEvents(context.Background(), p.ID, 1)
	must(b, err)
	stored := int64(0)
	if len(events) > 0 {
		stored = events[0].ID // ids start at 1 in a fresh database
	}
	if int(stored) != b.N {
		b.Errorf("%d events stored, %d sent", stored, b.N)
	}
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(stored), "events-stored")
}

// BenchmarkWebhookToBuildStart measures, on each database, the time from sending a push
// webhook to its build starting on an idle worker (the build's started_at), one push after
// another, each of a new commit.
func BenchmarkWebhookToBuildStart(b *testing.B) {
	for _, d := range storetest.Dialects {
		b.Run(string(d), func(b *testing.B) {
			e := newBuildEnv(b, storetest.Open(b, d))
			var lat []time.Duration
			for i := range b.N {
				sha := e.commit(fmt.Sprintf("change %d devops", i), fmt.Sprintf("v%d", i))
				start := time.Now()
				r := e.hook("Push Hook", "hook-secret", "", pushBody(b, "group/app", "main", sha, "change devops"))
				var ans hookAnswer
				r.decode(b, &ans)
				if ans.Build == 0 {
					b.Fatalf("push %d queued no build: %s", i, r.body)
				}
				built := e.waitBuild(ans.Build)
				if built.StartedAt == nil || built.Status != store.BuildSuccess {
					b.Fatalf("build %d: %+v", ans.Build, built)
				}
				lat = append(lat, built.StartedAt.Sub(start))
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		})
	}
}
