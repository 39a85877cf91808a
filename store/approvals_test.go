package store_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"ferry/store"
	"ferry/store/storetest"
)

// gateFixture is a jobFixture with people: alice and dave are members with the production
// right, bob a member without it, carol an administrator, eve not a member.
type gateFixture struct {
	*jobFixture
	users map[string]*store.User
	v     *store.Version
}

func newGateFixture(t *testing.T, db *store.DB) *gateFixture {
	t.Helper()
	db.PasswordCost = 4
	g := &gateFixture{jobFixture: newJobFixture(t, db), users: map[string]*store.User{}}
	ctx := actorCtx()
	for _, name := range []string{"alice", "bob", "carol", "dave", "eve"} {
		u := &store.User{Name: name, Email: name + "@example.com", Admin: name == "carol"}
		if err := db.CreateUser(ctx, u, "correct horse battery"); err != nil {
			t.Fatal(err)
		}
		g.users[name] = u
	}
	for name, production := range map[string]bool{"alice": true, "bob": false, "dave": true} {
		if _, err := db.SetMember(ctx, g.project.ID, name, production); err != nil {
			t.Fatal(err)
		}
	}
	g.v = g.mustVersion(t, "v1", 1)
	return g
}

// as is the context of a request by the named person.
func (g *gateFixture) as(name string) context.Context {
	u := g.users[name]
	return store.WithActor(context.Background(), store.Actor{UserID: u.ID, Name: u.Name, RemoteAddr: "192.0.2.9"})
}

func (g *gateFixture) setGates(t *testing.T, protected bool, approvals int, freezes ...store.Freeze) {
	t.Helper()
	if freezes == nil {
		freezes = []store.Freeze{}
	}
	_, err := g.db.UpdateEnvironment(actorCtx(), g.project.ID, "staging",
		store.EnvironmentUpdate{Protected: &protected, ApprovalsRequired: &approvals, Freezes: &freezes})
	if err != nil {
		t.Fatal(err)
	}
}

func mustGet(t *testing.T, db *store.DB, id int64) *store.Deployment {
	t.Helper()
	d, err := db.GetDeployment(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func auditActions(t *testing.T, db *store.DB) string {
	t.Helper()
	entries, err := db.ListAudit(context.Background(), store.AuditFilter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.UserName+" "+e.Action+" "+e.Detail)
	}
	return strings.Join(out, "\n")
}

func TestEnvironmentGatesAreStored(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		g := newGateFixture(t, db)
		fz := store.Freeze{Cron: "0 18 * * 5", Duration: "62h", Timezone: "Asia/Shanghai", Reason: "weekend"}
		g.setGates(t, true, 2, fz)
		e, err := db.GetEnvironment(context.Background(), g.project.ID, "staging")
		if err != nil {
			t.Fatal(err)
		}
		if e.ApprovalsRequired != 2 || len(e.Freezes) != 1 || e.Freezes[0] != fz {
			t.Fatalf("environment read back as %+v", e)
		}
		bad := []store.Freeze{{Cron: "0 18 * * 5", Duration: "62h", Timezone: "Nowhere/Town"}}
		_, err = db.UpdateEnvironment(actorCtx(), g.project.ID, "staging", store.EnvironmentUpdate{Freezes: &bad})
		wantCode(t, "bad zone", err, store.EINVALID, "freezes[0].timezone")
		n := 11
		_, err = db.UpdateEnvironment(actorCtx(), g.project.ID, "staging", store.EnvironmentUpdate{ApprovalsRequired: &n})
		wantCode(t, "too many approvals", err, store.EINVALID, "approvals_required")
	})
}

