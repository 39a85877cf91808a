package main

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"ferry/build"
	"ferry/store"
)

// A backup is a tar.gz of: backupManifest, the SQLite database (ferry.db, absent with
// PostgreSQL), the generated secret key (secret.key, absent when FERRY_SECRET_KEY is set) and
// the artifact store (artifacts/…; with PostgreSQL only the artifacts the database does not
// keep, which pg_dump backs up). Workspaces and git mirrors are caches and are left out.
const (
	backupManifest = "ferry-backup.json"
	backupDatabase = "ferry.db"
	artifactsDir   = "artifacts"
)

// manifest describes a backup.
type manifest struct {
	Format    int       `json:"format"`
	CreatedAt time.Time `json:"created_at"`
	Ferry     string    `json:"ferry"`
	Database  string    `json:"database"` // sqlite or postgres
	// SecretKey is "file" when secret.key is in the backup, "FERRY_SECRET_KEY" when the key
	// came from the environment and must be kept apart.
	SecretKey string `json:"secret_key"`
	Artifacts int    `json:"artifacts"`
}

// backupCommand writes FILE: see docs/operations.md.
func backupCommand(ctx context.Context, cfg Config, args []string, stdout, stderr io.Writer) error {
	rest, err := parseFlags("backup", &cfg, args, stderr, nil)
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return usagef("usage: ferry backup FILE")
	}
	file := rest[0]
	if _, err := os.Stat(file); err == nil {
		return fmt.Errorf("%s exists: back up into a new file", file)
	}
	keyFile := filepath.Join(cfg.DataDir, secretKeyFile)
	if cfg.SecretKey == "" {
		if _, err := os.Stat(keyFile); err != nil {
			return fmt.Errorf("no secret key at %s and FERRY_SECRET_KEY is not set: is %s ferry's data dir?", keyFile, cfg.DataDir)
		}
	}
	db, err := openStore(ctx, cfg, cfg.Logger())
	if err != nil {
		return err
	}
	defer db.Close()
	tmp, err := os.MkdirTemp(filepath.Dir(file), ".ferry-backup-")
	if err != nil {
		return fmt.Errorf("back up into %s: %w", file, err)
	}
	defer os.RemoveAll(tmp)
	m := manifest{Format: 1, CreatedAt: time.Now().UTC(), Ferry: versionLine(), Database: string(db.Dialect()), SecretKey: "file"}
	var files []backupFile
	if db.Dialect() == store.SQLite {
		// The database first: every version it names has its artifact on disk already (a
		// build packs the artifact before it records the version).
		copyPath := filepath.Join(tmp, backupDatabase)
		if err := db.CopyTo(ctx, copyPath); err != nil {
			return err
		}
		files = append(files, backupFile{name: backupDatabase, path: copyPath})
	} else {
		fmt.Fprintln(stderr, "ferry: the database is PostgreSQL: back it up with pg_dump (pg_dump -Fc \"$FERRY_DATABASE_URL\" > ferry.dump); the dump holds the artifacts too, this file holds what is not in the database")
	}
	if cfg.SecretKey == "" {
		files = append(files, backupFile{name: secretKeyFile, path: keyFile})
	} else {
		m.SecretKey = "FERRY_SECRET_KEY"
		fmt.Fprintln(stderr, "ferry: the secret key comes from FERRY_SECRET_KEY and is not in the backup: keep it with the backup, secrets cannot be read without it")
	}
	inDatabase := map[string]bool{}
	if db.KeepsArtifacts() {
		if inDatabase, err = db.ArtifactsInDatabase(ctx); err != nil {
			return err
		}
	}
	artifacts, size, err := listArtifacts(filepath.Join(cfg.DataDir, artifactsDir), inDatabase)
	if err != nil {
		return err
	}
	m.Artifacts = len(artifacts)
	files = append(files, artifacts...)
	if err := writeBackup(filepath.Join(tmp, "backup.tar.gz"), m, files); err != nil {
		return fmt.Errorf("back up into %s: %w", file, err)
	}
	if err := os.Rename(filepath.Join(tmp, "backup.tar.gz"), file); err != nil {
		return fmt.Errorf("back up into %s: %w", file, err)
	}
	fmt.Fprintf(stdout, "backed up %s to %s: database %s, secret key %s, %d artifacts (%s)\n",
		cfg.DataDir, file, dbNote(m.Database), keyNote(m.SecretKey), m.Artifacts, byteCount(size))
	return nil
}

