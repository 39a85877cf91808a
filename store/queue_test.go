package store_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"ferry/store"
	"ferry/store/storetest"
)

// TestConcurrentClaims runs N workers claiming and finishing builds of M projects at once:
// no build is claimed twice, no project ever has two builds running, and each project's builds
// start in the order they were queued.
func TestConcurrentClaims(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		const projects, perProject, workers = 5, 8, 8
		ctx := context.Background()
		queued := map[int64][]int64{} // project → build ids in queue order
		for p := range projects {
			pr := mustJobProject(t, db, fmt.Sprintf("p%d", p))
			for i := range perProject {
				queued[pr.ID] = append(queued[pr.ID], mustBuild(t, db, pr.ID, p*100+i).ID)
			}
		}
		var (
			mu       sync.Mutex
			running  = map[int64]int64{}   // project → build running now, by our own count
			started  = map[int64][]int64{} // project → builds in the order claimed
			claimed  = map[int64]bool{}
			problems []string
			done     atomic.Int64
		)
		var wg sync.WaitGroup
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				owner := fmt.Sprintf("worker-%d", w)
				for done.Load() < projects*perProject {
					b, err := db.ClaimBuild(ctx, owner, time.Minute)
					if err != nil {
						mu.Lock()
						problems = append(problems, err.Error())
						mu.Unlock()
						return
					}
					if b == nil {
						time.Sleep(time.Millisecond)
						continue
					}
					mu.Lock()
					if claimed[b.ID] {
						problems = append(problems, fmt.Sprintf("build %d claimed twice", b.ID))
					}
					if other, ok := running[b.ProjectID]; ok {
						problems = append(problems, fmt.Sprintf("builds %d and %d of one project ran at once", other, b.ID))
					}
					claimed[b.ID], running[b.ProjectID] = true, b.ID
					started[b.ProjectID] = append(started[b.ProjectID], b.ID)
					mu.Unlock()
					time.Sleep(2 * time.Millisecond) // the build runs
					mu.Lock()
					delete(running, b.ProjectID) // before the finish commits, so the next claim is fair
					mu.Unlock()
					if _, err := db.FinishBuild(ctx, b.ID, owner, store.BuildResult{Status: store.BuildFailed, Error: "test"}); err != nil {
						mu.Lock()
						problems = append(problems, err.Error())
						mu.Unlock()
						return
					}
					done.Add(1)
				}
			}()
		}
		wg.Wait()
		if len(problems) > 0 {
			t.Fatalf("%d problems, first: %s", len(problems), problems[0])
		}
		for p, want := range queued {
			if fmt.Sprint(started[p]) != fmt.Sprint(want) {
				t.Fatalf("project %d builds started in order %v, want %v", p, started[p], want)
			}
		}
	})
}

// TestConcurrentDeploymentClaims checks the one-per-environment rule under racing workers.
func TestConcurrentDeploymentClaims(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		f := newJobFixture(t, db)
		v := f.mustVersion(t, "v1", 1)
		for range 6 {
			if _, err := db.CreateDeployment(ctx, f.deploy(v)); err != nil {
				t.Fatal(err)
			}
		}
		var wg sync.WaitGroup
		var got atomic.Int64
		for w := range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				d, err := db.ClaimDeployment(ctx, fmt.Sprintf("w%d", w), time.Minute)
				if err != nil {
					t.Error(err)
				}
				if d != nil {
					got.Add(1)
				}
			}()
		}
		wg.Wait()
		if got.Load() != 1 {
			t.Fatalf("%d deployments of one environment claimed at once, want 1", got.Load())
		}
	})
}

// BenchmarkClaimBuild measures claims per second on PostgreSQL with 4 workers that claim and
// finish builds of 64 projects.
func BenchmarkClaimBuild(b *testing.B) {
	db := storetest.Open(b, store.Postgres)
	ctx := context.Background()
	var ids []int64
	for p := range 64 {
		ids = append(ids, mustJobProject(b, db, fmt.Sprintf("bench%d", p)).ID)
	}
	for i := range b.N {
		mustBuild(b, db, ids[i%len(ids)], i)
	}
	b.ResetTimer()
	start := time.Now()
	var claimed atomic.Int64
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			owner := fmt.Sprintf("bench-%d", w)
			for claimed.Load() < int64(b.N) {
				bd, err := db.ClaimBuild(ctx, owner, time.Minute)
				if err != nil {
					b.Error(err)
					return
				}
				if bd == nil {
					continue
				}
				claimed.Add(1)
				if _, err := db.FinishBuild(ctx, bd.ID, owner, store.BuildResult{Status: store.BuildFailed}); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "claims/s")
}
