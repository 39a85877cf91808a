package store_test

import (
	"context"
	"fmt"
	"testing"

	"ferry/store"
	"ferry/store/storetest"
)

// TestRecordEventAuditsItsBuild checks what a push stores besides its event, on both
// databases: the build queued by a webhook is in the audit log under the request's actor (as
// a build asked for by hand is), with the build's own number and target; a push to a project
// that does not exist stores nothing and says so.
func TestRecordEventAuditsItsBuild(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := store.WithActor(context.Background(), store.Actor{Name: "anonymous", RemoteAddr: "198.51.100.7"})
		f := newJobFixture(t, db)
		mustBuild(t, db, f.project.ID, 1) // the push's build is the project's second
		key := "delivery-audited"
		nb := newBuild(f.project.ID, 2)
		ev, b, dup, err := db.RecordEvent(ctx, &store.Event{DeliveryKey: &key, Kind: "push", Ref: "refs/heads/main", SHA: nb.SHA}, &nb)
		if err != nil || dup || b == nil || b.Number != 2 || b.Source != store.BuildSourcePush || ev.BuildID == nil || *ev.BuildID != b.ID {
			t.Fatalf("RecordEvent = %+v, %+v, dup %v, %v", ev, b, dup, err)
		}
		stored, err := db.GetBuild(ctx, b.ID)
		if err != nil || stored.Number != 2 || stored.Project != "orders" || stored.SHA != nb.SHA || !stored.QueuedAt.Equal(b.QueuedAt) {
			t.Fatalf("stored build %+v, %v; answered %+v", stored, err, b)
		}
		audit, err := db.ListAudit(ctx, store.AuditFilter{Target: fmt.Sprintf("project/orders/build/%d", b.ID)})
		if err != nil || len(audit) != 1 {
			t.Fatalf("audit of the pushed build: %d entries, %v; want 1", len(audit), err)
		}
		a := audit[0]
		if a.Action != "build.create" || a.UserName != "anonymous" || a.UserID != nil || a.RemoteAddr != "198.51.100.7" ||
			a.Detail != fmt.Sprintf("build #2 of main at %s", nb.SHA) {
			t.Fatalf("audit entry %+v", a)
		}

		missing := newBuild(f.project.ID+1000, 3)
		other := "delivery-to-nowhere"
		_, _, _, err = db.RecordEvent(ctx, &store.Event{DeliveryKey: &other, Kind: "push"}, &missing)
		wantCode(t, "unknown project", err, store.ENOTFOUND, fmt.Sprintf("project %d not found", missing.ProjectID))
		if events, _ := db.ListEvents(ctx, f.project.ID, 0); len(events) != 1 {
			t.Fatalf("%d events after a push to an unknown project, want 1", len(events))
		}
	})
}