func dbNote(d string) string {
	if d == string(store.SQLite) {
		return "(SQLite) included"
	}
	return "(PostgreSQL) not included: use pg_dump, which copies the artifacts kept there too"
}

func keyNote(k string) string {
	if k == "file" {
		return "included"
	}
	return "not included (FERRY_SECRET_KEY)"
}

// backupFile is a file to put in the backup under name (slash-separated).
type backupFile struct {
	name, path string
}

// listArtifacts lists the artifact files under root, leaving out those named in skip (by
// path under root, slash-separated) and the temp files of a pack or copy under way.
func listArtifacts(root string, skip map[string]bool) ([]backupFile, int64, error) {
	var files []backupFile
	var size int64
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) && p == root {
			return filepath.SkipDir
		}
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil || skip[filepath.ToSlash(rel)] || strings.HasPrefix(d.Name(), ".") {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		size += info.Size()
		files = append(files, backupFile{name: artifactsDir + "/" + filepath.ToSlash(rel), path: p})
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("list the artifacts in %s: %w", root, err)
	}
	return files, size, nil
}

func writeBackup(file string, m manifest, files []backupFile) error {
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	gz := gzip.NewWriter(f)
	tw := tar.NewWriter(gz)
	raw, _ := json.MarshalIndent(m, "", "  ")
	if err := tw.WriteHeader(&tar.Header{Name: backupManifest, Mode: 0o600, Size: int64(len(raw)), ModTime: m.CreatedAt}); err != nil {
		return err
	}
	if _, err := tw.Write(raw); err != nil {
		return err
	}
	for _, bf := range files {
		if err := addFile(tw, bf); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := gz.Close(); err != nil {
		return err
	}
	return f.Sync()
}

func addFile(tw *tar.Writer, bf backupFile) error {
	src, err := os.Open(bf.path)
	if err != nil {
		return err
	}
	defer src.Close()
	info, err := src.Stat()
	if err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Name: bf.name, Mode: 0o600, Size: info.Size(), ModTime: info.ModTime()}); err != nil {
		return err
	}
	if _, err := io.Copy(tw, src); err != nil {
		return fmt.Errorf("add %s: %w", bf.path, err)
	}
	return nil
}

// restoreCommand unpacks FILE into an empty data dir and points the versions at the restored
// artifacts.
func restoreCommand(ctx context.Context, cfg Config, args []string, stdout, stderr io.Writer) (err error) {
	rest, err := parseFlags("restore", &cfg, args, stderr, nil)
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return usagef("usage: ferry restore FILE")
	}
	entries, err := os.ReadDir(cfg.DataDir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("read data dir %s: %w", cfg.DataDir, err)
	}
	if len(entries) > 0 {
		return fmt.Errorf("data dir %s is not empty: restore only into an empty data dir (FERRY_DATA_DIR)", cfg.DataDir)
	}
	dbPath := ""
	if cfg.DatabaseURL == "" || strings.HasPrefix(cfg.DatabaseURL, "sqlite:") {
		dbPath = strings.TrimPrefix(cfg.DatabaseURL, "sqlite:")
		if dbPath == "" {
			dbPath = filepath.Join(cfg.DataDir, "ferry.db")
		}
		if _, err := os.Stat(dbPath); err == nil {
			return fmt.Errorf("the database %s exists: restore only into a new one", dbPath)
		}
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	defer func() {
		if err != nil { // leave the data dir as empty as it was
			entries, _ := os.ReadDir(cfg.DataDir)
			for _, e := range entries {
				os.RemoveAll(filepath.Join(cfg.DataDir, e.Name()))
			}
			if dbPath != "" {
				os.Remove(dbPath)
			}
		}
	}()
	m, err := unpackBackup(rest[0], cfg, dbPath)
	if err != nil {
		return fmt.Errorf("restore %s: %w", rest[0], err)
	}
	return relinkArtifacts(ctx, cfg, m, stdout, stderr)
}

