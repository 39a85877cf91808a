package storetest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"ferry/store"
)

// FinishedBuild runs a build of p through the job queue to status (BuildFailed or
// BuildSuccess, which records a version) with lines as its log, so that the store writes its
// outbox entry as it does in production. The commit is Alice's "Fix checkout rounding" with a
// body, pushed by alice.
func FinishedBuild(tb testing.TB, db *store.DB, p *store.Project, status string, lines ...string) *store.Build {
	tb.Helper()
	ctx := context.Background()
	b, err := db.CreateBuild(ctx, store.NewBuild{ProjectID: p.ID, Ref: "main", Branch: "main", SHA: "3f2a9c1e5b7d9f00112233445566778899aabbcc",
		CommitTitle: "Fix checkout rounding\n\nThe body of the commit message.", CommitAuthor: "Alice", TriggeredBy: "push by alice"})
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := db.ClaimBuild(ctx, "builder", time.Hour); err != nil {
		tb.Fatal(err)
	}
	w, err := db.OpenLog(ctx, store.JobBuild, b.ID)
	if err != nil {
		tb.Fatal(err)
	}
	for _, l := range lines {
		w.Write("stdout", "", l)
	}
	if err := w.Close(); err != nil {
		tb.Fatal(err)
	}
	r := store.BuildResult{Status: status}
	if status == store.BuildFailed {
		r.Error = "script exited with status 1"
	} else {
		r.Version = &store.NewVersion{Name: fmt.Sprintf("20240501120000-main-3f2a9c1e-%d", b.ID), SHA: b.SHA, Ref: "main",
			SHA256: strings.Repeat("a", 64), Size: 10, Path: "/tmp/x.tar.gz"}
	}
	if b, err = db.FinishBuild(ctx, b.ID, "builder", r); err != nil {
		tb.Fatal(err)
	}
	return b
}
