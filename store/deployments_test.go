package store_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"ferry/store"
	"ferry/store/storetest"
)

// mustVersionOf builds and keeps a version called name in f's project.
func (f *jobFixture) mustVersion(t *testing.T, name string, i int) *store.Version {
	t.Helper()
	b := mustSucceed(t, f.db, mustBuild(t, f.db, f.project.ID, i), name)
	v, err := f.db.GetVersion(context.Background(), *b.VersionID)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func (f *jobFixture) deploy(v *store.Version, hosts ...int64) store.NewDeployment {
	return store.NewDeployment{ProjectID: f.project.ID, EnvironmentID: f.staging.ID, VersionID: v.ID, Hosts: hosts, TriggeredBy: "api by alice"}
}

func hostSummary(d *store.Deployment) string {
	var parts []string
	for _, h := range d.Hosts {
		parts = append(parts, h.Host+":"+h.Status)
	}
	return strings.Join(parts, " ")
}

func mustClaimDeployment(t *testing.T, db *store.DB, owner string, want int64) *store.Deployment {
	t.Helper()
	d, err := db.ClaimDeployment(context.Background(), owner, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if d == nil || d.ID != want {
		t.Fatalf("ClaimDeployment = %+v, want deployment %d", d, want)
	}
	return d
}

func TestCreateDeploymentChecks(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := actorCtx()
		f := newJobFixture(t, db)
		v := f.mustVersion(t, "v1", 1)

		d, err := db.CreateDeployment(ctx, f.deploy(v))
		if err != nil {
			t.Fatal(err)
		}
		if d.Status != store.DeploymentQueued || d.Version != "v1" || d.Environment != "staging" || d.Project != "orders" ||
			hostSummary(d) != "web1:waiting web2:waiting web3:waiting" || d.Strategy != (store.Strategy{}) {
			t.Fatalf("deployment %+v, hosts %s", d, hostSummary(d))
		}
		sub := f.deploy(v, f.hosts[2].ID, f.hosts[0].ID)
		sub.Strategy = &store.Strategy{Kind: store.StrategyRolling, Batch: "50%"}
		d2, err := db.CreateDeployment(ctx, sub)
		if err != nil || hostSummary(d2) != "web3:waiting web1:waiting" || d2.Strategy.Kind != store.StrategyRolling || d2.Strategy.Batch != "50%" {
			t.Fatalf("subset = %+v (%s), %v", d2, hostSummary(d2), err)
		}

		other := &store.Host{Name: "db1", Address: "10.0.0.9", User: "deploy"}
		if err := db.CreateHost(ctx, other); err != nil {
			t.Fatal(err)
		}
		_, err = db.CreateDeployment(ctx, f.deploy(v, other.ID))
		wantCode(t, "foreign host", err, store.EINVALID, "host db1 is not in environment staging")
		_, err = db.CreateDeployment(ctx, f.deploy(v, 999))
		wantCode(t, "unknown host", err, store.EINVALID, "no host with id 999")
		_, err = db.CreateDeployment(ctx, f.deploy(v, f.hosts[0].ID, f.hosts[0].ID))
		wantCode(t, "host twice", err, store.EINVALID, "web1 is named twice")
		bad := f.deploy(v)
		bad.Strategy = &store.Strategy{Kind: "yolo"}
		_, err = db.CreateDeployment(ctx, bad)
		wantCode(t, "bad strategy", err, store.EINVALID, "yolo")

		empty := &store.Environment{ProjectID: f.project.ID, Name: "empty"}
		if err := db.CreateEnvironment(ctx, empty); err != nil {
			t.Fatal(err)
		}
		_, err = db.CreateDeployment(ctx, store.NewDeployment{ProjectID: f.project.ID, EnvironmentID: empty.ID, VersionID: v.ID})
		wantCode(t, "no hosts", err, store.EINVALID, "environment empty has no hosts")
		_, err = db.CreateDeployment(ctx, store.NewDeployment{ProjectID: f.project.ID, EnvironmentID: f.staging.ID, VersionID: 777})
		wantCode(t, "unknown version", err, store.ENOTFOUND, "version 777")

		old := f.mustVersion(t, "v0", 2)
		for i := range 3 {
			f.mustVersion(t, fmt.Sprintf("v%d", i+2), i+3)
		}
		if _, err := db.PruneVersions(ctx, f.project.ID, 3); err != nil {
			t.Fatal(err)
		}
		_, err = db.CreateDeployment(ctx, f.deploy(old))
		wantCode(t, "pruned version", err, store.EINVALID, "version v0 was removed by retention")

		list, err := db.ListDeployments(ctx, store.DeploymentFilter{ProjectID: f.project.ID})
		if err != nil || len(list) != 2 || list[0].ID != d2.ID {
			t.Fatalf("ListDeployments = %d, %v", len(list), err)
		}
		audit, _ := db.ListAudit(ctx, store.AuditFilter{Target: "project/orders/environment/staging"})
		var creates []string
		for _, a := range audit {
			if a.Action == "deployment.create" {
				creates = append(creates, a.UserName+": "+a.Detail)
			}
		}
		if len(creates) != 2 || creates[0] != fmt.Sprintf("tester: deployment %d of v1 to web3, web1", d2.ID) {
			t.Fatalf("audit %q", creates)
		}
	})
}