func TestFourEyesApproval(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		g := newGateFixture(t, db)
		g.setGates(t, true, 2)
		d, err := db.CreateDeployment(g.as("alice"), g.deploy(g.v))
		if err != nil {
			t.Fatal(err)
		}
		if d.Status != store.DeploymentAwaitingApproval || d.RequestedBy != "alice" || d.ApprovalsRequired != 2 ||
			d.ApprovalExpiresAt == nil || !d.ApprovalExpiresAt.Equal(g.clock.Now().Add(24*time.Hour)) {
			t.Fatalf("new deployment %+v, want awaiting 2 approvals for 24 h, asked by alice", d)
		}
		if got, err := db.ClaimDeployment(context.Background(), "w", time.Minute); err != nil || got != nil {
			t.Fatalf("a worker claimed a deployment awaiting approval: %+v %v", got, err)
		}
		for _, who := range []string{"alice", "dave", "carol"} {
			list, err := db.ListApprovals(context.Background(), g.users[who].ID)
			if err != nil {
				t.Fatal(err)
			}
			if want := who != "alice"; (len(list) == 1) != want {
				t.Errorf("approvals waiting for %s: %d, want it listed: %v", who, len(list), want)
			}
		}
		_, err = db.ApproveDeployment(g.as("alice"), d.ID, "lgtm")
		wantCode(t, "the requester approves", err, store.EFORBIDDEN, "someone else must approve")
		_, err = db.ApproveDeployment(g.as("bob"), d.ID, "")
		wantCode(t, "a member without the production right", err, store.EFORBIDDEN, "production right")
		_, err = db.ApproveDeployment(g.as("eve"), d.ID, "")
		wantCode(t, "a stranger", err, store.EFORBIDDEN, "not a member")

		d, err = db.ApproveDeployment(g.as("carol"), d.ID, "checked the migration")
		if err != nil {
			t.Fatal(err)
		}
		if d.Status != store.DeploymentAwaitingApproval || len(d.Approvals) != 1 || d.Approvals[0].User != "carol" ||
			d.Approvals[0].Comment != "checked the migration" || d.Approvals[0].Decision != store.DecisionApproved {
			t.Fatalf("after one of two approvals: %+v %+v", d, d.Approvals)
		}
		_, err = db.ApproveDeployment(g.as("carol"), d.ID, "again")
		wantCode(t, "approving twice", err, store.ECONFLICT, "already approved")

		d, err = db.ApproveDeployment(g.as("dave"), d.ID, "")
		if err != nil {
			t.Fatal(err)
		}
		if d.Status != store.DeploymentQueued || len(d.Approvals) != 2 {
			t.Fatalf("after two approvals: status %s, %d approvals, want queued", d.Status, len(d.Approvals))
		}
		_, err = db.RejectDeployment(g.as("eve"), d.ID, "too late")
		wantCode(t, "deciding after the end", err, store.ECONFLICT, "does not await approval")
		if got := strings.Join(outboxOf(t, db, store.JobDeployment, d.ID), " "); got != "deployment.awaiting_approval deployment.approved" {
			t.Errorf("outbox %q", got)
		}
		audit := auditActions(t, db)
		for _, want := range []string{"carol deployment.approve deployment 1: approved by carol: checked the migration", "dave deployment.approve"} {
			if !strings.Contains(audit, want) {
				t.Errorf("audit lacks %q:\n%s", want, audit)
			}
		}
		mustClaimDeployment(t, db, "w", d.ID)
	})
}

func TestRejectionEndsTheDeployment(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		g := newGateFixture(t, db)
		g.setGates(t, false, 1)
		d, err := db.CreateDeployment(g.as("alice"), g.deploy(g.v))
		if err != nil {
			t.Fatal(err)
		}
		// bob may approve on an unprotected environment.
		if d, err = db.RejectDeployment(g.as("bob"), d.ID, "not before the release notes"); err != nil {
			t.Fatal(err)
		}
		if d.Status != store.DeploymentRejected || !strings.Contains(d.Error, "rejected by bob: not before the release notes") ||
			d.FinishedAt == nil || hostSummary(d) != "web1:canceled web2:canceled web3:canceled" {
			t.Fatalf("rejected deployment %+v %s", d, hostSummary(d))
		}
		_, err = db.ApproveDeployment(g.as("dave"), d.ID, "")
		wantCode(t, "approving after a rejection", err, store.ECONFLICT, "rejected")
		if got := strings.Join(outboxOf(t, db, store.JobDeployment, d.ID), " "); got != "deployment.awaiting_approval deployment.rejected" {
			t.Errorf("outbox %q", got)
		}
		if a := auditActions(t, db); !strings.Contains(a, "bob deployment.reject") {
			t.Errorf("audit lacks the rejection:\n%s", a)
		}
	})
}

