package store_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"ferry/store"
	"ferry/store/storetest"
)

// clock is a settable time for the store, so tests move time forward instead of sleeping.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// jobFixture is a project with an environment "staging" of three hosts, on a store whose
// clock the test moves.
type jobFixture struct {
	db      *store.DB
	clock   *clock
	project *store.Project
	staging *store.Environment
	hosts   []*store.Host // web1, web2, web3 in staging's order
}

func newJobFixture(t testing.TB, db *store.DB) *jobFixture {
	t.Helper()
	ctx := context.Background()
	f := &jobFixture{db: db, clock: &clock{now: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}}
	db.Now = f.clock.Now
	f.project = mustJobProject(t, db, "orders")
	for _, name := range []string{"web1", "web2", "web3"} {
		h := &store.Host{Name: name, Address: "127.0.0.1", User: "deploy"}
		if err := db.CreateHost(ctx, h); err != nil {
			t.Fatal(err)
		}
		f.hosts = append(f.hosts, h)
	}
	f.staging = &store.Environment{ProjectID: f.project.ID, Name: "staging", Hosts: []string{"web1", "web2", "web3"}}
	if err := db.CreateEnvironment(ctx, f.staging); err != nil {
		t.Fatal(err)
	}
	return f
}

func mustJobProject(t testing.TB, db *store.DB, name string) *store.Project {
	t.Helper()
	p := &store.Project{Name: name, GitLabPath: "group/" + name, CloneURL: "https://gitlab.example.com/group/" + name + ".git",
		Trigger: store.DefaultTrigger()}
	if err := db.CreateProject(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	return p
}

func sha(i int) string { return fmt.Sprintf("%040x", i+0xabc000) }

func newBuild(projectID int64, i int) store.NewBuild {
	return store.NewBuild{ProjectID: projectID, Ref: "main", Branch: "main", SHA: sha(i), CommitTitle: "change " + fmt.Sprint(i),
		TriggeredBy: "push by alice"}
}

func mustBuild(t testing.TB, db *store.DB, projectID int64, i int) *store.Build {
	t.Helper()
	b, err := db.CreateBuild(context.Background(), newBuild(projectID, i))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newVersion(name string, i int) *store.NewVersion {
	return &store.NewVersion{Name: name, SHA: sha(i), Ref: "main", SHA256: strings.Repeat("5", 64), Size: 1234,
		Path: "/data/artifacts/" + name + ".tar.gz", Pipeline: "build: {script: [make]}"}
}

// mustClaimBuild claims the next build and fails the test unless it is want.
func mustClaimBuild(t testing.TB, db *store.DB, owner string, want int64) *store.Build {
	t.Helper()
	b, err := db.ClaimBuild(context.Background(), owner, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if b == nil || b.ID != want {
		t.Fatalf("ClaimBuild by %s = %+v, want build %d", owner, b, want)
	}
	return b
}

// mustSucceed claims the next build, which must be b, and finishes it with a version called
// name.
func mustSucceed(t testing.TB, db *store.DB, b *store.Build, name string) *store.Build {
	t.Helper()
	mustClaimBuild(t, db, "w-succeed", b.ID)
	v := newVersion(name, 0)
	v.SHA = b.SHA
	done, err := db.FinishBuild(context.Background(), b.ID, "w-succeed", store.BuildResult{Status: store.BuildSuccess, Version: v})
	if err != nil {
		t.Fatal(err)
	}
	return done
}

func outboxOf(t testing.TB, db *store.DB, kind string, id int64) []string {
	t.Helper()
	entries, err := db.ListOutbox(context.Background(), 1000)
	if err != nil {
		t.Fatal(err)
	}
	var events []string
	for _, e := range entries {
		if e.JobKind == kind && e.JobID == id {
			events = append(events, e.Event)
		}
	}
	return events
}

func logText(t testing.TB, db *store.DB, kind string, id int64) string {
	t.Helper()
	lines, err := db.ReadLog(context.Background(), kind, id, 0, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, l := range lines {
		fmt.Fprintf(&b, "%d %s %s\n", l.Seq, l.Stream, l.Text)
	}
	return b.String()
}

func wantCode(t testing.TB, what string, err error, code, msg string) {
	t.Helper()
	if store.ErrorCode(err) != code || !strings.Contains(store.ErrorMessage(err), msg) {
		t.Fatalf("%s: got %v (%s), want %s containing %q", what, err, store.ErrorCode(err), code, msg)
	}
}

func TestRecordEvent(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		f := newJobFixture(t, db)
		key := "delivery-1"
		nb := newBuild(f.project.ID, 1)
		ev, b, dup, err := db.RecordEvent(ctx, &store.Event{DeliveryKey: &key, Kind: "push", Ref: "refs/heads/main", SHA: nb.SHA,
			Author: "alice", Message: "fix devops"}, &nb)
		if err != nil || dup {
			t.Fatalf("RecordEvent = %v, dup %v", err, dup)
		}
		if ev.Project != "orders" || ev.Decision != store.EventBuild || ev.BuildID == nil || b == nil || *ev.BuildID != b.ID {
			t.Fatalf("event %+v, build %+v", ev, b)
		}
		if b.Status != store.BuildPending || b.Number != 1 || b.Project != "orders" || b.SHA != nb.SHA {
			t.Fatalf("build %+v", b)
		}

		// A redelivery creates nothing and answers with the first event and build.
		nb2 := newBuild(f.project.ID, 1)
		ev2, b2, dup, err := db.RecordEvent(ctx, &store.Event{DeliveryKey: &key, Kind: "push"}, &nb2)
		if err != nil || !dup || ev2.ID != ev.ID || b2 == nil || b2.ID != b.ID {
			t.Fatalf("redelivery = %+v, %+v, dup %v, %v", ev2, b2, dup, err)
		}

		// An event that builds nothing, and one of no known project.
		if _, b, _, err := db.RecordEvent(ctx, &store.Event{ProjectID: &f.project.ID, Kind: "push", Ref: "refs/heads/dev",
			Reason: `branch "dev" is not in the trigger's branches`}, nil); err != nil || b != nil {
			t.Fatalf("skipped event: %v, build %v", err, b)
		}
		if ev, _, _, err := db.RecordEvent(ctx, &store.Event{Kind: "push", Reason: "no project with GitLab path x/y"}, nil); err != nil || ev.ProjectID != nil || ev.Project != "" {
			t.Fatalf("event of unknown project: %+v, %v", ev, err)
		}
		events, err := db.ListEvents(ctx, f.project.ID, 0)
		if err != nil || len(events) != 2 {
			t.Fatalf("ListEvents = %d events, %v; want 2", len(events), err)
		}
		if events[0].Decision != store.EventSkip || !strings.Contains(events[0].Reason, "dev") || events[1].ID != ev.ID {
			t.Fatalf("events newest first: %+v, %+v", events[0], events[1])
		}
		builds, _ := db.ListBuilds(ctx, store.BuildFilter{ProjectID: f.project.ID})
		if len(builds) != 1 {
			t.Fatalf("%d builds after a redelivery, want 1", len(builds))
		}

		// Bad input changes nothing.
		bad := newBuild(f.project.ID, 2)
		bad.SHA = "$(id)"
		_, _, _, err = db.RecordEvent(ctx, &store.Event{Kind: "push"}, &bad)
		wantCode(t, "bad sha", err, store.EINVALID, "sha")
		if events, _ := db.ListEvents(ctx, f.project.ID, 0); len(events) != 2 {
			t.Fatalf("a refused event was stored")
		}
	})
}

func TestRecordEventRace(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		f := newJobFixture(t, db)
		const n = 12
		var wg sync.WaitGroup
		type result struct {
			ev  *store.Event
			b   *store.Build
			dup bool
			err error
		}
		results := make([]result, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				key := "same-uuid"
				nb := newBuild(f.project.ID, 7)
				var r result
				r.ev, r.b, r.dup, r.err = db.RecordEvent(context.Background(), &store.Event{DeliveryKey: &key, Kind: "push"}, &nb)
				results[i] = r
			}()
		}
		wg.Wait()
		first := 0
		for _, r := range results {
			if r.err != nil {
				t.Fatalf("concurrent delivery: %v", r.err)
			}
			if !r.dup {
				first++
			}
			if r.ev.ID != results[0].ev.ID || r.b == nil || r.b.ID != results[0].b.ID {
				t.Fatalf("deliveries answered with different events or builds: %+v vs %+v", r.ev, results[0].ev)
			}
		}
		builds, _ := f.db.ListBuilds(context.Background(), store.BuildFilter{ProjectID: f.project.ID})
		if first != 1 || len(builds) != 1 {
			t.Fatalf("%d deliveries were first and %d builds were queued, want 1 and 1", first, len(builds))
		}
	})
}

