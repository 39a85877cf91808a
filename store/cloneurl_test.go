package store_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jmoiron/sqlx"

	"ferry/store"
	"ferry/store/storetest"
)

func TestSplitAndShowCloneURLs(t *testing.T) {
	tests := []struct {
		name, in, clean, creds, shown string
	}{
		{"gitlab token", "https://oauth2:glpat-abc@gitlab.example.com/g/app.git", "https://gitlab.example.com/g/app.git", "oauth2:glpat-abc", "https://gitlab.example.com/g/app.git"},
		{"token as user", "https://ghp_token123@github.com/o/r.git", "https://github.com/o/r.git", "ghp_token123", "https://github.com/o/r.git"},
		{"escaped password", "http://u:p%40ss%3Aw@h:8080/r.git", "http://h:8080/r.git", "u:p%40ss%3Aw", "http://h:8080/r.git"},
		{"plain https", "https://gitlab.example.com/g/app.git", "https://gitlab.example.com/g/app.git", "", "https://gitlab.example.com/g/app.git"},
		{"ssh user is no secret", "ssh://git@gitlab.example.com/g/app.git", "ssh://git@gitlab.example.com/g/app.git", "", "ssh://git@gitlab.example.com/g/app.git"},
		{"ssh password hidden", "ssh://git:pw123@gitlab.example.com/g/app.git", "ssh://git:pw123@gitlab.example.com/g/app.git", "", "ssh://git@gitlab.example.com/g/app.git"},
		{"scp form", "git@gitlab.example.com:g/app.git", "git@gitlab.example.com:g/app.git", "", "git@gitlab.example.com:g/app.git"},
		{"unparseable", "https://u:sec ret@h/x", "https://u:sec ret@h/x", "", "https://h/x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clean, creds := store.SplitCloneURL(tt.in)
			if clean != tt.clean || creds != tt.creds {
				t.Errorf("SplitCloneURL(%q) = %q, %q; want %q, %q", tt.in, clean, creds, tt.clean, tt.creds)
			}
			if got := store.ShownCloneURL(tt.in); got != tt.shown {
				t.Errorf("ShownCloneURL(%q) = %q, want %q", tt.in, got, tt.shown)
			}
		})
	}
	if u, p := store.CloneUser("u:p%40ss%3Aw"); u != "u" || p != "p@ss:w" {
		t.Errorf("CloneUser: %q %q", u, p)
	}
}

// TestMigrationSplitsStoredCloneURLs puts a credentialed clone URL into the table as ferry
// stored it before, and checks that the next migration moves the credentials out, encrypted.
func TestMigrationSplitsStoredCloneURLs(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(string(d), func(t *testing.T) {
			ctx := context.Background()
			const token = "glpat-Legacy-Token-123"
			u := storetest.URL(t, d)
			db := storetest.OpenURL(t, u)
			p := mustProject(t, db, "legacy")

			driver, dsn := "postgres", u
			if d == store.SQLite {
				driver, dsn = "sqlite", "file:"+strings.TrimPrefix(u, "sqlite:")
			}
			raw, err := sqlx.Open(driver, dsn)
			logsNoErr(t, err)
			defer raw.Close()
			legacy := "https://oauth2:" + token + "@gitlab.example.com/team/legacy.git"
			_, err = raw.Exec(raw.Rebind(`UPDATE projects SET clone_url = ? WHERE id = ?`), legacy, p.ID)
			logsNoErr(t, err)

			if _, err := db.Migrate(ctx); err != nil {
				t.Fatal(err)
			}
			var url, enc string
			logsNoErr(t, raw.QueryRow(raw.Rebind(`SELECT clone_url, clone_credentials_enc FROM projects WHERE id = ?`), p.ID).Scan(&url, &enc))
			if url != "https://gitlab.example.com/team/legacy.git" || strings.Contains(enc, token) || enc == "" {
				t.Errorf("after migration: clone_url %q, clone_credentials_enc %q; want the URL without credentials and them encrypted", url, enc)
			}
			got, err := db.GetProject(ctx, "legacy")
			logsNoErr(t, err)
			if got.CloneCredentials != "oauth2:"+token {
				t.Errorf("credentials read back: %q", got.CloneCredentials)
			}
			// Nothing is left to do the second time.
			if _, err := db.Migrate(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}