func TestApprovalExpires(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		g := newGateFixture(t, db)
		g.setGates(t, false, 1)
		d, err := db.CreateDeployment(g.as("alice"), g.deploy(g.v))
		if err != nil {
			t.Fatal(err)
		}
		g.clock.Add(23 * time.Hour)
		if res, err := db.PromoteDeployments(context.Background()); err != nil || res != (store.PromoteResult{}) {
			t.Fatalf("before the expiry: %+v %v", res, err)
		}
		g.clock.Add(time.Hour)
		res, err := db.PromoteDeployments(context.Background())
		if err != nil || res.Expired != 1 {
			t.Fatalf("at the expiry: %+v %v", res, err)
		}
		d = mustGet(t, db, d.ID)
		if d.Status != store.DeploymentRejected || !strings.Contains(d.Error, "expired") || !strings.Contains(d.Error, "0 of 1") {
			t.Fatalf("expired deployment: %s %q", d.Status, d.Error)
		}
		_, err = db.ApproveDeployment(g.as("dave"), d.ID, "")
		wantCode(t, "approving after expiry", err, store.ECONFLICT, "does not await approval")
		if a := auditActions(t, db); !strings.Contains(a, "ferry deployment.expire") {
			t.Errorf("audit lacks the expiry:\n%s", a)
		}
		if got := strings.Join(outboxOf(t, db, store.JobDeployment, d.ID), " "); got != "deployment.awaiting_approval deployment.rejected" {
			t.Errorf("outbox %q", got)
		}
	})
}

// Two ferry processes (two store handles on one database) race to promote a scheduled
// deployment many times over; it is queued once, and a process started later does nothing.
func TestScheduledDeploymentRunsOnce(t *testing.T) {
	for _, dialect := range storetest.Dialects {
		t.Run(string(dialect), func(t *testing.T) {
			u := storetest.URL(t, dialect)
			db1 := storetest.OpenURL(t, u)
			g := newGateFixture(t, db1)
			db2 := storetest.OpenURL(t, u)
			db2.Now = g.clock.Now
			nd := g.deploy(g.v)
			at := g.clock.Now().Add(time.Hour)
			nd.ScheduledAt = &at
			d, err := db1.CreateDeployment(g.as("alice"), nd)
			if err != nil {
				t.Fatal(err)
			}
			if d.Status != store.DeploymentScheduled || d.ScheduledAt == nil || !d.ScheduledAt.Equal(at) {
				t.Fatalf("new deployment %s at %v, want scheduled at %s", d.Status, d.ScheduledAt, at)
			}
			if res, _ := db2.PromoteDeployments(context.Background()); res.Queued != 0 {
				t.Fatal("promoted before its time")
			}
			g.clock.Add(time.Hour)
			var mu sync.Mutex
			queued := 0
			var wg sync.WaitGroup
			for i := range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					db := []*store.DB{db1, db2}[i%2]
					res, err := db.PromoteDeployments(context.Background())
					if err != nil {
						t.Error(err)
					}
					mu.Lock()
					queued += res.Queued
					mu.Unlock()
				}()
			}
			wg.Wait()
			if queued != 1 {
				t.Fatalf("queued %d times, want once", queued)
			}
			db3 := storetest.OpenURL(t, u) // a process started after a restart
			db3.Now = g.clock.Now
			if res, err := db3.PromoteDeployments(context.Background()); err != nil || res.Queued != 0 {
				t.Fatalf("after a restart: %+v %v", res, err)
			}
			if n := strings.Count(logText(t, db1, store.JobDeployment, d.ID), "due: queued"); n != 1 {
				t.Errorf("%d due lines in the log", n)
			}
			if n := strings.Count(auditActions(t, db1), "deployment.queue"); n != 1 {
				t.Errorf("%d audit entries of the promotion", n)
			}
			mustClaimDeployment(t, db2, "w", d.ID)
		})
	}
}

