package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// ArtifactChunkSize is how many bytes one row of artifact_chunks holds (the last one fewer):
// large enough that a 1 GiB artifact is a thousand rows, small enough that a reader or writer
// holds little memory.
const ArtifactChunkSize = 1 << 20

// orphanArtifactAge is how long an artifact no version points at is kept: its build may still
// be packing it or about to record its version.
const orphanArtifactAge = 24 * time.Hour

// cacheSweepAge is how old a file in a data dir's artifact store must be before it is removed
// for belonging to no kept version: a build records its version a moment after packing.
const cacheSweepAge = time.Hour

// KeepsArtifacts reports whether artifacts are kept in this database (PostgreSQL): ferry
// processes on several machines, each with its own data dir, share it, so every one of them
// must be able to read every artifact. On SQLite (one machine) artifacts are files in the
// data dir only.
func (db *DB) KeepsArtifacts() bool { return db.dialect == Postgres }

// ArtifactFile returns where a data dir keeps a version's artifact:
// <dataDir>/artifacts/<project>/<version>.tar.gz. The process that built it packs it there;
// another process keeps there its copy of an artifact read from the database.
func ArtifactFile(dataDir, project, version string) string {
	return filepath.Join(dataDir, "artifacts", project, version+".tar.gz")
}

// ArtifactWriter writes an artifact into the database while it is made, one chunk per row,
// holding at most one chunk in memory. Close records it complete; an artifact that no
// version takes is removed with DeleteArtifact (or swept after a day).
type ArtifactWriter struct {
	db   *DB
	ctx  context.Context
	id   int64
	seq  int
	buf  []byte
	size int64
	sum  hash.Hash
	err  error
}

// CreateArtifact starts an artifact of a project in the database and returns its writer.
func (db *DB) CreateArtifact(ctx context.Context, projectID int64) (*ArtifactWriter, error) {
	var id int64
	err := db.db.GetContext(ctx, &id, db.q(`INSERT INTO artifacts (project_id, created_at) VALUES (?, ?) RETURNING id`),
		projectID, db.now())
	if err != nil {
		return nil, fmt.Errorf("start keeping an artifact in the database: %w", err)
	}
	return &ArtifactWriter{db: db, ctx: ctx, id: id, buf: make([]byte, 0, ArtifactChunkSize), sum: sha256.New()}, nil
}

// ID is the artifact's id, for NewVersion.ArtifactID.
func (w *ArtifactWriter) ID() int64 { return w.id }

// Write appends p, storing each chunk as it fills. After a failed write every write fails.
func (w *ArtifactWriter) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	written := 0
	for written < len(p) {
		k := min(len(p)-written, ArtifactChunkSize-len(w.buf))
		w.buf = append(w.buf, p[written:written+k]...)
		w.sum.Write(p[written : written+k])
		written += k
		if len(w.buf) == ArtifactChunkSize {
			if err := w.flush(); err != nil {
				return written, err
			}
		}
	}
	return written, nil
}

func (w *ArtifactWriter) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	_, err := w.db.db.ExecContext(w.ctx, w.db.q(`INSERT INTO artifact_chunks (artifact_id, seq, data) VALUES (?, ?, ?)`),
		w.id, w.seq, w.buf)
	if err != nil {
		w.err = fmt.Errorf("keep part %d of the artifact in the database: %w", w.seq+1, err)
		return w.err
	}
	w.seq++
	w.size += int64(len(w.buf))
	w.buf = w.buf[:0]
	return nil
}

// Close stores the last chunk and records the artifact complete, with the size and sha256 of
// what was written. It returns the first error of a write, if one failed.
func (w *ArtifactWriter) Close() error {
	if err := w.flush(); err != nil {
		return err
	}
	w.buf = nil
	_, err := w.db.db.ExecContext(w.ctx, w.db.q(`UPDATE artifacts SET sha256 = ?, size = ?, chunks = ?, complete = ? WHERE id = ?`),
		hex.EncodeToString(w.sum.Sum(nil)), w.size, w.seq, true, w.id)
	if err != nil {
		w.err = fmt.Errorf("record the artifact complete in the database: %w", err)
		return w.err
	}
	w.err = errors.New("the artifact writer is closed")
	return nil
}

