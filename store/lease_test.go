package store_test

import (
	"context"
	"testing"
	"time"

	"ferry/store"
	"ferry/store/storetest"
)

// The fence: after a job's lease ran out and the job was claimed again by another loop of
// the same process (the same worker name), every write of the first claim is refused.
func TestAStaleClaimCannotWriteAfterAReclaim(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		f := newJobFixture(t, db)
		const worker = "ferry-1:4242"

		b := mustBuild(t, db, f.project.ID, 1)
		stale, fresh := store.NewLeaseToken(worker), store.NewLeaseToken(worker)
		if stale == fresh {
			t.Fatalf("two claims got the same lease token %s", stale)
		}
		mustClaimBuild(t, db, stale, b.ID)
		f.clock.Add(5 * time.Minute)
		if rq, _, err := db.ReapBuilds(ctx, 3); err != nil || rq != 1 {
			t.Fatalf("reap builds = %d, %v", rq, err)
		}
		mustClaimBuild(t, db, fresh, b.ID)
		_, err := db.RenewBuild(ctx, b.ID, stale, time.Minute)
		wantCode(t, "stale renew of a build", err, store.ECONFLICT, "taken over")
		_, err = db.FinishBuild(ctx, b.ID, stale, store.BuildResult{Status: store.BuildFailed, Error: "stale"})
		wantCode(t, "stale finish of a build", err, store.ECONFLICT, "taken over")
		if _, err := db.RenewBuild(ctx, b.ID, fresh, time.Minute); err != nil {
			t.Fatalf("renew by the new claim: %v", err)
		}
		if done, err := db.FinishBuild(ctx, b.ID, fresh, store.BuildResult{Status: store.BuildFailed, Error: "fresh"}); err != nil || done.Error != "fresh" {
			t.Fatalf("finish by the new claim = %+v, %v", done, err)
		}

		v := f.mustVersion(t, "v1", 2)
		d, err := db.CreateDeployment(ctx, f.deploy(v))
		recordMust(t, err)
		stale, fresh = store.NewLeaseToken(worker), store.NewLeaseToken(worker)
		mustClaimDeployment(t, db, stale, d.ID)
		running, failed, reason := store.HostRunning, store.HostFailed, "stale"
		recordMust(t, db.UpdateHostStep(ctx, d.ID, f.hosts[0].ID, stale, store.HostStepUpdate{Status: &running, Started: true}))
		f.clock.Add(5 * time.Minute)
		if rq, _, err := db.ReapDeployments(ctx, 3); err != nil || rq != 1 {
			t.Fatalf("reap deployments = %d, %v", rq, err)
		}
		mustClaimDeployment(t, db, fresh, d.ID)
		_, err = db.RenewDeployment(ctx, d.ID, stale, time.Minute)
		wantCode(t, "stale renew of a deployment", err, store.ECONFLICT, "taken over")
		err = db.UpdateHostStep(ctx, d.ID, f.hosts[0].ID, stale, store.HostStepUpdate{Status: &failed, Error: &reason, Finished: true})
		wantCode(t, "stale host step update", err, store.ECONFLICT, "taken over")
		err = db.RecordHostPrevious(ctx, d.ID, f.hosts[0].ID, stale, "v0", nil)
		wantCode(t, "stale record of the previous release", err, store.ECONFLICT, "taken over")
		_, err = db.FinishDeployment(ctx, d.ID, stale, store.DeploymentCanceled, "stale")
		wantCode(t, "stale finish of a deployment", err, store.ECONFLICT, "taken over")
		got, err := db.GetDeployment(ctx, d.ID)
		recordMust(t, err)
		if got.Status != store.DeploymentRunning || got.Hosts[0].Status != store.HostWaiting || got.Hosts[0].Error != "" || got.Hosts[0].PreviousRecorded {
			t.Fatalf("after the stale writes: %s, %s", got.Status, hostSummary(got))
		}
		recordMust(t, db.UpdateHostStep(ctx, d.ID, f.hosts[0].ID, fresh, store.HostStepUpdate{Status: &running, Started: true}))
		if done, err := db.FinishDeployment(ctx, d.ID, fresh, store.DeploymentFailed, "fresh"); err != nil || done.Error != "fresh" {
			t.Fatalf("finish by the new claim = %+v, %v", done, err)
		}
	})
}

// A notice channel's lease is fenced the same way: a sender whose lease ran out and whose
// channel another sender of the same process claimed can neither renew nor release it.
func TestAStaleChannelClaimCannotRenewOrRelease(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		p := notifyProject(t, db)
		ch := notifyChannel(t, db, &store.Channel{ProjectID: &p.ID, Kind: store.ChannelWebhook, URL: "https://hooks.example.com/x", Events: []string{"build.failed"}})
		storetest.FinishedBuild(t, db, p, store.BuildFailed)
		if _, err := db.QueueDeliveries(ctx, 0); err != nil {
			t.Fatal(err)
		}
		const worker = "ferry-1:4242"
		stale, fresh := store.NewLeaseToken(worker), store.NewLeaseToken(worker)
		if got, _, err := db.ClaimChannel(ctx, stale, time.Minute, 0); err != nil || got == nil || got.ID != ch.ID {
			t.Fatalf("first claim = %v, %v", got, err)
		}
		db.Now = func() time.Time { return time.Now().Add(2 * time.Minute) }
		if got, _, err := db.ClaimChannel(ctx, fresh, time.Minute, 0); err != nil || got == nil || got.ID != ch.ID {
			t.Fatalf("claim after the lease ran out = %v, %v", got, err)
		}
		if err := db.RenewChannel(ctx, ch.ID, stale, time.Minute); store.ErrorCode(err) != store.ECONFLICT {
			t.Errorf("stale renew of a channel: %v, want ECONFLICT", err)
		}
		notifyMust(t, db.ReleaseChannel(ctx, ch.ID, stale, time.Time{}))
		if again, _, err := db.ClaimChannel(ctx, store.NewLeaseToken(worker), time.Minute, 0); again != nil || err != nil {
			t.Errorf("the stale release freed the channel the new claim holds: %v, %v", again, err)
		}
		if err := db.RenewChannel(ctx, ch.ID, fresh, time.Minute); err != nil {
			t.Errorf("renew by the new claim: %v", err)
		}
	})
}