func TestScheduleIntoAFreezeWaitsThenRuns(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		g := newGateFixture(t, db)
		now := g.clock.Now()
		g.setGates(t, false, 0, store.Freeze{From: now.Add(time.Hour).Format(time.RFC3339), Until: now.Add(3 * time.Hour).Format(time.RFC3339), Reason: "board meeting"})
		nd := g.deploy(g.v)
		at := now.Add(2 * time.Hour)
		nd.ScheduledAt = &at
		d, err := db.CreateDeployment(g.as("bob"), nd)
		if err != nil {
			t.Fatal(err)
		}
		g.clock.Add(2 * time.Hour)
		res, err := db.PromoteDeployments(context.Background())
		if err != nil || res.Frozen != 1 || res.Queued != 0 {
			t.Fatalf("in the freeze: %+v %v", res, err)
		}
		d = mustGet(t, db, d.ID)
		if d.Status != store.DeploymentScheduled || !strings.Contains(d.FrozenBy, "board meeting") || !strings.Contains(d.WaitingFor, "freeze") {
			t.Fatalf("in the freeze: %s, frozen_by %q, waiting for %q", d.Status, d.FrozenBy, d.WaitingFor)
		}
		g.clock.Add(time.Hour)
		if res, err = db.PromoteDeployments(context.Background()); err != nil || res.Queued != 1 {
			t.Fatalf("after the freeze: %+v %v", res, err)
		}
		d = mustGet(t, db, d.ID)
		if d.Status != store.DeploymentQueued || d.FrozenBy != "" {
			t.Fatalf("after the freeze: %s, frozen_by %q", d.Status, d.FrozenBy)
		}
		if log := logText(t, db, store.JobDeployment, d.ID); !strings.Contains(log, "frozen") || !strings.Contains(log, "due: queued") {
			t.Errorf("log:\n%s", log)
		}
	})
}

func TestFreezeRefusesAndAnAdministratorOverrides(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		g := newGateFixture(t, db)
		// 2025-03-01 12:00 UTC is a Saturday, inside the Shanghai weekend freeze.
		g.setGates(t, false, 0, store.Freeze{Cron: "0 18 * * 5", Duration: "62h", Timezone: "Asia/Shanghai", Reason: "weekend"})
		_, err := db.CreateDeployment(g.as("alice"), g.deploy(g.v))
		wantCode(t, "deploying in a freeze", err, store.ECONFLICT, `frozen: "weekend", recurring freeze "0 18 * * 5" for 62h (Asia/Shanghai); it ends at 2025-03-03T08:00:00+08:00`)

		nd := g.deploy(g.v)
		nd.OverrideFreeze, nd.OverrideReason = true, "hotfix for the payment outage"
		_, err = db.CreateDeployment(g.as("alice"), nd)
		wantCode(t, "a member overrides", err, store.EFORBIDDEN, "only an administrator")
		nd.OverrideReason = " "
		_, err = db.CreateDeployment(g.as("carol"), nd)
		wantCode(t, "an override without a reason", err, store.EINVALID, "reason")

		nd.OverrideReason = "hotfix for the payment outage"
		d, err := db.CreateDeployment(g.as("carol"), nd)
		if err != nil {
			t.Fatal(err)
		}
		if d.Status != store.DeploymentQueued || d.OverrideReason != "hotfix for the payment outage" {
			t.Fatalf("overridden deployment %s, reason %q", d.Status, d.OverrideReason)
		}
		if a := auditActions(t, db); !strings.Contains(a, "carol deployment.override_freeze deployment 1: hotfix for the payment outage") {
			t.Errorf("audit lacks the override:\n%s", a)
		}
		// After the window it deploys as usual.
		g.clock.Add(44 * time.Hour)
		if _, err := db.CreateDeployment(g.as("alice"), g.deploy(g.v)); err != nil {
			t.Fatalf("after the freeze: %v", err)
		}
	})
}

