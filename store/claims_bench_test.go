package store_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"ferry/store"
	"ferry/store/runner"
	"ferry/store/storetest"
)

// BenchmarkClaimsWith8Workers measures how many builds per second one runner with 8 workers
// claims on PostgreSQL (FOR UPDATE SKIP LOCKED), each finished at once, with the builds spread
// over 64 projects (one build of a project runs at a time). Reported as claims/s.
//
//	go test -run '^$' -bench ClaimsWith8Workers -benchtime 2000x ./store/
func BenchmarkClaimsWith8Workers(b *testing.B) {
	db := storetest.Open(b, store.Postgres)
	const projects = 64
	ids := make([]int64, projects)
	for p := range projects {
		ids[p] = mustJobProject(b, db, fmt.Sprintf("bench%d", p)).ID
	}
	for i := range b.N {
		mustBuild(b, db, ids[i%projects], i)
	}
	var finished atomic.Int64
	ctx, stop := context.WithCancel(context.Background())
	kind := runner.Kind[*store.Build]{
		Name: "build",
		Claim: func(ctx context.Context, lease string, ttl time.Duration) (*store.Build, int64, error) {
			bd, err := db.ClaimBuild(ctx, lease, ttl)
			if bd == nil {
				return nil, 0, err
			}
			return bd, bd.ID, err
		},
		Renew: db.RenewBuild,
		Work: func(ctx context.Context, j *runner.Job[*store.Build]) {
			err := j.Finish(ctx, func(ctx context.Context) error {
				_, err := db.FinishBuild(ctx, j.ID, j.Lease, store.BuildResult{Status: store.BuildFailed, Error: "bench"})
				return err
			})
			if err != nil {
				b.Error(err)
			}
			if finished.Add(1) == int64(b.N) {
				stop()
			}
		},
	}
	r := runner.New(runner.Config{Owner: "bench", Workers: 8, Poll: time.Millisecond}, kind)
	b.ResetTimer()
	start := time.Now()
	if err := r.Run(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(finished.Load())/time.Since(start).Seconds(), "claims/s")
}
