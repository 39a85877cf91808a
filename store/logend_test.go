package store_test

import (
	"context"
	"testing"
	"time"

	"ferry/store"
	"ferry/store/storetest"
)

// Closing a log writer ends the log for its viewers, in the writing process and, on
// PostgreSQL, in another one; a viewer then has every line the writer wrote.
func TestClosingTheWriterEndsTheLogForViewers(t *testing.T) {
	check := func(t *testing.T, writerDB, viewerDB *store.DB) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		sub, err := viewerDB.SubscribeLog(ctx, store.JobBuild, 21, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Close()
		w := MustOpenLog(t, writerDB, store.JobBuild, 21)
		w.Write("stdout", "", "only line")
		select {
		case <-sub.Ended():
			t.Fatal("the log ended before its writer closed")
		default:
		}
		logsNoErr(t, w.Close())
		select {
		case <-sub.Ended():
		case <-time.After(10 * time.Second):
			t.Fatal("the viewer did not learn of the end of the log 10 s after the writer closed")
		}
		lines, err := viewerDB.ReadLog(ctx, store.JobBuild, 21, 0, "", 0)
		if err != nil || len(lines) != 1 || lines[0].Text != "only line" {
			t.Errorf("log at its end: %+v, %v", lines, err)
		}
	}
	storetest.Each(t, func(t *testing.T, db *store.DB) { check(t, db, db) })
	t.Run("another process", func(t *testing.T) {
		u := storetest.URL(t, store.Postgres)
		check(t, storetest.OpenURL(t, u), storetest.OpenURL(t, u))
	})
}