func TestAutoDeployPassesTheGates(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		g := newGateFixture(t, db)
		g.setGates(t, true, 1)
		// Asked for by alice, who has the production right (a build nobody with it asked
		// for does not deploy to a protected environment by itself).
		b, err := db.CreateBuild(g.as("alice"), newBuild(g.project.ID, 2))
		if err != nil {
			t.Fatal(err)
		}
		mustClaimBuild(t, db, "w", b.ID)
		v := newVersion("v2", 2)
		_, err = db.FinishBuild(context.Background(), b.ID, "w", store.BuildResult{Status: store.BuildSuccess, Version: v,
			Deploy: []store.NewDeployment{{EnvironmentID: g.staging.ID}}})
		if err != nil {
			t.Fatal(err)
		}
		list, err := db.ListDeployments(context.Background(), store.DeploymentFilter{ProjectID: g.project.ID})
		if err != nil || len(list) != 1 {
			t.Fatalf("%d deployments, %v", len(list), err)
		}
		d := list[0]
		if d.Status != store.DeploymentAwaitingApproval || d.RequestedBy != "alice" {
			t.Fatalf("automatic deployment %s by %q, want awaiting approval, asked for by alice", d.Status, d.RequestedBy)
		}
		if got, _ := db.ClaimDeployment(context.Background(), "w", time.Minute); got != nil {
			t.Fatal("a worker claimed an automatic deployment awaiting approval")
		}
		// Anyone else with the right may approve, here the production right.
		if _, err := db.ApproveDeployment(g.as("bob"), d.ID, ""); store.ErrorCode(err) != store.EFORBIDDEN {
			t.Fatalf("bob approved a protected deployment: %v", err)
		}
		if d, err = db.ApproveDeployment(g.as("dave"), d.ID, ""); err != nil || d.Status != store.DeploymentQueued {
			t.Fatalf("approved: %+v %v", d, err)
		}

		// In a freeze an automatic deployment waits instead of failing the build.
		now := g.clock.Now()
		g.setGates(t, false, 0, store.Freeze{From: now.Add(-time.Hour).Format(time.RFC3339), Until: now.Add(time.Hour).Format(time.RFC3339)})
		b = mustBuild(t, db, g.project.ID, 3)
		mustClaimBuild(t, db, "w", b.ID)
		if _, err = db.FinishBuild(context.Background(), b.ID, "w", store.BuildResult{Status: store.BuildSuccess, Version: newVersion("v3", 3),
			Deploy: []store.NewDeployment{{EnvironmentID: g.staging.ID}}}); err != nil {
			t.Fatal(err)
		}
		list, _ = db.ListDeployments(context.Background(), store.DeploymentFilter{ProjectID: g.project.ID, Limit: 1})
		if d = list[0]; d.Status != store.DeploymentScheduled || d.FrozenBy == "" {
			t.Fatalf("automatic deployment in a freeze: %s, frozen_by %q", d.Status, d.FrozenBy)
		}
	})
}

