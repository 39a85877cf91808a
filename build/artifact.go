package build

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"ferry/store"
)

// Artifact is a packed build result: a tar file, gzip-compressed when that pays (see
// worthCompressing), with its size and sha256.
type Artifact struct {
	Path   string
	Size   int64
	SHA256 string
	// KeptID is the copy in the database (PostgreSQL), which every ferry process can read;
	// nil when the artifact is a file only.
	KeptID *int64
}

// ArtifactPath returns where a version's artifact is kept: <dataDir>/artifacts/<project>/<version>.tar.gz.
func ArtifactPath(dataDir, project, version string) string {
	return store.ArtifactFile(dataDir, project, version)
}

// Pack packs the artifact named in the pipeline (a file or directory relative to workspace)
// into a tar.gz at dest, computing size and sha256 while it writes. A directory's contents
// land at the archive root; a single file keeps its base name. Symlinks are stored as
// symlinks, never followed; modes are kept. The file appears at dest only when complete.
// An artifact the build did not make fails with "artifact <name> was not produced by the
// build"; one outside the workspace (by "..", an absolute path or a symlink) with EINVALID.
func Pack(workspace, artifact, dest string) (*Artifact, error) {
	return PackTo(workspace, artifact, dest, nil)
}

// PackTo is Pack that also streams the archive, as it is written, to also (when not nil): the
// database's copy of the artifact, on PostgreSQL. The archive is never held whole in memory.
func PackTo(workspace, artifact, dest string, also io.Writer) (*Artifact, error) {
	src, err := resolveArtifact(workspace, artifact)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(dest), 0o700); err != nil {
		return nil, fmt.Errorf("create artifact directory: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(dest), ".packing-*.tar.gz")
	if err != nil {
		return nil, fmt.Errorf("create artifact file: %w", err)
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	var out io.Writer = tmp
	if also != nil {
		out = io.MultiWriter(tmp, also)
	}
	a, err := writeArchive(tmp, out, src, filepath.Base(filepath.Clean(artifact)))
	if cerr := tmp.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("pack artifact %s: %w", artifact, err)
	}
	if err := os.Rename(tmp.Name(), dest); err != nil {
		return nil, fmt.Errorf("keep artifact %s: %w", artifact, err)
	}
	a.Path = dest
	return a, nil
}

// packKept packs the artifact to dest and, when the database keeps artifacts (PostgreSQL),
// into the database at the same time, so that a ferry process on another machine can deploy
// it. A failed pack leaves nothing in the database.
func (r *run) packKept(workspace, artifact, dest string) (*Artifact, error) {
	if !r.w.db.KeepsArtifacts() {
		return Pack(workspace, artifact, dest)
	}
	kept, err := r.w.db.CreateArtifact(r.ctx, r.project.ID)
	if err != nil {
		return nil, err
	}
	a, err := PackTo(workspace, artifact, dest, kept)
	if err == nil {
		err = kept.Close()
	}
	if err != nil {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.ctx), 30*time.Second)
		defer cancel()
		if derr := r.w.db.DeleteArtifact(ctx, kept.ID()); derr != nil {
			r.w.log.Warn("remove an artifact that was not completely stored (it is swept later)", "err", derr)
		}
		if a != nil {
			os.Remove(a.Path)
		}
		return nil, err
	}
	id := kept.ID()
	a.KeptID = &id
	return a, nil
}

// dropKept removes the database copy of an artifact no version took.
func (r *run) dropKept(a *Artifact) {
	if a.KeptID == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.ctx), 30*time.Second)
	defer cancel()
	if err := r.w.db.DeleteArtifact(ctx, *a.KeptID); err != nil {
		r.w.log.Warn("remove an artifact no version took (it is swept later)", "err", err)
	}
}

// resolveArtifact returns the real path of the artifact, checked to lie inside workspace.
func resolveArtifact(workspace, artifact string) (string, error) {
	if err := store.CheckRelativePath(artifact); err != nil {
		return "", store.Errorf(store.EINVALID, "artifact: %v", err)
	}
	root, err := filepath.EvalSymlinks(workspace)
	if err != nil {
		return "", fmt.Errorf("find workspace %s: %w", workspace, err)
	}
	real, err := filepath.EvalSymlinks(filepath.Join(root, filepath.FromSlash(artifact)))
	if errors.Is(err, fs.ErrNotExist) {
		return "", store.Errorf(store.ENOTFOUND, "artifact %s was not produced by the build", artifact)
	}
	if err != nil {
		return "", fmt.Errorf("find artifact %s: %w", artifact, err)
	}
	rel, err := filepath.Rel(root, real)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return "", store.Errorf(store.EINVALID, "artifact %s points outside the workspace (to %s)", artifact, real)
	}
	return real, nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func writeArchive(f *os.File, out io.Writer, src, name string) (*Artifact, error) {
	sum := sha256.New()
	counter := &countingWriter{w: io.MultiWriter(out, sum)}
	// gzip only where it pays (see worthCompressing); deploy tells the two apart by gzip's
	// magic number.
	var gz *gzip.Writer
	var archive io.Writer = counter
	if worthCompressing(src) {
		gz, _ = gzip.NewWriterLevel(counter, gzip.BestSpeed)
		archive = gz
	}
	tw := tar.NewWriter(archive)
	if err := addArtifact(tw, src, name); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if gz != nil {
		if err := gz.Close(); err != nil {
			return nil, err
		}
	}
	if err := f.Sync(); err != nil {
		return nil, err
	}
	return &Artifact{Size: counter.n, SHA256: hexSum(sum)}, nil
}

func hexSum(h hash.Hash) string { return hex.EncodeToString(h.Sum(nil)) }

func addArtifact(tw *tar.Writer, src, name string) error {
	fi, err := os.Stat(src)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return addFile(tw, src, name, fi)
	}
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil || rel == "." {
			return err
		}
		if rel == ".git" && d.IsDir() {
			return filepath.SkipDir // the checkout's own git data, when the artifact is "."
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		return addFile(tw, p, filepath.ToSlash(rel), info)
	})
}

// addFile writes one entry. Sockets, pipes and devices are left out: they cannot be shipped.
func addFile(tw *tar.Writer, p, name string, fi fs.FileInfo) error {
	link := ""
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		var err error
		if link, err = os.Readlink(p); err != nil {
			return err
		}
	case !fi.Mode().IsRegular() && !fi.IsDir():
		return nil
	}
	hdr, err := tar.FileInfoHeader(fi, link)
	if err != nil {
		return err
	}
	hdr.Name = name
	if fi.IsDir() {
		hdr.Name += "/"
	}
	hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return nil
	}
	return copyFile(tw, p, hdr.Size)
}

func copyFile(w io.Writer, p string, size int64) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := io.CopyN(w, f, size); err != nil {
		return fmt.Errorf("read %s (did it change while being packed?): %w", p, err)
	}
	return nil
}
