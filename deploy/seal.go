package deploy

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"
)

// sealedArtifact is what receiveScript reads after the manifest: the artifact's bytes as they
// are, hashed here as they are read, and then a seal that ferry appends once the last of them
// was read: a tar archive (gzipped when the artifact is, so that gunzip takes it as a second
// member) of one file, named with a token only this upload knows, holding the sha256 of every
// byte of the artifact sent before it. The host puts the release in place only when the seal
// is there and says the version's sha256.
//
// The bytes are hashed where they are read, not again on every host as they arrive: SSH's MAC
// already guarantees that what arrives is what was sent, and a host no longer runs tee, a fifo
// and a hash process beside tar (about a third of the host's CPU for an upload). What is
// checked is the same: a file that differs from the version's (changed on ferry's disk, or
// shorter) never becomes a release. An artifact cannot carry a seal of its own: it cannot know
// the token, and a stream that ends early has none.
type sealedArtifact struct {
	r       io.Reader // the artifact, at most size bytes
	size    int64
	hash    hash.Hash
	read    int64
	gzipped bool
	name    string    // the seal's member name
	tail    io.Reader // the seal, once every byte of the artifact was read
	sum     string    // hex sha256 of the artifact's bytes, once read
	short   bool      // the file ended before size bytes
}

func newSealedArtifact(r io.Reader, size int64, gzipped bool) *sealedArtifact {
	token := make([]byte, 16)
	rand.Read(token)
	return &sealedArtifact{r: r, size: size, hash: sha256.New(), gzipped: gzipped, name: ".ferry-seal-" + hex.EncodeToString(token)}
}

func (s *sealedArtifact) Read(p []byte) (int, error) {
	if s.tail != nil {
		return s.tail.Read(p)
	}
	n, err := s.r.Read(p)
	s.hash.Write(p[:n])
	s.read += int64(n)
	if errors.Is(err, io.EOF) && s.read == s.size {
		s.sum = hex.EncodeToString(s.hash.Sum(nil))
		s.tail = bytes.NewReader(s.seal())
		return n, nil
	}
	s.short = errors.Is(err, io.EOF)
	return n, err
}

// seal is the archive appended to the artifact. A plain tar that does not end on a 512-byte
// block is padded to one first, so tar finds the seal's header.
func (s *sealedArtifact) seal() []byte {
	var b bytes.Buffer
	var w io.Writer = &b
	var gz *gzip.Writer
	if s.gzipped {
		gz = gzip.NewWriter(&b)
		w = gz
	} else if rest := s.size % 512; rest != 0 {
		b.Write(make([]byte, 512-rest))
	}
	content := s.sum + "\n"
	tw := tar.NewWriter(w)
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: s.name, Mode: 0o600, Size: int64(len(content))})
	io.WriteString(tw, content)
	tw.Close()
	if gz != nil {
		gz.Close()
	}
	return b.Bytes()
}

// mismatch says how the artifact read differs from the version's ("" when it does not, or was
// not read to its end for another reason than its own).
func (s *sealedArtifact) mismatch(rel Release) string {
	switch {
	case s.sum != "" && !strings.EqualFold(s.sum, rel.SHA256):
		return fmt.Sprintf("the uploaded file has %s, the artifact %s", s.sum, rel.SHA256)
	case s.short:
		return fmt.Sprintf("the artifact file ends after %s, the artifact has %s", byteCount(s.read), byteCount(s.size))
	}
	return ""
}
