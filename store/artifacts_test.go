package store_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"ferry/store"
	"ferry/store/storetest"
)

// randomArtifact is n bytes of seeded noise (a tar.gz does not compress either), made as it
// is read so that the test never holds it whole.
func randomArtifact(seed uint64, n int64) io.Reader {
	return io.LimitReader(rand.NewChaCha8([32]byte{byte(seed)}), n)
}

// keepArtifact writes n bytes into a new artifact of the project through an odd-sized buffer
// (so that writes straddle chunk boundaries) and returns its id and sha256.
func keepArtifact(t testing.TB, db *store.DB, projectID int64, seed uint64, n int64) (int64, string) {
	t.Helper()
	w, err := db.CreateArtifact(context.Background(), projectID)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.New()
	if _, err := io.CopyBuffer(io.MultiWriter(w, sum), randomArtifact(seed, n), make([]byte, 100_003)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return w.ID(), hex.EncodeToString(sum.Sum(nil))
}

// succeedWithArtifact finishes build b as version name pointing at the artifact.
func succeedWithArtifact(t testing.TB, db *store.DB, b *store.Build, name string, id int64, sum string, size int64) *store.Version {
	t.Helper()
	ctx := context.Background()
	mustClaimBuild(t, db, "w-pack", b.ID)
	nv := newVersion(name, 0)
	nv.SHA, nv.SHA256, nv.Size, nv.ArtifactID = b.SHA, sum, size, &id
	if _, err := db.FinishBuild(ctx, b.ID, "w-pack", store.BuildResult{Status: store.BuildSuccess, Version: nv}); err != nil {
		t.Fatal(err)
	}
	v, err := db.GetVersionByName(ctx, b.ProjectID, name)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func countRows(t testing.TB, db *store.DB, query string) int {
	t.Helper()
	var n int
	if err := db.Transact(context.Background(), func(tx *sqlx.Tx) error { return tx.Get(&n, query) }); err != nil {
		t.Fatal(err)
	}
	return n
}

func sumOf(t testing.TB, r io.Reader) (string, int64) {
	t.Helper()
	h := sha256.New()
	n, err := io.Copy(h, r)
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil)), n
}

// TestArtifactChunksRoundTrip writes a 24 MiB artifact into the database as a build packs it,
// reads it back chunk by chunk while watching the heap, and checks size and sha256 each way.
func TestArtifactChunksRoundTrip(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		f := newJobFixture(t, db)
		const size = 24<<20 + 12_345
		id, sum := keepArtifact(t, db, f.project.ID, 1, size)
		if n := countRows(t, db, fmt.Sprintf(`SELECT count(*) FROM artifact_chunks WHERE artifact_id = %d`, id)); n != 25 {
			t.Fatalf("%d chunks kept for %d bytes, want 25 of at most %d", n, size, store.ArtifactChunkSize)
		}
		v := succeedWithArtifact(t, db, mustBuild(t, db, f.project.ID, 1), "v1", id, sum, size)
		if v.ArtifactID == nil || *v.ArtifactID != id {
			t.Fatalf("version's artifact id %v, want %d", v.ArtifactID, id)
		}

		r, err := db.OpenArtifact(ctx, v)
		if err != nil {
			t.Fatal(err)
		}
		var got string
		var n int64
		peak := heapGrowthDuring(func() { got, n = sumOf(t, r) })
		r.Close()
		if got != sum || n != size {
			t.Fatalf("read back %d bytes with sha256 %s, want %d bytes with %s", n, got, size, sum)
		}
		t.Logf("heap growth while reading %d MiB from the database: %.1f MiB", size>>20, float64(peak)/(1<<20))
		if peak > 12<<20 {
			t.Errorf("the heap grew by %d MiB while reading a %d MiB artifact: the reader must hold a chunk, not the artifact", peak>>20, size>>20)
		}
	})
}

// heapGrowthDuring runs fn and returns how far the heap in use rose above where it started,
// sampled every millisecond.
func heapGrowthDuring(fn func()) uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	var peak atomic.Uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > base && ms.HeapInuse-base > peak.Load() {
				peak.Store(ms.HeapInuse - base)
			}
			select {
			case <-done:
				return
			case <-time.After(time.Millisecond):
			}
		}
	})
	fn()
	close(done)
	wg.Wait()
	return peak.Load()
}

