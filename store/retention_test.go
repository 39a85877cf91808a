package store_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"ferry/store"
	"ferry/store/storetest"
)

func TestPurgeOldKeepsWhatRunningJobsNeed(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		p := mustProject(t, db, "purged")
		sha := strings.Repeat("a", 40)
		running, err := db.CreateBuild(ctx, store.NewBuild{ProjectID: p.ID, Ref: "main", Branch: "main", SHA: sha})
		logsNoErr(t, err)
		ended, err := db.CreateBuild(ctx, store.NewBuild{ProjectID: p.ID, Ref: "main", Branch: "main", SHA: sha})
		logsNoErr(t, err)
		_, err = db.CancelBuild(ctx, ended.ID)
		logsNoErr(t, err)

		// Forty days ago: lines of both builds, a webhook event and an audit entry.
		realNow := db.Now
		db.Now = func() time.Time { return realNow().Add(-40 * 24 * time.Hour) }
		for _, id := range []int64{running.ID, ended.ID} {
			w := MustOpenLog(t, db, store.JobBuild, id)
			w.Write("stdout", "", "old line")
			logsNoErr(t, w.Close())
		}
		_, _, _, err = db.RecordEvent(ctx, &store.Event{Kind: "push", Ref: "refs/heads/x"}, nil)
		logsNoErr(t, err)
		logsNoErr(t, db.RecordAudit(ctx, "user.login", "user/old", ""))
		db.Now = realNow

		// Today: the same again, which must stay.
		w := MustOpenLog(t, db, store.JobBuild, ended.ID)
		w.Write("stdout", "", "new line")
		logsNoErr(t, w.Close())
		_, _, _, err = db.RecordEvent(ctx, &store.Event{Kind: "push", Ref: "refs/heads/y"}, nil)
		logsNoErr(t, err)
		logsNoErr(t, db.RecordAudit(ctx, "user.login", "user/new", ""))

		st, err := db.PurgeOld(ctx, store.DefaultRetention)
		logsNoErr(t, err)
		if st != (store.PurgeStats{LogLines: 1, Events: 1, AuditEntries: 1}) {
			t.Errorf("PurgeOld deleted %+v, want one of each", st)
		}
		if lines := readAll(t, db, store.JobBuild, running.ID, ""); len(lines) != 1 {
			t.Errorf("the pending build kept %d lines, want its 1 old line", len(lines))
		}
		if lines := readAll(t, db, store.JobBuild, ended.ID, ""); len(lines) != 1 || lines[0].Text != "new line" {
			t.Errorf("the ended build kept %+v, want only its new line", lines)
		}
		events, err := db.ListEvents(ctx, 0, 0)
		logsNoErr(t, err)
		for _, e := range events {
			if e.Ref == "refs/heads/x" {
				t.Error("the old event is still listed")
			}
		}
		audit, err := db.ListAudit(ctx, store.AuditFilter{Target: "user/old"})
		logsNoErr(t, err)
		if len(audit) != 0 {
			t.Errorf("old audit entries left: %d", len(audit))
		}
		audit, err = db.ListAudit(ctx, store.AuditFilter{Target: "user/new"})
		if err != nil || len(audit) != 1 {
			t.Errorf("new audit entries: %d, %v; want 1", len(audit), err)
		}

		if _, err := db.PurgeOld(ctx, time.Minute); store.ErrorCode(err) != store.EINVALID {
			t.Errorf("PurgeOld(1m) = %v, want EINVALID", err)
		}
	})
}
