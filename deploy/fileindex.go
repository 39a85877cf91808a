package deploy

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
)

// FileIndex is what a release's artifact holds, file by file: the sha256 and mode of every
// regular file. It is read from the artifact once per rollout (on first use, by whichever host
// needs it first) and shared by every host. It lets a host keep a manifest beside each release
// and receive only the files that none of its kept releases already holds.
type FileIndex struct {
	once sync.Once
	idx  *fileIndex
	err  error

	mu sync.Mutex
	// decisions holds, per set of kept releases (keptKey), whether assembling the release from
	// them pays: the first host holding that set asks, the others holding the same set wait for
	// its answer, and skip the question when it was no.
	decisions map[string]*deltaDecision

	// known, when set, holds the indexes of releases read before (see Manifests): a host that
	// keeps one of them is sent only how the release differs from it.
	known *Manifests
}

// deltaDecision is whether a release assembled from one set of kept releases pays; done is
// closed once it is known (or the host that asked gave up: known stays false).
type deltaDecision struct {
	done  chan struct{}
	once  sync.Once
	worth bool
	known bool
}

func (d *deltaDecision) settle(worth, known bool) {
	d.once.Do(func() {
		d.worth, d.known = worth, known
		close(d.done)
	})
}

// decision returns the decision for the kept releases named by key, and whether this caller
// is the one to make it (and must settle it).
func (f *FileIndex) decision(key string) (d *deltaDecision, asks bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if d, ok := f.decisions[key]; ok {
		return d, false
	}
	if f.decisions == nil {
		f.decisions = map[string]*deltaDecision{}
	}
	d = &deltaDecision{done: make(chan struct{})}
	f.decisions[key] = d
	return d, true
}

// NewFileIndex returns an index to be filled from the release's artifact on first use.
func NewFileIndex() *FileIndex { return &FileIndex{} }

type fileIndex struct {
	files []indexedFile
	// manifest is gzipped (as it goes over the wire; every host has gzip), one line per regular
	// file: "<sha256> <mode, octal> <path>".
	manifest []byte
	// plan is what a host is asked to match against its kept releases, gzipped: the manifest
	// with each sha256 cut to its first planHex digits, a third of the bytes. A cut sha256
	// that matches another file by chance only picks a wrong file to link, which the check of
	// the assembled release (against digest) refuses.
	plan []byte
	// digest is the sha256 of what sha256sum prints for every regular file, in order, with the
	// release's content: the assembled release must give the same.
	digest string
	size   int64 // bytes of the regular files' contents
	// linkFree is false when the artifact holds hard links, which a release assembled from
	// pieces cannot reproduce: such a release is always uploaded whole.
	linkFree bool
	// manifestSHA is the sha256 of the manifest, unzipped: what a host keeps beside the release.
	manifestSHA string
	// known holds the indexes of other releases this process read (nil: none).
	known *Manifests
}

type indexedFile struct {
	path string
	mode int64
	size int64
	sha  string
}

// maxManifest bounds the manifest sent along with a release; beyond it (hundreds of thousands
// of files) the release is uploaded without one, and the next is uploaded whole too.
const maxManifest = 32 << 20

// get returns the index of rel's artifact, reading it on the first call. It fails when the
// artifact cannot be read, or when its sha256 is not the release's: then the artifact is
// sent whole and the host refuses it, as it refuses any changed artifact. A release this
// process read before (Manifests) is not read again: what the host is sent is checked there
// all the same (a whole artifact against its sha256, an assembled release against the
// manifest), so an artifact changed on disk since is still refused.
func (f *FileIndex) get(rel Release) (*fileIndex, error) {
	f.once.Do(func() {
		if f.known != nil { // deployed before by this process: not read again
			if idx := f.known.lookup(rel.SHA256); idx != nil {
				f.idx = idx
				return
			}
		}
		f.idx, f.err = indexArtifact(rel)
		if f.err == nil && f.known != nil {
			f.idx.known = f.known
			f.known.keep(rel.SHA256, f.idx)
		}
	})
	return f.idx, f.err
}

// Manifests keeps the file indexes of the releases this process read last, by the sha256 of
// their artifact, so that a release can be sent to a host as its difference from a release the
// host keeps (and ferry read before): the changed paths with their modes, instead of a hash of
// every file. It holds at most maxKnownFiles files' entries (and always the newest release).
// It is safe for concurrent use.
type Manifests struct {
	mu    sync.Mutex
	bySHA map[string]*fileIndex
	order []string // sha256s, oldest first
	files int
}

// maxKnownFiles bounds the memory of Manifests: about 150 bytes a file.
const maxKnownFiles = 200_000

// NewManifests returns an empty set of known releases.
func NewManifests() *Manifests { return &Manifests{bySHA: map[string]*fileIndex{}} }

// Index returns a new index, to be filled from a release's artifact on first use like
// NewFileIndex's, that is kept in m once read and looks in m for the releases a host keeps.
func (m *Manifests) Index() *FileIndex { return &FileIndex{known: m} }