func TestBuildLifecycle(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := actorCtx()
		f := newJobFixture(t, db)
		b1, err := db.CreateBuild(ctx, newBuild(f.project.ID, 1))
		if err != nil {
			t.Fatal(err)
		}
		b2 := mustBuild(t, db, f.project.ID, 2)
		if b1.Number != 1 || b2.Number != 2 || b1.TriggeredBy != "push by alice" || b1.QueuedAt.Location() != time.UTC {
			t.Fatalf("builds %+v, %+v", b1, b2)
		}
		_, err = db.CreateBuild(ctx, store.NewBuild{ProjectID: 9999, SHA: sha(1)})
		wantCode(t, "unknown project", err, store.ENOTFOUND, "project 9999")
		_, err = db.CreateBuild(ctx, store.NewBuild{ProjectID: f.project.ID})
		wantCode(t, "no sha", err, store.EINVALID, "sha: required")

		// Cancel a pending build: it ends at once.
		c, err := db.CancelBuild(ctx, b2.ID)
		if err != nil || c.Status != store.BuildCanceled || c.FinishedAt == nil {
			t.Fatalf("cancel pending = %+v, %v", c, err)
		}
		_, err = db.CancelBuild(ctx, b2.ID)
		wantCode(t, "cancel ended", err, store.ECONFLICT, fmt.Sprintf("build %d has already ended (canceled)", b2.ID))
		_, err = db.CancelBuild(ctx, 424242)
		wantCode(t, "cancel unknown", err, store.ENOTFOUND, "build 424242")

		// Cancel a running build: the worker hears it on renewal.
		mustClaimBuild(t, db, "w1", b1.ID)
		if cancel, err := db.RenewBuild(ctx, b1.ID, "w1", time.Minute); err != nil || cancel {
			t.Fatalf("renew = %v, %v", cancel, err)
		}
		if c, err := db.CancelBuild(ctx, b1.ID); err != nil || c.Status != store.BuildRunning || !c.CancelRequested {
			t.Fatalf("cancel running = %+v, %v", c, err)
		}
		if cancel, err := db.RenewBuild(ctx, b1.ID, "w1", time.Minute); err != nil || !cancel {
			t.Fatalf("renew after cancel = %v, %v; want cancel", cancel, err)
		}
		done, err := db.FinishBuild(ctx, b1.ID, "w1", store.BuildResult{Status: store.BuildCanceled, Error: "canceled by tester"})
		if err != nil || done.Status != store.BuildCanceled || done.FinishedAt == nil {
			t.Fatalf("finish canceled = %+v, %v", done, err)
		}
		if got := outboxOf(t, db, store.JobBuild, b1.ID); len(got) != 0 {
			t.Fatalf("a canceled build wrote %v to the outbox", got)
		}
		audit, _ := db.ListAudit(ctx, store.AuditFilter{})
		var actions []string
		for _, a := range audit {
			if strings.HasPrefix(a.Action, "build.") {
				actions = append(actions, a.Action+" "+a.Target)
			}
		}
		want := fmt.Sprintf("build.cancel project/orders/build/%d", b1.ID)
		if len(actions) != 3 || actions[0] != want {
			t.Fatalf("audit %v, want create and two cancels, newest %q", actions, want)
		}
	})
}