// relinkArtifacts points every version at its artifact in this data dir and reports.
func relinkArtifacts(ctx context.Context, cfg Config, m *manifest, stdout, stderr io.Writer) error {
	if m.SecretKey != "file" && cfg.SecretKey == "" {
		return errors.New("the backup holds no secret key (it came from FERRY_SECRET_KEY): set FERRY_SECRET_KEY to the same key")
	}
	db, err := openStore(ctx, cfg, cfg.Logger())
	if err != nil {
		return err
	}
	defer db.Close()
	moved, err := db.MoveArtifacts(ctx, func(project, version string) string {
		return build.ArtifactPath(cfg.DataDir, project, version)
	})
	if err != nil {
		if m.Database == string(store.Postgres) {
			return fmt.Errorf("%w (restore the database with pg_restore before ferry restore)", err)
		}
		return err
	}
	fmt.Fprintf(stdout, "restored the backup of %s into %s: database %s, %d artifacts, %d versions pointed at them\n",
		m.CreatedAt.Local().Format(time.DateTime), cfg.DataDir, dbNote(m.Database), m.Artifacts, moved)
	return nil
}

// unpackBackup writes the backup's files into the data dir (the database to dbPath). Names
// that would leave the data dir, links and devices are refused.
func unpackBackup(file string, cfg Config, dbPath string) (*manifest, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		return nil, fmt.Errorf("not a ferry backup (%v)", err)
	}
	tr := tar.NewReader(gz)
	var m *manifest
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("not a ferry backup (%v)", err)
		}
		if m == nil {
			if m, err = readManifest(h, tr, dbPath); err != nil {
				return nil, err
			}
			continue
		}
		dest, err := restorePath(h, cfg.DataDir, dbPath)
		if err != nil {
			return nil, err
		}
		if err := writeRestored(dest, tr); err != nil {
			return nil, err
		}
	}
	if m == nil {
		return nil, errors.New("not a ferry backup: it is empty")
	}
	return m, nil
}

func readManifest(h *tar.Header, r io.Reader, dbPath string) (*manifest, error) {
	if h.Name != backupManifest {
		return nil, fmt.Errorf("not a ferry backup: it starts with %q, not %s", h.Name, backupManifest)
	}
	var m manifest
	if err := json.NewDecoder(io.LimitReader(r, 1<<20)).Decode(&m); err != nil || m.Format != 1 {
		return nil, fmt.Errorf("not a ferry backup this version reads: %s is not format 1 (%v)", backupManifest, err)
	}
	if (m.Database == string(store.SQLite)) != (dbPath != "") {
		return nil, fmt.Errorf("the backup is of a %s installation and this one is configured for another database (FERRY_DATABASE_URL)", m.Database)
	}
	return &m, nil
}

// restorePath returns where an entry of the backup goes.
func restorePath(h *tar.Header, dataDir, dbPath string) (string, error) {
	name := path.Clean(h.Name)
	if h.Typeflag != tar.TypeReg || path.IsAbs(name) || name == ".." || strings.HasPrefix(name, "../") {
		return "", fmt.Errorf("the backup holds %q, which is not a file ferry backs up", h.Name)
	}
	switch {
	case name == backupDatabase && dbPath != "":
		return dbPath, nil
	case name == secretKeyFile, strings.HasPrefix(name, artifactsDir+"/"):
		return filepath.Join(dataDir, filepath.FromSlash(name)), nil
	}
	return "", fmt.Errorf("the backup holds %q, which is not a file ferry backs up", h.Name)
}

func writeRestored(dest string, r io.Reader) error {
	if err := os.MkdirAll(filepath.Dir(dest), 0o700); err != nil {
		return err
	}
	out, err := os.OpenFile(dest, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, r); err != nil {
		out.Close()
		return fmt.Errorf("write %s: %w", dest, err)
	}
	return out.Close()
}
