package build

import (
	"archive/tar"
	"compress/gzip"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"ferry/store"
)

// entry is one file read back from an archive.
type entry struct {
	mode    os.FileMode
	link    string
	content string
}

func readArchive(t *testing.T, path string) map[string]entry {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// A plain tar when gzip does not pay (tiny or incompressible data), else a tar.gz.
	var r io.Reader = f
	if head := make([]byte, 2); func() bool { n, _ := f.ReadAt(head, 0); return n == 2 }() && head[0] == 0x1f && head[1] == 0x8b {
		gz, err := gzip.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		r = gz
	}
	tr := tar.NewReader(r)
	got := map[string]entry{}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return got
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		got[hdr.Name] = entry{mode: hdr.FileInfo().Mode(), link: hdr.Linkname, content: string(data)}
	}
}

func writeFiles(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		mode := os.FileMode(0o644)
		if n, ok := strings.CutSuffix(name, "*"); ok {
			name, mode = n, 0o755
		}
		p := filepath.Join(root, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
}

func TestPackDirectory(t *testing.T) {
	ws := t.TempDir()
	writeFiles(t, ws, map[string]string{"dist/bin/start.sh*": "#!/bin/sh\n", "dist/app.jar": "jar", "src/Main.java": "class"})
	if err := os.Symlink("../shared/log", filepath.Join(ws, "dist", "log")); err != nil {
		t.Fatal(err)
	}
	dest := ArtifactPath(t.TempDir(), "demo", "20240101000000-main-abcdef12")
	a, err := Pack(ws, "dist", dest)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(dest)
	sum := sha256.Sum256(data)
	if a.Path != dest || a.Size != int64(len(data)) || a.SHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("Pack = %+v; file has %d bytes, sha256 %x", a, len(data), sum)
	}
	got := readArchive(t, dest)
	if e := got["bin/start.sh"]; e.content != "#!/bin/sh\n" || e.mode.Perm() != 0o755 {
		t.Errorf("bin/start.sh = %+v; want at the root, executable", e)
	}
	if e := got["app.jar"]; e.content != "jar" || e.mode.Perm() != 0o644 {
		t.Errorf("app.jar = %+v", e)
	}
	if e, ok := got["log"]; !ok || e.mode&os.ModeSymlink == 0 || e.link != "../shared/log" {
		t.Errorf("log = %+v; want a symlink to ../shared/log", e)
	}
	if _, ok := got["bin/"]; !ok {
		t.Errorf("directory bin/ missing from %v", got)
	}
	if _, ok := got["src/Main.java"]; ok {
		t.Errorf("files outside the artifact were packed")
	}
	leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(dest), ".packing-*"))
	if len(leftovers) != 0 {
		t.Errorf("temporary files left: %v", leftovers)
	}
}

func TestPackSingleFile(t *testing.T) {
	ws := t.TempDir()
	writeFiles(t, ws, map[string]string{"target/app.jar": "jar bytes"})
	dest := filepath.Join(t.TempDir(), "v1.tar.gz")
	if _, err := Pack(ws, "target/app.jar", dest); err != nil {
		t.Fatal(err)
	}
	got := readArchive(t, dest)
	if len(got) != 1 || got["app.jar"].content != "jar bytes" {
		t.Errorf("archive = %v; want only app.jar", got)
	}
}

func TestPackRejects(t *testing.T) {
	outside := t.TempDir()
	writeFiles(t, outside, map[string]string{"secret.txt": "secret"})
	ws := t.TempDir()
	writeFiles(t, ws, map[string]string{"dist/a.txt": "a"})
	os.Symlink(filepath.Join(outside, "secret.txt"), filepath.Join(ws, "leak.txt"))
	os.Symlink(outside, filepath.Join(ws, "leakdir"))
	os.Symlink("../..", filepath.Join(ws, "dist", "up"))
	tests := []struct {
		name, artifact, want string
		code                 string
	}{
		{"climbs out", "../../etc/passwd", `"../../etc/passwd" leaves the checkout`, store.EINVALID},
		{"absolute", "/etc/passwd", `"/etc/passwd" must be relative to the checkout`, store.EINVALID},
		{"symlink to a file outside", "leak.txt", "artifact leak.txt points outside the workspace", store.EINVALID},
		{"symlink to a directory outside", "leakdir", "artifact leakdir points outside the workspace", store.EINVALID},
		{"symlink inside climbing out", "dist/up", "artifact dist/up points outside the workspace", store.EINVALID},
		{"missing", "target/app.jar", "artifact target/app.jar was not produced by the build", store.ENOTFOUND},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dest := filepath.Join(t.TempDir(), "v.tar.gz")
			_, err := Pack(ws, tt.artifact, dest)
			if err == nil || !strings.Contains(err.Error(), tt.want) || store.ErrorCode(err) != tt.code {
				t.Fatalf("Pack(%q) = %v; want %s %q", tt.artifact, err, tt.code, tt.want)
			}
			if _, err := os.Stat(dest); !os.IsNotExist(err) {
				t.Errorf("a rejected artifact left %s", dest)
			}
		})
	}
}

// Data that gzip cannot shrink is packed as a plain tar; text is gzip-compressed.
func TestPackCompressesOnlyWhatShrinks(t *testing.T) {
	for _, tc := range []struct {
		name string
		data []byte
		gzip bool
	}{
		{"text", []byte(strings.Repeat("a line of a log that repeats\n", 20000)), true},
		{"random", randomBytes(t, 600<<10), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ws := t.TempDir()
			if err := os.MkdirAll(filepath.Join(ws, "out"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(ws, "out", "data"), tc.data, 0o644); err != nil {
				t.Fatal(err)
			}
			a, err := Pack(ws, "out", filepath.Join(t.TempDir(), "a.tar.gz"))
			if err != nil {
				t.Fatal(err)
			}
			head := make([]byte, 2)
			f, err := os.Open(a.Path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := io.ReadFull(f, head); err != nil {
				t.Fatal(err)
			}
			if isGzip := head[0] == 0x1f && head[1] == 0x8b; isGzip != tc.gzip {
				t.Errorf("packed with gzip: %v, want %v (size %d of %d bytes of data)", isGzip, tc.gzip, a.Size, len(tc.data))
			}
		})
	}
}

func randomBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}