func TestClaimBuildOrderAndLease(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		f := newJobFixture(t, db)
		other := mustJobProject(t, db, "billing")
		a := mustBuild(t, db, f.project.ID, 1)
		b := mustBuild(t, db, f.project.ID, 2)
		c := mustBuild(t, db, other.ID, 3)

		mustClaimBuild(t, db, "w1", a.ID)
		got := mustClaimBuild(t, db, "w2", c.ID) // b waits: orders has a running build
		if got.Status != store.BuildRunning || got.Attempts != 1 || got.StartedAt == nil {
			t.Fatalf("claimed %+v", got)
		}
		if n, err := db.ClaimBuild(ctx, "w3", time.Minute); err != nil || n != nil {
			t.Fatalf("third claim = %+v, %v; want nothing", n, err)
		}

		_, err := db.RenewBuild(ctx, a.ID, "w2", time.Minute)
		wantCode(t, "renew by another worker", err, store.ECONFLICT, "held by worker w1")
		_, err = db.FinishBuild(ctx, a.ID, "w2", store.BuildResult{Status: store.BuildFailed})
		wantCode(t, "finish by another worker", err, store.ECONFLICT, "held by worker w1")
		_, err = db.FinishBuild(ctx, a.ID, "w1", store.BuildResult{Status: store.BuildSuccess})
		wantCode(t, "success without version", err, store.EINVALID, "version")

		done, err := db.FinishBuild(ctx, a.ID, "w1", store.BuildResult{Status: store.BuildSuccess, Version: newVersion("20250301120000-main-abc0001", 1)})
		if err != nil || done.Status != store.BuildSuccess || done.Version != "20250301120000-main-abc0001" || done.VersionID == nil {
			t.Fatalf("finish = %+v, %v", done, err)
		}
		if ev := outboxOf(t, db, store.JobBuild, a.ID); len(ev) != 1 || ev[0] != store.OutboxBuildSucceeded {
			t.Fatalf("outbox %v", ev)
		}
		_, err = db.RenewBuild(ctx, a.ID, "w1", time.Minute)
		wantCode(t, "renew ended build", err, store.ECONFLICT, "not running (success)")

		// b goes next; a taken version name fails and leaves the build running.
		mustClaimBuild(t, db, "w1", b.ID)
		_, err = db.FinishBuild(ctx, b.ID, "w1", store.BuildResult{Status: store.BuildSuccess, Version: newVersion("20250301120000-main-abc0001", 2)})
		wantCode(t, "version name taken", err, store.ECONFLICT, "version 20250301120000-main-abc0001 already exists")
		if got, _ := db.GetBuild(ctx, b.ID); got.Status != store.BuildRunning {
			t.Fatalf("after a refused finish the build is %s", got.Status)
		}
		// A duplicate points at the existing version.
		dup, err := db.FinishBuild(ctx, b.ID, "w1", store.BuildResult{Status: store.BuildDuplicate, VersionID: done.VersionID})
		if err != nil || dup.Version != done.Version || *dup.VersionID != *done.VersionID {
			t.Fatalf("duplicate = %+v, %v", dup, err)
		}
		if ev := outboxOf(t, db, store.JobBuild, b.ID); len(ev) != 0 {
			t.Fatalf("duplicate wrote outbox %v", ev)
		}
		// A failed one says so in the outbox.
		fail := mustBuild(t, db, other.ID, 4)
		db.FinishBuild(ctx, c.ID, "w2", store.BuildResult{Status: store.BuildTimeout, Error: "the build ran longer than 20m"})
		mustClaimBuild(t, db, "w2", fail.ID)
		if _, err := db.FinishBuild(ctx, fail.ID, "w2", store.BuildResult{Status: store.BuildFailed, Error: "exit status 2"}); err != nil {
			t.Fatal(err)
		}
		for _, id := range []int64{c.ID, fail.ID} {
			if ev := outboxOf(t, db, store.JobBuild, id); len(ev) != 1 || ev[0] != store.OutboxBuildFailed {
				t.Fatalf("build %d outbox %v", id, ev)
			}
		}

		list, err := db.ListBuilds(ctx, store.BuildFilter{ProjectID: f.project.ID, Status: []string{store.BuildSuccess, store.BuildDuplicate}})
		if err != nil || len(list) != 2 || list[0].ID != b.ID || list[1].Version == "" {
			t.Fatalf("ListBuilds = %+v, %v", list, err)
		}
		if page, _ := db.ListBuilds(ctx, store.BuildFilter{Limit: 1, BeforeID: b.ID}); len(page) != 1 || page[0].ID != a.ID {
			t.Fatalf("paging = %+v", page)
		}
	})
}

