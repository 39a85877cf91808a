package build

import (
	"context"
	"strings"
	"testing"
	"time"

	"ferry/store"
	"ferry/store/storetest"
)

// TestGitLabCallsHoldNoBuildSlot: GitLab hangs on every call. A worker with one slot must
// still run two builds back to back, each ending as soon as its script and artifact are done,
// and the commit statuses and tags must reach GitLab once it answers again.
func TestGitLabCallsHoldNoBuildSlot(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newWorkerEnv(t, db)
		first := e.origin.commit("one", map[string]string{".ferry.yml": pipelineFile, "app.txt": "one"})
		second := e.origin.commit("two", map[string]string{"app.txt": "two"})
		release := e.gitlab.Stall(t)
		cfg := e.config("w1")
		cfg.Workers = 1
		_, stop := e.start(cfg)

		start := time.Now()
		b1, b2 := e.queue(first, "main"), e.queue(second, "main")
		for _, b := range []*store.Build{b1, b2} {
			for {
				got, err := db.GetBuild(context.Background(), b.ID)
				must(t, err)
				if got.Status == store.BuildSuccess {
					break
				}
				if got.FinishedAt != nil || time.Since(start) > 30*time.Second {
					t.Fatalf("build %d is %s after %s with GitLab hanging (want success, soon); log:\n%s",
						b.ID, got.Status, time.Since(start).Round(time.Millisecond), e.log(b.ID))
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		took := time.Since(start)
		if n := e.gitlab.Stalled(); n == 0 {
			t.Fatalf("no GitLab call was waiting when both builds had ended; the test proves nothing")
		}
		if s := e.gitlab.Statuses("group/app"); len(s) != 0 {
			t.Fatalf("GitLab recorded statuses while it hung: %+v", s)
		}
		t.Logf("two builds on one slot took %s while GitLab hung", took.Round(time.Millisecond))

		release()
		want := map[string]string{first: "running,success", second: "running,success"}
		eventually(func() bool { return len(e.gitlab.Tags("group/app")) == 2 && len(e.gitlab.Statuses("group/app")) == 4 })
		got := map[string][]string{}
		for _, s := range e.gitlab.Statuses("group/app") {
			got[s.SHA] = append(got[s.SHA], s.State)
		}
		for sha, states := range want {
			if strings.Join(got[sha], ",") != states {
				t.Errorf("commit %s: GitLab saw %v, want %s", store.ShortSHA(sha), got[sha], states)
			}
		}
		if tags := e.gitlab.Tags("group/app"); len(tags) != 2 {
			t.Errorf("GitLab tags = %+v, want one per build", tags)
		}
		// What GitLab said still lands in each build's log, after its end.
		for _, b := range []*store.Build{b1, b2} {
			e.waitLog(b.ID, "GitLab: tagged commit")
		}
		stop() // returns: nothing is left waiting
	})
}
