package handlers_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"ferry/handlers"
	"ferry/store"
	"ferry/store/storetest"
)

// A downloaded artifact is named and typed as what it is: builds gzip only what shrinks, so a
// plain tar comes as app-<version>.tar (application/x-tar) and a gzipped one as .tar.gz.
func TestArtifactDownloadSaysWhetherItIsGzipped(t *testing.T) {
	db := storetest.Open(t, store.SQLite)
	ctx := context.Background()
	p := &store.Project{Name: "app", GitLabPath: "group/app", CloneURL: "https://gitlab.example.com/group/app.git", Trigger: store.DefaultTrigger()}
	must(t, db.CreateProject(ctx, p))
	h := handlers.New(handlers.Config{DB: db, BaseURL: testBaseURL}).Handler()
	admin := tokenClient(t, h, db, mustUser(t, db, "boss", true))

	var plain bytes.Buffer
	tw := tar.NewWriter(&plain)
	must(t, tw.WriteHeader(&tar.Header{Name: "app", Mode: 0o755, Size: 4}))
	_, err := tw.Write([]byte("bin\n"))
	must(t, err)
	must(t, tw.Close())
	var zipped bytes.Buffer
	gz := gzip.NewWriter(&zipped)
	_, err = gz.Write(plain.Bytes())
	must(t, err)
	must(t, gz.Close())

	for i, c := range []struct {
		data             []byte
		contentType, ext string
	}{
		{plain.Bytes(), "application/x-tar", ".tar"},
		{zipped.Bytes(), "application/gzip", ".tar.gz"},
	} {
		owner := storetest.Name("w")
		b := claimNew(t, db, p.ID, owner, strings.Repeat(fmt.Sprintf("%02x", i+1), 20))
		path := filepath.Join(t.TempDir(), "artifact")
		must(t, os.WriteFile(path, c.data, 0o644))
		sum := sha256.Sum256(c.data)
		name := fmt.Sprintf("v%d", i+1)
		done, err := db.FinishBuild(ctx, b.ID, owner, store.BuildResult{Status: store.BuildSuccess, Version: &store.NewVersion{
			Name: name, SHA: b.SHA, Ref: "main", SHA256: hex.EncodeToString(sum[:]), Size: int64(len(c.data)), Path: path,
		}})
		must(t, err)
		r := admin.must(http.StatusOK, "GET", fmt.Sprintf("/api/v1/versions/%d/artifact", *done.VersionID), "")
		if got := r.header.Get("Content-Type"); got != c.contentType {
			t.Errorf("%s: Content-Type %q, want %q", name, got, c.contentType)
		}
		if got, want := r.header.Get("Content-Disposition"), `attachment; filename="app-`+name+c.ext+`"`; got != want {
			t.Errorf("%s: Content-Disposition %q, want %q", name, got, want)
		}
		if r.body != string(c.data) {
			t.Errorf("%s: downloaded %d bytes that differ from the artifact's %d", name, len(r.body), len(c.data))
		}
	}
}