func TestReapBuilds(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		f := newJobFixture(t, db)
		b := mustBuild(t, db, f.project.ID, 1)
		mustClaimBuild(t, db, "dead-worker", b.ID)
		if rq, fl, err := db.ReapBuilds(ctx, 2); err != nil || rq+fl != 0 {
			t.Fatalf("reap of a live lease = %d, %d, %v", rq, fl, err)
		}
		f.clock.Add(2 * time.Minute)
		if rq, fl, err := db.ReapBuilds(ctx, 2); err != nil || rq != 1 || fl != 0 {
			t.Fatalf("first reap = %d requeued, %d failed, %v", rq, fl, err)
		}
		got, _ := db.GetBuild(ctx, b.ID)
		if got.Status != store.BuildPending || got.StartedAt != nil || got.Attempts != 1 {
			t.Fatalf("requeued build %+v", got)
		}
		_, err := db.RenewBuild(ctx, b.ID, "dead-worker", time.Minute)
		wantCode(t, "renew after takeover", err, store.ECONFLICT, "dead-worker")

		got = mustClaimBuild(t, db, "w2", b.ID)
		if got.Attempts != 2 {
			t.Fatalf("attempts %d, want 2", got.Attempts)
		}
		f.clock.Add(2 * time.Minute)
		if rq, fl, err := db.ReapBuilds(ctx, 2); err != nil || rq != 0 || fl != 1 {
			t.Fatalf("second reap = %d requeued, %d failed, %v", rq, fl, err)
		}
		got, _ = db.GetBuild(ctx, b.ID)
		if got.Status != store.BuildFailed || got.Error != store.WorkerLost || got.FinishedAt == nil {
			t.Fatalf("reaped build %+v", got)
		}
		if ev := outboxOf(t, db, store.JobBuild, b.ID); len(ev) != 1 || ev[0] != store.OutboxBuildFailed {
			t.Fatalf("outbox %v", ev)
		}
		log := logText(t, db, store.JobBuild, b.ID)
		if !strings.Contains(log, "1 ferry worker lost") || !strings.Contains(log, "queued again (attempt 1 of 2)") ||
			!strings.Contains(log, "2 ferry worker lost: the ferry process running it stopped and its lease ran out") {
			t.Fatalf("log:\n%s", log)
		}

		// A build whose cancel was asked for ends canceled, not retried.
		c := mustBuild(t, db, f.project.ID, 2)
		mustClaimBuild(t, db, "w3", c.ID)
		db.CancelBuild(ctx, c.ID)
		f.clock.Add(2 * time.Minute)
		db.ReapBuilds(ctx, 5)
		if got, _ := db.GetBuild(ctx, c.ID); got.Status != store.BuildCanceled {
			t.Fatalf("reaped canceled build is %s", got.Status)
		}
	})
}

