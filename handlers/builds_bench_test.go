package handlers_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"ferry/store"
	"ferry/store/storetest"
)

// The webhook acknowledgement figure (200 pushes a second to one project, open loop, both
// databases) is BenchmarkWebhookAck in cmd/ferry, on the real binary.

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