func TestCancelAScheduledDeployment(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		g := newGateFixture(t, db)
		nd := g.deploy(g.v)
		at := g.clock.Now().Add(time.Hour)
		nd.ScheduledAt = &at
		d, err := db.CreateDeployment(g.as("alice"), nd)
		if err != nil {
			t.Fatal(err)
		}
		// Retention keeps the version a scheduled deployment will put on the hosts.
		g.mustVersion(t, "v2", 2)
		if removed, err := db.PruneVersions(context.Background(), g.project.ID, 1); err != nil || len(removed) != 0 {
			t.Fatalf("retention removed %v (%v) while a deployment of v1 is scheduled", removed, err)
		}
		if d, err = db.CancelDeployment(g.as("alice"), d.ID); err != nil || d.Status != store.DeploymentCanceled {
			t.Fatalf("cancel: %+v %v", d, err)
		}
		g.clock.Add(2 * time.Hour)
		if res, _ := db.PromoteDeployments(context.Background()); res.Queued != 0 {
			t.Fatal("a canceled deployment was queued")
		}
		past := g.clock.Now().Add(-time.Minute)
		nd.ScheduledAt = &past
		_, err = db.CreateDeployment(g.as("alice"), nd)
		wantCode(t, "a time in the past", err, store.EINVALID, "scheduled_at")
	})
}

// Two people approving at the same moment the deployment that needs both: it is queued.
func TestSimultaneousApprovals(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		g := newGateFixture(t, db)
		g.setGates(t, false, 2)
		for round := range 5 {
			d, err := db.CreateDeployment(g.as("alice"), g.deploy(g.v))
			if err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			for _, who := range []string{"carol", "dave"} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if _, err := db.ApproveDeployment(g.as(who), d.ID, ""); err != nil {
						t.Error(err)
					}
				}()
			}
			wg.Wait()
			if d = mustGet(t, db, d.ID); d.Status != store.DeploymentQueued || len(d.Approvals) != 2 {
				t.Fatalf("round %d: %s with %d approvals, want queued", round, d.Status, len(d.Approvals))
			}
			if _, err := db.CancelDeployment(actorCtx(), d.ID); err != nil {
				t.Fatal(err)
			}
		}
	})
}

func TestApprovalExpiryIsConfigurable(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		g := newGateFixture(t, db)
		db.ApprovalExpiry = 2 * time.Hour
		g.setGates(t, false, 1)
		d, err := db.CreateDeployment(g.as("alice"), g.deploy(g.v))
		if err != nil {
			t.Fatal(err)
		}
		if !d.ApprovalExpiresAt.Equal(g.clock.Now().Add(2 * time.Hour)) {
			t.Fatalf("expires at %s, want in 2 h", d.ApprovalExpiresAt)
		}
		g.clock.Add(2 * time.Hour)
		if res, err := db.PromoteDeployments(context.Background()); err != nil || res.Expired != 1 {
			t.Fatalf("after 2 h: %+v %v", res, err)
		}
	})
}

// Not even an administrator approves what they asked for.
func TestAnAdministratorCannotApproveTheirOwn(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		g := newGateFixture(t, db)
		g.setGates(t, true, 1)
		d, err := db.CreateDeployment(g.as("carol"), g.deploy(g.v))
		if err != nil {
			t.Fatal(err)
		}
		g.mustTakeFourEyes(t, d.ID, "carol")
	})
}

// The attack: a member with the production right asks for a build of the branch's tip by hand;
// the good build deploys itself to an environment that needs one approval. The deployment
// comes from their request, so the four-eyes rule must keep them from approving it alone.
func TestWhoAskedForABuildCannotApproveItsAutomaticDeployment(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		g := newGateFixture(t, db)
		g.setGates(t, true, 1)
		b, err := db.CreateBuild(g.as("alice"), newBuild(g.project.ID, 2))
		if err != nil {
			t.Fatal(err)
		}
		mustClaimBuild(t, db, "w", b.ID)
		if _, err := db.FinishBuild(context.Background(), b.ID, "w", store.BuildResult{Status: store.BuildSuccess, Version: newVersion("v2", 2),
			Deploy: []store.NewDeployment{{EnvironmentID: g.staging.ID}}}); err != nil {
			t.Fatal(err)
		}
		list, err := db.ListDeployments(context.Background(), store.DeploymentFilter{ProjectID: g.project.ID})
		if err != nil || len(list) != 1 || list[0].Status != store.DeploymentAwaitingApproval {
			t.Fatalf("deployments %+v, %v; want one awaiting approval", list, err)
		}
		d := list[0]
		if d.RequestedBy != "alice" {
			t.Errorf("the automatic deployment of alice's build reads as requested by %q", d.RequestedBy)
		}
		g.mustTakeFourEyes(t, d.ID, "alice")
	})
}