// DeleteArtifact removes an artifact and its chunks from the database; a version that pointed
// at it no longer does. Deleting one that is gone is no error.
func (db *DB) DeleteArtifact(ctx context.Context, id int64) error {
	if _, err := db.db.ExecContext(ctx, db.q(`DELETE FROM artifacts WHERE id = ?`), id); err != nil {
		return fmt.Errorf("delete artifact %d: %w", id, err)
	}
	return nil
}

// checkArtifact makes sure a new version points at a complete artifact of its own project
// with the version's size and sha256.
func (db *DB) checkArtifact(ctx context.Context, q queryer, projectID int64, nv *NewVersion) error {
	var a struct {
		ProjectID int64  `db:"project_id"`
		SHA256    string `db:"sha256"`
		Size      int64  `db:"size"`
		Complete  bool   `db:"complete"`
	}
	err := q.GetContext(ctx, &a, db.q(`SELECT project_id, sha256, size, complete FROM artifacts WHERE id = ?`), *nv.ArtifactID)
	if err != nil {
		return formatError(err, fmt.Sprintf("artifact %d", *nv.ArtifactID))
	}
	if a.ProjectID != projectID || !a.Complete || a.SHA256 != nv.SHA256 || a.Size != nv.Size {
		return Errorf(EINVALID, "version %s: the artifact kept in the database (%d bytes, sha256 %q, complete %t) is not the version's (%d bytes, sha256 %s)",
			nv.Name, a.Size, a.SHA256, a.Complete, nv.Size, nv.SHA256)
	}
	return nil
}

// OpenArtifact returns a reader of v's artifact from the database, one chunk at a time (it
// holds at most one chunk in memory). The reader fails instead of ending when what it read
// does not have v's size and sha256. ENOTFOUND when v has no artifact in the database.
func (db *DB) OpenArtifact(ctx context.Context, v *Version) (io.ReadCloser, error) {
	if v.ArtifactID == nil {
		return nil, Errorf(ENOTFOUND, "version %s has no artifact in the database", v.Name)
	}
	var a struct {
		Chunks   int  `db:"chunks"`
		Complete bool `db:"complete"`
	}
	err := db.db.GetContext(ctx, &a, db.q(`SELECT chunks, complete FROM artifacts WHERE id = ?`), *v.ArtifactID)
	if err != nil {
		return nil, formatError(err, "the artifact of version "+v.Name)
	}
	if !a.Complete {
		return nil, Errorf(ENOTFOUND, "the artifact of version %s was never completely stored", v.Name)
	}
	return &artifactReader{db: db, ctx: ctx, v: v, chunks: a.Chunks, sum: sha256.New()}, nil
}

type artifactReader struct {
	db     *DB
	ctx    context.Context
	v      *Version
	chunks int
	seq    int
	buf    []byte
	read   int64
	sum    hash.Hash
}

func (r *artifactReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		if r.seq == r.chunks {
			return 0, r.end()
		}
		var data []byte
		err := r.db.db.GetContext(r.ctx, &data, r.db.q(`SELECT data FROM artifact_chunks WHERE artifact_id = ? AND seq = ?`),
			*r.v.ArtifactID, r.seq)
		if errors.Is(err, sql.ErrNoRows) {
			return 0, fmt.Errorf("part %d of the artifact of version %s is missing from the database (removed by retention?)", r.seq+1, r.v.Name)
		}
		if err != nil {
			return 0, fmt.Errorf("read part %d of the artifact of version %s: %w", r.seq+1, r.v.Name, err)
		}
		r.buf = data
		r.seq++
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	r.sum.Write(p[:n])
	r.read += int64(n)
	return n, nil
}

// end checks what was read against the version once the last chunk is used up.
func (r *artifactReader) end() error {
	got := hex.EncodeToString(r.sum.Sum(nil))
	if r.read != r.v.Size || got != r.v.SHA256 {
		return fmt.Errorf("the artifact of version %s read from the database has %d bytes and sha256 %s, want %d bytes and %s",
			r.v.Name, r.read, got, r.v.Size, r.v.SHA256)
	}
	return io.EOF
}