func TestVersionsAndPrune(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		f := newJobFixture(t, db)
		var names []string
		for i := range 6 {
			name := fmt.Sprintf("v%d", i)
			names = append(names, name)
			mustSucceed(t, db, mustBuild(t, db, f.project.ID, i), name)
		}
		v0, err := db.GetVersionByName(ctx, f.project.ID, "v0")
		if err != nil || v0.Size != 1234 || v0.SHA256 != strings.Repeat("5", 64) || v0.Project != "orders" || v0.BuildID == 0 {
			t.Fatalf("v0 = %+v, %v", v0, err)
		}
		if v, err := db.VersionBySHA(ctx, f.project.ID, sha(1)); err != nil || v.Name != "v1" {
			t.Fatalf("VersionBySHA = %+v, %v", v, err)
		}
		_, err = db.VersionBySHA(ctx, f.project.ID, sha(99))
		wantCode(t, "unknown sha", err, store.ENOTFOUND, "version of commit")

		// v0 runs on web1, v1 is web1's previous, v2 a queued deployment needs.
		v2, _ := db.GetVersionByName(ctx, f.project.ID, "v2")
		if err := db.SetInstance(ctx, store.Instance{ProjectID: f.project.ID, HostID: f.hosts[0].ID, Version: "v0", Previous: "v1"}); err != nil {
			t.Fatal(err)
		}
		if _, err := db.CreateDeployment(ctx, store.NewDeployment{ProjectID: f.project.ID, EnvironmentID: f.staging.ID, VersionID: v2.ID}); err != nil {
			t.Fatal(err)
		}
		_, err = db.PruneVersions(ctx, f.project.ID, 0)
		wantCode(t, "keep 0", err, store.EINVALID, "keep_versions")
		marked, err := db.PruneVersions(ctx, f.project.ID, 2)
		if err != nil || len(marked) != 1 || marked[0].Name != "v3" || marked[0].DeletedAt == nil || marked[0].Path == "" {
			t.Fatalf("PruneVersions = %+v, %v; want v3 only", marked, err)
		}
		kept, _ := db.ListVersions(ctx, f.project.ID, false)
		var keptNames []string
		for _, v := range kept {
			keptNames = append(keptNames, v.Name)
		}
		if strings.Join(keptNames, " ") != "v5 v4 v2 v1 v0" {
			t.Fatalf("kept %v", keptNames)
		}
		all, _ := db.ListVersions(ctx, f.project.ID, true)
		if len(all) != 6 {
			t.Fatalf("with deleted: %d versions", len(all))
		}
		_, err = db.GetVersionByName(ctx, f.project.ID, "v3")
		wantCode(t, "pruned by name", err, store.ENOTFOUND, "v3 was removed by retention")
		if v, err := db.GetVersion(ctx, marked[0].ID); err != nil || v.DeletedAt == nil {
			t.Fatalf("GetVersion of pruned = %+v, %v", v, err)
		}
		if again, _ := db.PruneVersions(ctx, f.project.ID, 2); len(again) != 0 {
			t.Fatalf("second prune marked %d", len(again))
		}
	})
}