// TestArtifactTamperedInDatabase: a chunk changed in the database is noticed by the reader,
// and no local copy is made of it.
func TestArtifactTamperedInDatabase(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		f := newJobFixture(t, db)
		const size = 2<<20 + 7
		id, sum := keepArtifact(t, db, f.project.ID, 2, size)
		v := succeedWithArtifact(t, db, mustBuild(t, db, f.project.ID, 1), "v1", id, sum, size)
		err := db.Transact(ctx, func(tx *sqlx.Tx) error {
			var data []byte
			if err := tx.Get(&data, fmt.Sprintf(`SELECT data FROM artifact_chunks WHERE artifact_id = %d AND seq = 1`, id)); err != nil {
				return err
			}
			data[10] ^= 0xff
			_, err := tx.Exec(tx.Rebind(`UPDATE artifact_chunks SET data = ? WHERE artifact_id = ? AND seq = 1`), data, id)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		r, err := db.OpenArtifact(ctx, v)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, r); err == nil || !strings.Contains(err.Error(), "sha256") {
			t.Fatalf("reading a tampered artifact: %v, want a sha256 error", err)
		}
		dataDir := t.TempDir()
		if _, err := db.LocalArtifact(ctx, v, dataDir); err == nil || !strings.Contains(err.Error(), "sha256") {
			t.Fatalf("copying a tampered artifact: %v, want a sha256 error", err)
		}
		if left, _ := filepath.Glob(filepath.Join(dataDir, "artifacts", "orders", "*")); len(left) != 0 {
			t.Errorf("files left after a failed copy: %v", left)
		}
	})
}

// TestLocalArtifactCopy: a machine that never had the artifact file copies it from the
// database once, and deploys it again from that copy without the database.
func TestLocalArtifactCopy(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		f := newJobFixture(t, db)
		const size = 3<<20 + 1
		id, sum := keepArtifact(t, db, f.project.ID, 3, size)
		v := succeedWithArtifact(t, db, mustBuild(t, db, f.project.ID, 1), "v1", id, sum, size)
		dataDir := t.TempDir()
		path, err := db.LocalArtifact(ctx, v, dataDir)
		if err != nil {
			t.Fatal(err)
		}
		if want := store.ArtifactFile(dataDir, "orders", "v1"); path != want {
			t.Fatalf("local copy at %s, want %s", path, want)
		}
		file, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		got, n := sumOf(t, file)
		file.Close()
		if got != sum || n != size {
			t.Fatalf("local copy has %d bytes, sha256 %s; want %d, %s", n, got, size, sum)
		}
		// The second read comes from the copy: it works with the chunks gone.
		if err := db.Transact(ctx, func(tx *sqlx.Tx) error {
			_, err := tx.Exec(fmt.Sprintf(`DELETE FROM artifact_chunks WHERE artifact_id = %d`, id))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if again, err := db.LocalArtifact(ctx, v, dataDir); err != nil || again != path {
			t.Fatalf("second LocalArtifact = %q, %v; want the copy %s", again, err, path)
		}
		// Another machine cannot read it any more.
		if _, err := db.LocalArtifact(ctx, v, t.TempDir()); err == nil {
			t.Fatal("copying an artifact whose chunks are gone succeeded")
		}
		// A version without an artifact in the database and without its file is not found.
		plain := mustSucceed(t, db, mustBuild(t, db, f.project.ID, 2), "v2")
		pv, _ := db.GetVersion(ctx, *plain.VersionID)
		_, err = db.LocalArtifact(ctx, pv, dataDir)
		wantCode(t, "no file, no chunks", err, store.ENOTFOUND, "missing from the artifact store")
	})
}