// The attack: a member with the production right schedules a deployment to a protected
// environment (up to a year ahead), or asks for one that waits for approval, and then loses
// the right (leaves the team). The deployment must not go on on the right they no longer have.
func TestADeploymentWaitingForItsTimeNeedsItsRequestersRightStill(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		g := newGateFixture(t, db)
		g.setGates(t, true, 0)
		nd := g.deploy(g.v)
		at := g.clock.Now().Add(time.Hour)
		nd.ScheduledAt = &at
		d, err := db.CreateDeployment(g.as("alice"), nd)
		if err != nil || d.Status != store.DeploymentScheduled {
			t.Fatalf("scheduled: %+v %v", d, err)
		}
		if _, err := db.SetMember(actorCtx(), g.project.ID, "alice", false); err != nil {
			t.Fatal(err)
		}
		g.clock.Add(time.Hour)
		if res, err := db.PromoteDeployments(context.Background()); err != nil || res.Queued != 0 {
			t.Fatalf("promoted %+v, %v: alice's deployment was queued after she lost the production right", res, err)
		}
		if d = mustGet(t, db, d.ID); d.Status != store.DeploymentCanceled || !strings.Contains(d.Error, "production right") {
			t.Errorf("alice's due deployment is %s (%q), want canceled saying why", d.Status, d.Error)
		}
		if got, _ := db.ClaimDeployment(context.Background(), "w", time.Minute); got != nil {
			t.Fatal("a worker claimed it")
		}

		// Awaiting approval: approved by someone else after the requester lost the right.
		g.setGates(t, true, 1)
		if _, err := db.SetMember(actorCtx(), g.project.ID, "alice", true); err != nil {
			t.Fatal(err)
		}
		d, err = db.CreateDeployment(g.as("alice"), g.deploy(g.v))
		if err != nil || d.Status != store.DeploymentAwaitingApproval {
			t.Fatalf("awaiting: %+v %v", d, err)
		}
		if _, err := db.SetMember(actorCtx(), g.project.ID, "alice", false); err != nil {
			t.Fatal(err)
		}
		d, err = db.ApproveDeployment(g.as("dave"), d.ID, "")
		if err == nil && d.Status == store.DeploymentQueued {
			t.Fatal("dave's approval queued the deployment of alice, who no longer has the production right")
		}
		if got, _ := db.ClaimDeployment(context.Background(), "w", time.Minute); got != nil {
			t.Fatal("a worker claimed it")
		}
	})
}

// mustTakeFourEyes checks that requester may neither approve deployment id nor is asked to,
// and that dave, another person with the right, approves it into the queue.
func (g *gateFixture) mustTakeFourEyes(t *testing.T, id int64, requester string) {
	t.Helper()
	_, err := g.db.ApproveDeployment(g.as(requester), id, "")
	wantCode(t, requester+" approves a deployment they asked for", err, store.EFORBIDDEN, "four-eyes")
	if list, _ := g.db.ListApprovals(context.Background(), g.users[requester].ID); len(list) != 0 {
		t.Errorf("%s is asked to approve a deployment they asked for", requester)
	}
	if d, err := g.db.ApproveDeployment(g.as("dave"), id, ""); err != nil || d.Status != store.DeploymentQueued {
		t.Fatalf("dave's approval: %+v %v", d, err)
	}
}