// A process that stops cleanly hands its jobs back at once: a released build or deployment is
// claimable again without waiting for its lease, its running host steps wait again, a release
// by a claim that no longer holds the job changes nothing, and a job with a cancel asked for
// ends canceled instead.
func TestReleaseHandsAJobOverAtOnce(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		f := newJobFixture(t, db)
		const worker = "ferry-1:4242"

		b := mustBuild(t, db, f.project.ID, 1)
		first := store.NewLeaseToken(worker)
		mustClaimBuild(t, db, first, b.ID)
		recordMust(t, db.ReleaseBuild(ctx, b.ID, store.NewLeaseToken(worker))) // not its claim: nothing
		if got, err := db.GetBuild(ctx, b.ID); err != nil || got.Status != store.BuildRunning {
			t.Fatalf("after a release by another claim: %+v, %v; want still running", got, err)
		}
		recordMust(t, db.ReleaseBuild(ctx, b.ID, first))
		next := store.NewLeaseToken("ferry-2:1")
		mustClaimBuild(t, db, next, b.ID) // the first lease (a minute) did not have to run out
		_, err := db.RenewBuild(ctx, b.ID, first, time.Minute)
		wantCode(t, "renew after the release", err, store.ECONFLICT, "")
		_, err = db.CancelBuild(ctx, b.ID)
		recordMust(t, err)
		recordMust(t, db.ReleaseBuild(ctx, b.ID, next))
		if got, err := db.GetBuild(ctx, b.ID); err != nil || got.Status != store.BuildCanceled {
			t.Fatalf("release of a build with a cancel asked for: %+v, %v; want canceled", got, err)
		}

		v := f.mustVersion(t, "v1", 2)
		d, err := db.CreateDeployment(ctx, f.deploy(v))
		recordMust(t, err)
		lease := store.NewLeaseToken(worker)
		mustClaimDeployment(t, db, lease, d.ID)
		running := store.HostRunning
		recordMust(t, db.UpdateHostStep(ctx, d.ID, f.hosts[0].ID, lease, store.HostStepUpdate{Status: &running, Started: true}))
		recordMust(t, db.ReleaseDeployment(ctx, d.ID, lease))
		got, err := db.GetDeployment(ctx, d.ID)
		recordMust(t, err)
		if got.Status != store.DeploymentQueued || got.Hosts[0].Status != store.HostWaiting {
			t.Fatalf("after the release: %s, %s; want queued with the host waiting", got.Status, hostSummary(got))
		}
		mustClaimDeployment(t, db, store.NewLeaseToken("ferry-2:1"), d.ID)
		lines, err := db.LogTail(ctx, store.JobDeployment, d.ID, "", 5)
		recordMust(t, err)
		if len(lines) == 0 || lines[len(lines)-1].Text != store.Released {
			t.Errorf("the deployment log ends %+v, want the hand-over line", lines)
		}
	})
}

// A sender whose channel lease ran out and was claimed again records nothing of its sends:
// the outcome belongs to the sender that holds the channel.
func TestAStaleSenderCannotRecordDeliveries(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		p := notifyProject(t, db)
		ch := notifyChannel(t, db, &store.Channel{ProjectID: &p.ID, Kind: store.ChannelWebhook, URL: "https://hooks.example.com/x", Events: []string{"build.failed"}})
		storetest.FinishedBuild(t, db, p, store.BuildFailed)
		if _, err := db.QueueDeliveries(ctx, 0); err != nil {
			t.Fatal(err)
		}
		stale, fresh := store.NewLeaseToken("w"), store.NewLeaseToken("w")
		_, due, err := db.ClaimChannel(ctx, stale, time.Minute, 0)
		if err != nil || len(due) != 1 {
			t.Fatalf("claim = %v, %v", due, err)
		}
		db.Now = func() time.Time { return time.Now().Add(2 * time.Minute) }
		if got, _, err := db.ClaimChannel(ctx, fresh, time.Minute, 0); err != nil || got == nil {
			t.Fatalf("claim after the lease ran out = %v, %v", got, err)
		}
		ids := []int64{due[0].ID}
		err = db.RecordChannelDelivery(ctx, ch.ID, stale, ids, store.DeliveryOutcome{Sent: true})
		wantCode(t, "stale record of a delivery", err, store.ECONFLICT, "another sender")
		err = db.PostponeChannelDeliveries(ctx, ch.ID, stale, ids, time.Now().Add(time.Hour))
		wantCode(t, "stale postpone of a delivery", err, store.ECONFLICT, "another sender")
		if d, err := db.GetDelivery(ctx, due[0].ID); err != nil || d.Status != store.DeliveryPending || d.Attempts != 0 {
			t.Fatalf("after the stale writes: %+v, %v; want pending with no try", d, err)
		}
		notifyMust(t, db.RecordChannelDelivery(ctx, ch.ID, fresh, ids, store.DeliveryOutcome{Sent: true}))
		if d, err := db.GetDelivery(ctx, due[0].ID); err != nil || d.Status != store.DeliverySent {
			t.Fatalf("after the holder's record: %+v, %v; want sent", d, err)
		}
	})
}
