package deploy_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"testing"
	"time"

	"ferry/deploy"
	"ferry/deploy/sshtest"
	"ferry/store"
	"ferry/store/storetest"
)

// BenchmarkPeakRSSDeployingFromDatabase1GB measures the peak resident memory of this process
// while a 1 GB artifact goes into PostgreSQL's chunk table as a build writes it, and then while
// a machine that never had the file copies it out of the database and deploys it to a host:
// both sides stream, one chunk at a time. The peak (VmHWM) is reset before each part.
// Run it with: go test -run '^$' -bench PeakRSSDeployingFromDatabase -benchtime 1x ./deploy/
func BenchmarkPeakRSSDeployingFromDatabase1GB(b *testing.B) {
	ctx := context.Background()
	db := storetest.Open(b, store.Postgres)
	c := sshtest.Start(b, 1, sshtest.Options{})
	spec := testSpec(store.Strategy{})
	targets := targetsOf(c)
	project := &store.Project{Name: "shop", GitLabPath: "g/shop", CloneURL: "https://gitlab.example.com/g/shop.git", Trigger: store.DefaultTrigger()}
	if err := db.CreateProject(ctx, project); err != nil {
		b.Fatal(err)
	}
	mustRollout(b, targets, spec, makeRelease(b, "base", artifact{}))
	var writePeak, readPeak int64
	var size int64
	for i := 0; b.Loop(); i++ {
		rel := makeRelease(b, "big-"+strconv.Itoa(i), artifact{padding: 1 << 30})
		size = rel.Size
		resetPeakRSS(b)
		id := keepInDatabase(b, db, project.ID, rel.Artifact)
		writePeak = max(writePeak, peakRSS(b))
		v := versionOf(b, db, project.ID, i, rel, id)
		if err := os.Remove(rel.Artifact); err != nil { // this machine never had it
			b.Fatal(err)
		}
		resetPeakRSS(b)
		start := time.Now()
		local, err := db.LocalArtifact(ctx, v, b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(time.Since(start).Seconds(), "copy-from-db-s")
		rel.Artifact = local
		mustRollout(b, targets, spec, rel)
		readPeak = max(readPeak, peakRSS(b))
		os.Remove(local)
	}
	b.ReportMetric(float64(writePeak)/(1<<20), "peak-RSS-write-MiB")
	b.ReportMetric(float64(readPeak)/(1<<20), "peak-RSS-read-and-deploy-MiB")
	b.ReportMetric(float64(size)/(1<<20), "artifact-MiB")
}

func keepInDatabase(b *testing.B, db *store.DB, projectID int64, file string) int64 {
	f, err := os.Open(file)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	w, err := db.CreateArtifact(context.Background(), projectID)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.Copy(w, f); err != nil {
		b.Fatal(err)
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	return w.ID()
}

// versionOf records rel as a version whose artifact is the database's artifact id.
func versionOf(b *testing.B, db *store.DB, projectID int64, i int, rel deploy.Release, id int64) *store.Version {
	ctx := context.Background()
	sha := fmt.Sprintf("%040x", i+1)
	build, err := db.CreateBuild(ctx, store.NewBuild{ProjectID: projectID, Ref: "main", Branch: "main", SHA: sha, TriggeredBy: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := db.ClaimBuild(ctx, "builder", time.Minute); err != nil {
		b.Fatal(err)
	}
	_, err = db.FinishBuild(ctx, build.ID, "builder", store.BuildResult{Status: store.BuildSuccess, Version: &store.NewVersion{
		Name: rel.Version, SHA: sha, Ref: "main", SHA256: rel.SHA256, Size: rel.Size, Path: rel.Artifact, ArtifactID: &id}})
	if err != nil {
		b.Fatal(err)
	}
	v, err := db.GetVersionByName(ctx, projectID, rel.Version)
	if err != nil {
		b.Fatal(err)
	}
	return v
}