func TestDeploymentQueueAndRun(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		f := newJobFixture(t, db)
		v := f.mustVersion(t, "v1", 1)
		first, _ := db.CreateDeployment(ctx, f.deploy(v))
		second, _ := db.CreateDeployment(ctx, f.deploy(v))
		if second.WaitingFor != fmt.Sprintf("deployment %d (queued) to staging", first.ID) {
			t.Fatalf("WaitingFor = %q", second.WaitingFor)
		}
		if first.WaitingFor != "a free deploy worker" {
			t.Fatalf("first WaitingFor = %q", first.WaitingFor)
		}
		run := mustClaimDeployment(t, db, "w1", first.ID)
		if run.Status != store.DeploymentRunning || run.WaitingFor != "" || len(run.Hosts) != 3 {
			t.Fatalf("claimed %+v", run)
		}
		if d, err := db.ClaimDeployment(ctx, "w2", time.Minute); err != nil || d != nil {
			t.Fatalf("second claim in one environment = %+v, %v", d, err)
		}
		second, _ = db.GetDeployment(ctx, second.ID)
		if second.WaitingFor != fmt.Sprintf("deployment %d (running) to staging", first.ID) {
			t.Fatalf("WaitingFor = %q", second.WaitingFor)
		}

		running, failed, sent := store.HostRunning, store.HostFailed, int64(4096)
		step, reason := "upload", "health check http://127.0.0.1:8080/health: 503 after 60s"
		if err := db.UpdateHostStep(ctx, first.ID, f.hosts[0].ID, "w1", store.HostStepUpdate{Status: &running, Step: &step, BytesSent: &sent, Started: true}); err != nil {
			t.Fatal(err)
		}
		bogus := "exploded"
		wantCode(t, "bad status", db.UpdateHostStep(ctx, first.ID, f.hosts[0].ID, "w1", store.HostStepUpdate{Status: &bogus}), store.EINVALID, "exploded")
		wantCode(t, "unknown host", db.UpdateHostStep(ctx, first.ID, 999, "w1", store.HostStepUpdate{Status: &running}), store.ENOTFOUND, "no step for host 999")
		wantCode(t, "queued deployment", db.UpdateHostStep(ctx, second.ID, f.hosts[0].ID, "w1", store.HostStepUpdate{Status: &running}), store.ECONFLICT, "not running (queued)")
		got, _ := db.GetDeployment(ctx, first.ID)
		if h := got.Hosts[0]; h.Status != running || h.Step != "upload" || h.BytesSent != 4096 || h.StartedAt == nil {
			t.Fatalf("host step %+v", h)
		}
		db.UpdateHostStep(ctx, first.ID, f.hosts[0].ID, "w1", store.HostStepUpdate{Status: &failed, Error: &reason, Finished: true})

		_, err := db.FinishDeployment(ctx, first.ID, "w2", store.DeploymentFailed, "web1 failed")
		wantCode(t, "finish by another", err, store.ECONFLICT, "held by worker w1")
		_, err = db.FinishDeployment(ctx, first.ID, "w1", "meh", "")
		wantCode(t, "bad status", err, store.EINVALID, "meh")
		done, err := db.FinishDeployment(ctx, first.ID, "w1", store.DeploymentFailed, "web1: "+reason)
		if err != nil || done.Status != store.DeploymentFailed || hostSummary(done) != "web1:failed web2:skipped web3:skipped" || done.FinishedAt == nil {
			t.Fatalf("finished %+v (%s), %v", done, hostSummary(done), err)
		}
		if ev := outboxOf(t, db, store.JobDeployment, first.ID); strings.Join(ev, " ") != "deployment.started deployment.failed" {
			t.Fatalf("outbox %v", ev)
		}
		_, err = db.CancelDeployment(ctx, first.ID)
		wantCode(t, "cancel ended", err, store.ECONFLICT, fmt.Sprintf("deployment %d has already ended (failed)", first.ID))

		// Cancel the queued one: at once, with the outbox entry.
		c, err := db.CancelDeployment(actorCtx(), second.ID)
		if err != nil || c.Status != store.DeploymentCanceled || hostSummary(c) != "web1:canceled web2:canceled web3:canceled" {
			t.Fatalf("cancel queued = %+v, %v", c, err)
		}
		if ev := outboxOf(t, db, store.JobDeployment, second.ID); strings.Join(ev, " ") != "deployment.canceled" {
			t.Fatalf("outbox %v", ev)
		}

		// Retry takes the hosts that did not succeed.
		_, err = db.RetryDeployment(ctx, 12345, "api by bob")
		wantCode(t, "retry unknown", err, store.ENOTFOUND, "deployment 12345")
		retry, err := db.RetryDeployment(actorCtx(), first.ID, "retry by bob")
		if err != nil || hostSummary(retry) != "web1:waiting web2:waiting web3:waiting" || retry.VersionID != v.ID || retry.TriggeredBy != "retry by bob" {
			t.Fatalf("retry = %+v, %v", retry, err)
		}
		_, err = db.RetryDeployment(ctx, retry.ID, "x")
		wantCode(t, "retry queued", err, store.EINVALID, "has not ended yet (queued)")

		// A running deployment asked to cancel hears it on renewal.
		mustClaimDeployment(t, db, "w3", retry.ID)
		if c, err := db.CancelDeployment(ctx, retry.ID); err != nil || !c.CancelRequested || c.Status != store.DeploymentRunning {
			t.Fatalf("cancel running = %+v, %v", c, err)
		}
		if cancel, err := db.RenewDeployment(ctx, retry.ID, "w3", time.Minute); err != nil || !cancel {
			t.Fatalf("renew = %v, %v", cancel, err)
		}
		ok := store.HostSucceeded
		db.UpdateHostStep(ctx, retry.ID, f.hosts[0].ID, "w3", store.HostStepUpdate{Status: &ok, Finished: true})
		db.UpdateHostStep(ctx, retry.ID, f.hosts[1].ID, "w3", store.HostStepUpdate{Status: &running, Started: true})
		end, err := db.FinishDeployment(ctx, retry.ID, "w3", store.DeploymentCanceled, "canceled by bob")
		if err != nil || hostSummary(end) != "web1:succeeded web2:canceled web3:canceled" {
			t.Fatalf("finish canceled = %+v, %v", end, err)
		}
		again, err := db.RetryDeployment(ctx, retry.ID, "x")
		if err != nil || hostSummary(again) != "web2:waiting web3:waiting" {
			t.Fatalf("second retry = %+v, %v", again, err)
		}
		mustClaimDeployment(t, db, "w3", again.ID)
		db.UpdateHostStep(ctx, again.ID, f.hosts[1].ID, "w3", store.HostStepUpdate{Status: &ok})
		db.UpdateHostStep(ctx, again.ID, f.hosts[2].ID, "w3", store.HostStepUpdate{Status: &ok})
		db.FinishDeployment(ctx, again.ID, "w3", store.DeploymentSuccess, "")
		_, err = db.RetryDeployment(ctx, again.ID, "x")
		wantCode(t, "retry success", err, store.EINVALID, "nothing to retry")
	})
}