// TestArtifactMustMatchItsVersion: a version cannot point at an artifact that is incomplete,
// of another size or sha256, or of another project.
func TestArtifactMustMatchItsVersion(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		f := newJobFixture(t, db)
		id, sum := keepArtifact(t, db, f.project.ID, 4, 1000)
		other := mustJobProject(t, db, "billing")
		otherID, otherSum := keepArtifact(t, db, other.ID, 4, 1000)
		open, err := db.CreateArtifact(ctx, f.project.ID)
		if err != nil {
			t.Fatal(err)
		}
		open.Write([]byte("half"))
		openID := open.ID()
		for i, tc := range []struct {
			name string
			id   int64
			sum  string
			size int64
		}{
			{"wrong sha256", id, strings.Repeat("0", 64), 1000},
			{"wrong size", id, sum, 999},
			{"another project's", otherID, otherSum, 1000},
			{"not complete", openID, sum, 1000},
		} {
			b := mustBuild(t, db, f.project.ID, 10+i)
			mustClaimBuild(t, db, "w", b.ID)
			nv := newVersion("bad"+fmt.Sprint(i), 0)
			nv.SHA, nv.SHA256, nv.Size, nv.ArtifactID = b.SHA, tc.sum, tc.size, &tc.id
			_, err := db.FinishBuild(ctx, b.ID, "w", store.BuildResult{Status: store.BuildSuccess, Version: nv})
			wantCode(t, tc.name, err, store.EINVALID, "the artifact kept in the database")
			if _, err := db.FinishBuild(ctx, b.ID, "w", store.BuildResult{Status: store.BuildFailed, Error: "refused"}); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// TestRetentionRemovesArtifactChunks: pruning a version deletes its artifact's chunks in the
// database; an artifact no version took is swept a day later; kept ones stay readable.
func TestRetentionRemovesArtifactChunks(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		f := newJobFixture(t, db)
		var versions []*store.Version
		for i := range 3 {
			size := int64(2<<20 + 1 + i)
			id, sum := keepArtifact(t, db, f.project.ID, uint64(10+i), size)
			versions = append(versions, succeedWithArtifact(t, db, mustBuild(t, db, f.project.ID, i), fmt.Sprintf("v%d", i), id, sum, size))
		}
		orphan, _ := keepArtifact(t, db, f.project.ID, 20, 5000) // its build died before recording a version
		if n := countRows(t, db, `SELECT count(*) FROM artifact_chunks`); n != 3*3+1 {
			t.Fatalf("%d chunks before retention, want 10", n)
		}
		marked, err := db.PruneVersions(ctx, f.project.ID, 1)
		if err != nil || len(marked) != 2 {
			t.Fatalf("PruneVersions = %d versions, %v; want 2", len(marked), err)
		}
		for _, v := range versions[:2] {
			left := countRows(t, db, fmt.Sprintf(`SELECT count(*) FROM artifact_chunks WHERE artifact_id = %d`, *v.ArtifactID))
			if left != 0 {
				t.Errorf("%s: %d chunks left after retention removed it", v.Name, left)
			}
			again, _ := db.GetVersion(ctx, v.ID)
			if _, err := db.OpenArtifact(ctx, again); store.ErrorCode(err) != store.ENOTFOUND {
				t.Errorf("%s: OpenArtifact after retention: %v, want not found", v.Name, err)
			}
		}
		r, err := db.OpenArtifact(ctx, versions[2])
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := sumOf(t, r); got != versions[2].SHA256 {
			t.Errorf("kept version reads back with sha256 %s, want %s", got, versions[2].SHA256)
		}

		st, err := db.PurgeOld(ctx, store.DefaultRetention)
		if err != nil || st.Artifacts != 0 {
			t.Fatalf("purge at once: %+v, %v; want the orphan kept for a day", st, err)
		}
		f.clock.Add(25 * time.Hour)
		st, err = db.PurgeOld(ctx, store.DefaultRetention)
		if err != nil || st.Artifacts != 1 {
			t.Fatalf("purge a day later: %+v, %v; want the orphan removed", st, err)
		}
		if n := countRows(t, db, fmt.Sprintf(`SELECT count(*) FROM artifact_chunks WHERE artifact_id = %d`, orphan)); n != 0 {
			t.Errorf("%d chunks of the orphan left", n)
		}
		if n := countRows(t, db, `SELECT count(*) FROM artifact_chunks`); n != 3 {
			t.Errorf("%d chunks left, want the kept version's 3", n)
		}
	})
}
