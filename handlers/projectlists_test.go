package handlers_test

import (
	"context"
	"slices"
	"testing"

	"ferry/store"
	"ferry/store/storetest"
)

// TestProjectListFollowsEveryChange: GET /api/v1/projects keeps its answer while nothing
// changes, so every kind of change, made through this server or by another process on the
// same database, must show in the next answer, for administrators and members alike.
func TestProjectListFollowsEveryChange(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(string(d), func(t *testing.T) {
			dbURL := storetest.URL(t, d)
			db, other := storetest.OpenURL(t, dbURL), storetest.OpenURL(t, dbURL) // two processes
			h := newServer(t, db)
			admin := tokenClient(t, h, db, mustUser(t, db, "boss", true))
			dev := tokenClient(t, h, db, mustUser(t, db, "dev", false))
			names := func(c *client) []string {
				t.Helper()
				var list []struct{ Name string }
				c.must(200, "GET", "/api/v1/projects", "").decode(t, &list)
				var out []string
				for _, p := range list {
					out = append(out, p.Name)
				}
				return out
			}
			want := func(step string, c *client, names []string, expected ...string) {
				t.Helper()
				if !slices.Equal(names, expected) {
					t.Errorf("%s: list %v, want %v", step, names, expected)
				}
			}
			ctx := context.Background()
			admin.must(201, "POST", "/api/v1/projects", `{"name":"alpha","gitlab_path":"g/alpha","clone_url":"https://gitlab.example.com/g/alpha.git"}`)
			want("after a create", admin, names(admin), "alpha")
			want("the same again", admin, names(admin), "alpha")
			want("a member of nothing", dev, names(dev))

			must(t, other.CreateProject(ctx, &store.Project{Name: "beta", GitLabPath: "g/beta", CloneURL: "https://gitlab.example.com/g/beta.git", Trigger: store.DefaultTrigger()}))
			want("after another process created beta", admin, names(admin), "alpha", "beta")

			beta, err := other.GetProject(ctx, "beta")
			must(t, err)
			_, err = other.SetMember(ctx, beta.ID, "dev", false)
			must(t, err)
			want("after another process made dev a member of beta", dev, names(dev), "beta")

			admin.must(200, "PATCH", "/api/v1/projects/alpha", `{"name":"gamma"}`)
			want("after a rename", admin, names(admin), "beta", "gamma")

			var list []struct {
				Name    string
				Trigger store.Trigger
			}
			admin.must(200, "PATCH", "/api/v1/projects/beta", `{"trigger":{"keyword":"ship"}}`)
			admin.must(200, "GET", "/api/v1/projects", "").decode(t, &list)
			if len(list) != 2 || list[0].Trigger.Keyword != "ship" {
				t.Errorf("after a trigger change: %+v, want beta's keyword ship", list)
			}

			must(t, other.RemoveMember(ctx, beta.ID, "dev"))
			want("after another process removed dev from beta", dev, names(dev))

			must(t, other.DeleteProject(ctx, "gamma"))
			want("after another process deleted gamma", admin, names(admin), "beta")
		})
	}
}
