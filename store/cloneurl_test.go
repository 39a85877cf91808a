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

// The attack on the split: a clone URL whose credentials Go's URL parser cannot read (a bad
// percent escape, or a '#', '/' or '?' in the password) was kept whole in clone_url, which
// every member reads. Either the credentials are split out or the URL is refused; never is
// the secret stored in the shown URL.
func TestCloneURLWithUnreadableCredentialsNeverKeepsThem(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		for i, raw := range []string{
			"https://oauth2:Sekrit%zz@gitlab.example.com/team/app.git",
			"https://deploy:Sek#rit@gitlab.example.com/team/app.git",
			"https://deploy:Sek/rit@gitlab.example.com/team/app.git",
			"https://deploy:Sek?rit@gitlab.example.com/team/app.git",
		} {
			name := "app" + string(rune('a'+i))
			p := &store.Project{Name: name, GitLabPath: "team/" + name, CloneURL: raw,
				WebhookSecret: "s", Trigger: store.DefaultTrigger()}
			err := db.CreateProject(actorCtx(), p)
			if err == nil {
				got, gerr := db.GetProject(context.Background(), p.Name)
				logsNoErr(t, gerr)
				if strings.Contains(got.CloneURL, "Sek") {
					t.Errorf("%s: stored and shown as clone_url %q", raw, got.CloneURL)
				}
				continue
			}
			wantCode(t, raw, err, store.EINVALID, "clone_url")
			if strings.Contains(err.Error(), "Sek") {
				t.Errorf("%s: the refusal repeats the secret: %v", raw, err)
			}
		}
		p := mustProject(t, db, "edited")
		for _, bad := range []string{"https://oauth2:Sekrit%zz@gitlab.example.com/team/edited.git", "https://Sek#rit@gitlab.example.com/team/edited.git"} {
			_, err := db.UpdateProject(actorCtx(), p.Name, store.ProjectUpdate{CloneURL: &bad})
			if err != nil {
				wantCode(t, bad, err, store.EINVALID, "clone_url")
				continue
			}
			got, _ := db.GetProject(context.Background(), p.Name)
			if strings.Contains(got.CloneURL, "Sek") {
				t.Errorf("an update stored clone_url %q", got.CloneURL)
			}
		}
	})
}