func TestFinishBuildQueuesDeployments(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		f := newJobFixture(t, db)
		empty := &store.Environment{ProjectID: f.project.ID, Name: "empty"}
		if err := db.CreateEnvironment(ctx, empty); err != nil {
			t.Fatal(err)
		}
		b := mustBuild(t, db, f.project.ID, 1)
		mustClaimBuild(t, db, "w1", b.ID)
		done, err := db.FinishBuild(ctx, b.ID, "w1", store.BuildResult{Status: store.BuildSuccess, Version: newVersion("v1", 1),
			Deploy: []store.NewDeployment{{EnvironmentID: f.staging.ID}, {EnvironmentID: empty.ID}}})
		if err != nil || done.Status != store.BuildSuccess {
			t.Fatalf("finish = %+v, %v", done, err)
		}
		list, _ := db.ListDeployments(ctx, store.DeploymentFilter{ProjectID: f.project.ID})
		if len(list) != 1 || list[0].Version != "v1" || list[0].BuildID == nil || *list[0].BuildID != b.ID || list[0].Environment != "staging" {
			t.Fatalf("deployments %+v", list)
		}
		log := logText(t, db, store.JobBuild, b.ID)
		if !strings.Contains(log, fmt.Sprintf("queued deployment %d of this version to staging", list[0].ID)) ||
			!strings.Contains(log, "deployment not queued: environment empty has no hosts") {
			t.Fatalf("log:\n%s", log)
		}
		d, _ := db.GetDeployment(ctx, list[0].ID)
		if hostSummary(d) != "web1:waiting web2:waiting web3:waiting" {
			t.Fatalf("hosts %s", hostSummary(d))
		}
	})
}