func (r *artifactReader) Close() error {
	r.buf = nil
	return nil
}

// LocalArtifact returns a file on this machine holding v's artifact: v.Path when it is here
// (the machine that built it, or any machine on SQLite), else dataDir's copy, which it first
// reads from the database, checked against v's size and sha256, when this machine has not read
// it before. Reading a new copy removes the copies of the project's versions that retention
// dropped. ENOTFOUND when neither this machine nor the database has the artifact.
func (db *DB) LocalArtifact(ctx context.Context, v *Version, dataDir string) (string, error) {
	if fileHolds(v.Path, v.Size) {
		return v.Path, nil
	}
	if dataDir == "" {
		return "", Errorf(ENOTFOUND, "the artifact of version %s is not on this machine (%s) and no data dir is set to copy it to", v.Name, v.Path)
	}
	local := ArtifactFile(dataDir, v.Project, v.Name)
	if fileHolds(local, v.Size) {
		return local, nil
	}
	if v.ArtifactID == nil {
		return "", Errorf(ENOTFOUND, "the artifact of version %s is missing from the artifact store (%s)", v.Name, v.Path)
	}
	if err := db.copyArtifact(ctx, v, local); err != nil {
		return "", err
	}
	db.sweepArtifactCopies(ctx, v.ProjectID, filepath.Dir(local))
	return local, nil
}

// fileHolds reports whether path is a regular file of size bytes.
func fileHolds(path string, size int64) bool {
	if path == "" {
		return false
	}
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Size() == size
}

// copyArtifact streams v's artifact from the database to dest, which appears only when the
// whole artifact is there with the right sha256.
func (db *DB) copyArtifact(ctx context.Context, v *Version, dest string) error {
	src, err := db.OpenArtifact(ctx, v)
	if err != nil {
		return err
	}
	defer src.Close()
	if err := os.MkdirAll(filepath.Dir(dest), 0o700); err != nil {
		return fmt.Errorf("create the artifact directory: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(dest), ".reading-*.tar.gz")
	if err != nil {
		return fmt.Errorf("create a copy of the artifact of version %s: %w", v.Name, err)
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	_, err = io.Copy(tmp, src)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("copy the artifact of version %s from the database: %w", v.Name, err)
	}
	if err := os.Rename(tmp.Name(), dest); err != nil {
		return fmt.Errorf("keep the copy of the artifact of version %s: %w", v.Name, err)
	}
	return nil
}

// sweepArtifactCopies removes from dir the artifacts of the project's versions that are no
// longer kept, if they are older than cacheSweepAge. It is best effort: a copy left behind
// wastes disk, nothing else.
func (db *DB) sweepArtifactCopies(ctx context.Context, projectID int64, dir string) {
	var names []string
	if err := db.db.SelectContext(ctx, &names, db.q(`SELECT name FROM versions WHERE project_id = ? AND deleted_at IS NULL`), projectID); err != nil {
		return
	}
	kept := make(map[string]bool, len(names))
	for _, n := range names {
		kept[n+".tar.gz"] = true
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		name := e.Name()
		if kept[name] || strings.HasPrefix(name, ".") || !strings.HasSuffix(name, ".tar.gz") || !e.Type().IsRegular() {
			continue
		}
		if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > cacheSweepAge {
			os.Remove(filepath.Join(dir, name))
		}
	}
}

// sweepOrphanArtifacts deletes the artifacts that no version took within orphanArtifactAge
// (their build died or failed after packing) and returns how many.
func (db *DB) sweepOrphanArtifacts(ctx context.Context) (int64, error) {
	res, err := db.db.ExecContext(ctx, db.q(`DELETE FROM artifacts WHERE created_at < ?
		AND NOT EXISTS (SELECT 1 FROM versions WHERE versions.artifact_id = artifacts.id)`), db.now().Add(-orphanArtifactAge))
	if err != nil {
		return 0, fmt.Errorf("sweep artifacts no version took: %w", err)
	}
	return res.RowsAffected()
}
