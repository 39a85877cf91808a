package handlers_test

import (
	"net/http"
	"testing"

	"ferry/store"
	"ferry/store/storetest"
)

// A build started through the API, which names only a ref and a commit, shows the commit's
// title and author from git, as a pushed one shows GitLab's.
func TestABuildStartedByHandShowsItsCommitsTitleAndAuthor(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newBuildEnv(t, db)
		sha := e.commit("Add the order export\n\nwith a body", "v1")
		var b store.Build
		e.admin.must(http.StatusCreated, "POST", "/api/v1/projects/app/builds", `{"ref":"main","sha":"`+sha+`"}`).decode(t, &b)
		if b.CommitTitle != "" || b.CommitAuthor != "" {
			t.Fatalf("the queued build already names its commit: %q by %q", b.CommitTitle, b.CommitAuthor)
		}
		got := e.waitBuild(b.ID)
		if got.Status != store.BuildSuccess || got.CommitTitle != "Add the order export" || got.CommitAuthor != "Ada" {
			t.Errorf("the build ended %s with commit %q by %q, want success with \"Add the order export\" by Ada", got.Status, got.CommitTitle, got.CommitAuthor)
		}
	})
}