func TestReapDeployments(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		f := newJobFixture(t, db)
		v := f.mustVersion(t, "v1", 1)
		d, _ := db.CreateDeployment(ctx, f.deploy(v))
		mustClaimDeployment(t, db, "dead", d.ID)
		ok, running := store.HostSucceeded, store.HostRunning
		db.UpdateHostStep(ctx, d.ID, f.hosts[0].ID, "dead", store.HostStepUpdate{Status: &ok})
		db.UpdateHostStep(ctx, d.ID, f.hosts[1].ID, "dead", store.HostStepUpdate{Status: &running, Started: true})
		f.clock.Add(5 * time.Minute)
		if rq, fl, err := db.ReapDeployments(ctx, 2); err != nil || rq != 1 || fl != 0 {
			t.Fatalf("reap = %d, %d, %v", rq, fl, err)
		}
		got, _ := db.GetDeployment(ctx, d.ID)
		if got.Status != store.DeploymentQueued || hostSummary(got) != "web1:succeeded web2:waiting web3:waiting" {
			t.Fatalf("requeued %+v (%s)", got, hostSummary(got))
		}
		mustClaimDeployment(t, db, "dead-too", d.ID)
		db.UpdateHostStep(ctx, d.ID, f.hosts[1].ID, "dead-too", store.HostStepUpdate{Status: &running, Started: true})
		f.clock.Add(5 * time.Minute)
		if rq, fl, err := db.ReapDeployments(ctx, 2); err != nil || rq != 0 || fl != 1 {
			t.Fatalf("reap = %d, %d, %v", rq, fl, err)
		}
		got, _ = db.GetDeployment(ctx, d.ID)
		if got.Status != store.DeploymentFailed || got.Error != store.WorkerLost ||
			hostSummary(got) != "web1:succeeded web2:failed web3:skipped" || got.Hosts[1].Error != store.WorkerLost {
			t.Fatalf("reaped %+v (%s)", got, hostSummary(got))
		}
		if ev := outboxOf(t, db, store.JobDeployment, d.ID); strings.Join(ev, " ") != "deployment.started deployment.failed" {
			t.Fatalf("outbox %v (started once, failed once)", ev)
		}
		if log := logText(t, db, store.JobDeployment, d.ID); strings.Count(log, "worker lost") != 2 {
			t.Fatalf("log:\n%s", log)
		}
		retry, err := db.RetryDeployment(ctx, d.ID, "retry")
		if err != nil || hostSummary(retry) != "web2:waiting web3:waiting" {
			t.Fatalf("retry = %+v, %v", retry, err)
		}
	})
}

func TestInstances(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		f := newJobFixture(t, db)
		env := f.staging.ID
		for _, h := range []*store.Host{f.hosts[2], f.hosts[0]} {
			in := store.Instance{ProjectID: f.project.ID, HostID: h.ID, EnvironmentID: &env, Version: "v1", Releases: []string{"v1"}, Status: "running"}
			if err := db.SetInstance(ctx, in); err != nil {
				t.Fatal(err)
			}
		}
		f.clock.Add(time.Hour)
		dep := int64(7)
		if err := db.SetInstance(ctx, store.Instance{ProjectID: f.project.ID, HostID: f.hosts[0].ID, EnvironmentID: &env,
			Version: "v2", Previous: "v1", Releases: []string{"v2", "v1"}, Status: "running", DeploymentID: &dep}); err != nil {
			t.Fatal(err)
		}
		list, err := db.ListInstances(ctx, f.project.ID)
		if err != nil || len(list) != 2 {
			t.Fatalf("ListInstances = %+v, %v", list, err)
		}
		web1, web3 := list[0], list[1]
		if web1.Host != "web1" || web1.Environment != "staging" || web1.Version != "v2" || web1.Previous != "v1" ||
			strings.Join(web1.Releases, ",") != "v2,v1" || *web1.DeploymentID != 7 || !web1.Since.Equal(f.clock.Now()) {
			t.Fatalf("web1 %+v", web1)
		}
		if web3.Host != "web3" || web3.Version != "v1" || web3.Since.Equal(f.clock.Now()) {
			t.Fatalf("web3 %+v", web3)
		}
		err = db.SetInstance(ctx, store.Instance{ProjectID: f.project.ID, HostID: 4242})
		wantCode(t, "unknown host", err, store.EINVALID, "host 4242")
	})
}
