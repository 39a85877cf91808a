package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ferry/store"
	"ferry/store/storetest"
)

// A running ferry queues a scheduled deployment when its time comes, by the database's clock.
func TestServeQueuesAScheduledDeployment(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(string(d), func(t *testing.T) {
			cfg := DefaultConfig(func(string) string { return "" })
			cfg.Addr, cfg.DataDir, cfg.DeployWorkers, cfg.BuildWorkers = "127.0.0.1:0", filepath.Join(t.TempDir(), "data"), 0, 0
			if d == store.Postgres {
				cfg.DatabaseURL = storetest.URL(t, store.Postgres)
			}
			m := NewMain(cfg)
			ctx := context.Background()
			if err := m.Run(ctx); err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			db := m.DB
			p := &store.Project{Name: "orders", GitLabPath: "g/orders", CloneURL: "https://x/y.git", Trigger: store.DefaultTrigger(), KeepVersions: 5}
			promoteMust(t, db.CreateProject(ctx, p))
			promoteMust(t, db.CreateHost(ctx, &store.Host{Name: "web-1", Address: "127.0.0.1", User: "deploy"}))
			env := &store.Environment{ProjectID: p.ID, Name: "staging", Hosts: []string{"web-1"}}
			promoteMust(t, db.CreateEnvironment(ctx, env))
			b := storetest.FinishedBuild(t, db, p, store.BuildSuccess)
			at := time.Now().Add(2 * time.Second)
			dep, err := db.CreateDeployment(store.WithActor(ctx, store.Actor{Name: "tester"}), store.NewDeployment{ProjectID: p.ID,
				EnvironmentID: env.ID, VersionID: *b.VersionID, TriggeredBy: "test", ScheduledAt: &at})
			promoteMust(t, err)
			if dep.Status != store.DeploymentScheduled {
				t.Fatalf("created %s, want scheduled", dep.Status)
			}
			deadline := time.Now().Add(20 * time.Second)
			for {
				got, err := db.GetDeployment(ctx, dep.ID)
				promoteMust(t, err)
				if got.Status == store.DeploymentQueued {
					if time.Now().Before(at) {
						t.Fatalf("queued before its time %s", at)
					}
					return
				}
				if time.Now().After(deadline) {
					t.Fatalf("still %s 18 s after its time", got.Status)
				}
				time.Sleep(200 * time.Millisecond)
			}
		})
	}
}

func promoteMust(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestBadApprovalExpiry(t *testing.T) {
	env := append(ferryEnv("FERRY_DATA_DIR="+filepath.Join(t.TempDir(), "data"), "FERRY_ADDR=127.0.0.1:0"), "FERRY_APPROVAL_EXPIRY=tomorrow")
	res := runFerry(t, env, "", "serve")
	if res.code == 0 || !strings.Contains(res.stderr, "FERRY_APPROVAL_EXPIRY: want a duration") {
		t.Fatalf("exit %d, stderr:\n%s", res.code, res.stderr)
	}
}
