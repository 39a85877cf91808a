package store_test

import (
	"context"
	"strings"
	"testing"

	"ferry/store"
	"ferry/store/storetest"
)

func TestCheckCommitID(t *testing.T) {
	tests := []struct {
		name, sha string
		ok        bool
	}{
		{"sha-1", strings.Repeat("ab", 20), true},
		{"sha-256", strings.Repeat("0f", 32), true},
		{"abbreviated", "3f2a9c1", false},
		{"41 digits", strings.Repeat("a", 41), false},
		{"between the two lengths", strings.Repeat("a", 50), false},
		{"65 digits", strings.Repeat("a", 65), false},
		{"upper case", strings.Repeat("AB", 20), false},
		{"not hex", strings.Repeat("g", 40), false},
		{"option-looking", "-" + strings.Repeat("a", 39), false},
		{"empty", "", false},
		{"trailing newline", strings.Repeat("a", 40) + "\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := store.CheckCommitID(tt.sha)
			if (err == nil) != tt.ok {
				t.Fatalf("CheckCommitID(%q) = %v, want ok=%v", tt.sha, err, tt.ok)
			}
			if err != nil && (store.ErrorCode(err) != store.EINVALID || !strings.Contains(store.ErrorMessage(err), "40 or 64")) {
				t.Errorf("error %v (%s) does not say what a commit id is", err, store.ErrorCode(err))
			}
		})
	}
	if got := store.ShortSHA(strings.Repeat("ab", 20)); got != "abababab" {
		t.Errorf("ShortSHA = %q, want 8 characters", got)
	}
}

// A build names one commit: the store refuses an abbreviation as the handlers and git do.
func TestCreateBuildRefusesAbbreviatedCommit(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		f := newJobFixture(t, db)
		_, err := db.CreateBuild(context.Background(), store.NewBuild{ProjectID: f.project.ID, Ref: "main", Branch: "main", SHA: "3f2a9c1e"})
		wantCode(t, "abbreviated sha", err, store.EINVALID, "sha: \"3f2a9c1e\" is not a full commit id (40 or 64 lowercase hex digits)")
		if _, err := db.CreateBuild(context.Background(), store.NewBuild{ProjectID: f.project.ID, Ref: "main", Branch: "main", SHA: strings.Repeat("c", 64)}); err != nil {
			t.Fatalf("a SHA-256 commit id was refused: %v", err)
		}
	})
}
