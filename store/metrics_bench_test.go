package store_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"ferry/store"
	"ferry/store/storetest"
)

// benchJobs is how many finished builds and deployments the scrape benchmark reads: a year
// of a busy team.
const benchJobs = 10_000

// BenchmarkReadStats times one /metrics scrape's reading of the store with benchJobs finished
// builds and as many deployments, on each database.
func BenchmarkReadStats(b *testing.B) {
	for _, d := range storetest.Dialects {
		b.Run(string(d), func(b *testing.B) {
			u := storetest.URL(b, d)
			db := storetest.OpenURL(b, u)
			ctx := context.Background()
			p := &store.Project{Name: "orders", GitLabPath: "shop/orders", CloneURL: "https://x/y.git", Trigger: store.DefaultTrigger()}
			if err := db.CreateProject(ctx, p); err != nil {
				b.Fatal(err)
			}
			if err := db.CreateEnvironment(ctx, &store.Environment{ProjectID: p.ID, Name: "prod"}); err != nil {
				b.Fatal(err)
			}
			env, err := db.GetEnvironment(ctx, p.ID, "prod")
			if err != nil {
				b.Fatal(err)
			}
			built := storetest.FinishedBuild(b, db, p, store.BuildSuccess)
			fillJobs(b, d, u, p.ID, env.ID, *built.VersionID)
			b.Run("first", func(b *testing.B) {
				for b.Loop() {
					builds, _, err := db.ReadTimings(ctx, store.JobBuild, 0)
					if err != nil {
						b.Fatal(err)
					}
					deployments, _, err := db.ReadTimings(ctx, store.JobDeployment, 0)
					if err != nil {
						b.Fatal(err)
					}
					if len(builds) != benchJobs+1 || len(deployments) != benchJobs {
						b.Fatalf("read %d build and %d deployment timings", len(builds), len(deployments))
					}
				}
			})
			b.Run("next", func(b *testing.B) {
				for b.Loop() {
					if _, err := db.ReadStats(ctx); err != nil {
						b.Fatal(err)
					}
					for _, kind := range []string{store.JobBuild, store.JobDeployment} {
						if _, _, err := db.ReadTimings(ctx, kind, benchJobs+2); err != nil {
							b.Fatal(err)
						}
					}
				}
			})
		})
	}
}

// fillJobs inserts the finished jobs with one statement each, through a connection of its own.
func fillJobs(b *testing.B, d store.Dialect, u string, projectID, envID, versionID int64) {
	driver, dsn := "postgres", u
	series := `generate_series(2, ?) AS n(i)`
	if d == store.SQLite {
		driver, dsn = "sqlite", "file:"+strings.TrimPrefix(u, "sqlite:")
		series = `(WITH RECURSIVE s(i) AS (SELECT 2 UNION ALL SELECT i + 1 FROM s WHERE i < ?) SELECT i FROM s) AS n`
	}
	conn, err := sqlx.Open(driver, dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	start := time.Now().UTC().Add(-time.Hour)
	end := start.Add(90 * time.Second)
	for _, q := range []string{
		`INSERT INTO builds (project_id, number, status, queued_at, started_at, finished_at)
			SELECT ?, i, 'success', ?, ?, ? FROM ` + series,
		`INSERT INTO deployments (project_id, environment_id, version_id, status, queued_at, started_at, finished_at)
			SELECT ?, ` + strconv.FormatInt(envID, 10) + `, ` + strconv.FormatInt(versionID, 10) + `, 'success', ?, ?, ? FROM ` + series,
	} {
		if _, err := conn.Exec(conn.Rebind(q), projectID, start, start, end, benchJobs+1); err != nil {
			b.Fatalf("fill: %v", err)
		}
	}
}