func (m *Manifests) keep(sha string, idx *fileIndex) {
	sha = strings.ToLower(sha)
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.bySHA[sha]; ok || idx.manifest == nil {
		return
	}
	m.bySHA[sha] = idx
	m.order = append(m.order, sha)
	m.files += len(idx.files)
	for len(m.order) > 1 && m.files > maxKnownFiles {
		m.files -= len(m.bySHA[m.order[0]].files)
		delete(m.bySHA, m.order[0])
		m.order = m.order[1:]
	}
}

// lookup returns the index of the release whose artifact has sha256 sha, or nil.
func (m *Manifests) lookup(sha string) *fileIndex {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.bySHA[strings.ToLower(sha)]
}

func indexArtifact(rel Release) (*fileIndex, error) {
	file, err := os.Open(rel.Artifact)
	if err != nil {
		return nil, fmt.Errorf("open the artifact of %s: %w", rel.Version, err)
	}
	defer file.Close()
	// The sha256 of the whole artifact is computed beside the index, on another core, from
	// a reader of its own: the index is on the path of every upload of a new release.
	whole := make(chan string, 1)
	go func() { whole <- fileSHA256(rel.Artifact) }()
	buffered := bufio.NewReaderSize(file, 1<<20)
	r, err := archiveReader(buffered)
	if err != nil {
		return nil, fmt.Errorf("read the artifact of %s: %w", rel.Version, err)
	}
	idx := &fileIndex{linkFree: true}
	var manifest, plan strings.Builder
	sums := sha256.New()
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read the artifact of %s: %w", rel.Version, err)
		}
		switch hdr.Typeflag {
		case tar.TypeLink:
			idx.linkFree = false
		case tar.TypeReg:
			sum := sha256.New()
			if _, err := io.Copy(sum, tr); err != nil {
				return nil, fmt.Errorf("read %s in the artifact of %s: %w", hdr.Name, rel.Version, err)
			}
			f := indexedFile{path: hdr.Name, mode: hdr.Mode & 0o7777, size: hdr.Size, sha: hex.EncodeToString(sum.Sum(nil))}
			if !manifestSafe(f.path) {
				idx.linkFree = false
			}
			idx.files = append(idx.files, f)
			idx.size += f.size
			if manifest.Len() < maxManifest {
				fmt.Fprintf(&manifest, "%s %o %s\n", f.sha, f.mode, f.path)
				fmt.Fprintf(&plan, "%s %o %s\n", f.sha[:planHex], f.mode, f.path)
			}
			fmt.Fprintf(sums, "%s  %s\n", f.sha, f.path)
		}
	}
	if _, err := io.Copy(io.Discard, r); err != nil { // gzip's trailer, tar's padding
		return nil, fmt.Errorf("read the artifact of %s: %w", rel.Version, err)
	}
	if got := <-whole; !strings.EqualFold(got, rel.SHA256) {
		return nil, fmt.Errorf("the artifact of %s has sha256 %s, not %s", rel.Version, got, rel.SHA256)
	}
	if manifest.Len() < maxManifest {
		idx.manifest, idx.plan = gzipped(manifest.String()), gzipped(plan.String())
		sum := sha256.Sum256([]byte(manifest.String()))
		idx.manifestSHA = hex.EncodeToString(sum[:])
	}
	idx.digest = hex.EncodeToString(sums.Sum(nil))
	return idx, nil
}

// fileSHA256 returns the hex sha256 of the file at name, or why it could not be read.
func fileSHA256(name string) string {
	f, err := os.Open(name)
	if err != nil {
		return "unreadable (" + err.Error() + ")"
	}
	defer f.Close()
	sum := sha256.New()
	if _, err := io.CopyBuffer(sum, f, make([]byte, 1<<20)); err != nil {
		return "unreadable (" + err.Error() + ")"
	}
	return hex.EncodeToString(sum.Sum(nil))
}

// planHex is how many hex digits of each sha256 the plan holds: 64 bits.
const planHex = 16

func gzipped(text string) []byte {
	var packed bytes.Buffer
	gz, _ := gzip.NewWriterLevel(&packed, gzip.BestCompression)
	io.WriteString(gz, text)
	gz.Close()
	return packed.Bytes()
}

// archiveReader returns the tar stream of an artifact: gunzipped when it starts with gzip's
// magic number, as it is otherwise.
func archiveReader(r io.Reader) (io.Reader, error) {
	br := bufio.NewReader(r)
	magic, err := br.Peek(2)
	if err == nil && magic[0] == 0x1f && magic[1] == 0x8b {
		return gzip.NewReader(br)
	}
	return br, nil
}

// manifestSafe reports whether a member name can be a manifest line and a sha256sum check
// line as it is, and names a place inside the release.
func manifestSafe(name string) bool {
	if name == "" || strings.ContainsAny(name, "\n\r\t\\") || strings.HasPrefix(name, "/") {
		return false
	}
	for _, part := range strings.Split(name, "/") {
		if part == ".." {
			return false
		}
	}
	return true
}
