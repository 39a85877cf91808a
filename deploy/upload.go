package deploy

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"ferry/store"
)

// Upload puts rel under root/releases/<version>/ on the host and returns the bytes sent. A
// release already there with the same recorded sha256 is kept and nothing is sent. See
// Conn.upload, which also takes what the host holds, read once.
func (c *Conn) Upload(ctx context.Context, root string, rel Release, progress func(sent, total int64)) (int64, error) {
	if err := rel.Validate(); err != nil {
		return 0, err
	}
	l := layout{root: root}
	st, err := c.probe(ctx, l, true, rel.Version)
	if err != nil {
		return 0, err
	}
	return c.upload(ctx, l, st, rel, progress, nil)
}

// upload is Upload once the host's state st was read (with the temp files of earlier uploads
// removed). When the host keeps releases with a manifest of their files, only the files none
// of them holds are sent and the release is assembled there (sendDelta); otherwise, or when
// that fails, the artifact is streamed into one command on the host that hashes it and unpacks
// it in the same pass, as it arrives, into a temp directory: nothing is written on the host but
// the unpacked files (and the manifest sent along), and nothing is read again. Only when the
// sha256 of what arrived is the release's is it recorded (beside the release, where no member
// of the artifact can write) and the directory renamed to the release's final name; otherwise
// the host removes what it unpacked before the command ends. say (may be nil) logs why a
// release is sent whole after all.
func (c *Conn) upload(ctx context.Context, l layout, st HostState, rel Release, progress func(sent, total int64), say func(string)) (sent int64, err error) {
	present, err := c.releasePresent(ctx, l, st, rel)
	if err != nil || present {
		return 0, err
	}
	files := rel.Files
	if files == nil {
		files = NewFileIndex()
	}
	idx, idxErr := files.get(rel)
	var manifest []byte
	if idxErr == nil {
		manifest = idx.manifest
	}
	var tried int64
	if key := keptKey(st, rel.Version); idxErr == nil && idx.linkFree && manifest != nil && key != "" {
		decision, asks := files.decision(key)
		if !asks {
			select {
			case <-decision.done:
			case <-ctx.Done():
				return 0, fmt.Errorf("canceled before uploading %s to %s: %w", rel.Version, c.target.label(), ctx.Err())
			}
		}
		if asks || !decision.known || decision.worth {
			decided := func(worth bool) {
				if asks {
					decision.settle(worth, true)
				}
			}
			delta, err := c.sendDelta(ctx, l, st, rel, idx, progress, say, decided)
			if asks {
				decision.settle(false, false) // no answer: the others ask for themselves
			}
			var whole *errNoDelta
			if !errors.As(err, &whole) {
				return delta, err
			}
			if say != nil {
				say(fmt.Sprintf("%v: sending the whole artifact", err))
			}
			tried = delta
		} else if say != nil {
			say(fmt.Sprintf("another host holding the same releases found too few of the files of %s among them: sending the whole artifact", rel.Version))
		}
	}
	sent, err = c.receive(ctx, l, rel, manifest, progress)
	return tried + sent, err
}

// releasePresent reports whether the release is on the host with the same sha256. A release
// directory with another or no recorded sha256 is removed, unless current points at it.
func (c *Conn) releasePresent(ctx context.Context, l layout, st HostState, rel Release) (bool, error) {
	kept, found := st.release(rel.Version)
	if !found {
		return false, nil
	}
	if strings.EqualFold(kept.SHA256, rel.SHA256) {
		return true, nil
	}
	if st.Current == rel.Version {
		return false, fmt.Errorf("release %s on %s holds another artifact (sha256 %q, want %s) and is the current release: refusing to replace it",
			rel.Version, c.target.label(), kept.SHA256, rel.SHA256)
	}
	if _, err := c.Output(ctx, "rm -rf -- "+l.removeRelease(rel.Version), nil); err != nil {
		return false, fmt.Errorf("remove the stale release %s on %s: %w", rel.Version, c.target.label(), err)
	}
	return false, nil
}

// keptKey names the kept releases (but version) with a manifest, with their recorded sha256:
// hosts with the same key hold the same files. "" when there is none.
func keptKey(st HostState, version string) string {
	var names []string
	for _, r := range st.Releases {
		if st.manifests[r.Version] && r.Version != version {
			names = append(names, r.Version+"="+r.SHA256)
		}
	}
	sort.Strings(names)
	return strings.Join(names, " ")
}

// receive streams the artifact into receiveScript on the host, sealed (see sealedArtifact).
// A changed artifact, one whose bytes do not hash to the version's sha256, is refused by the
// host: nothing of it is left there.
func (c *Conn) receive(ctx context.Context, l layout, rel Release, manifest []byte, progress func(sent, total int64)) (int64, error) {
	local, err := os.Open(rel.Artifact)
	if err != nil {
		return 0, fmt.Errorf("open the artifact of %s: %w", rel.Version, err)
	}
	defer local.Close()
	compressed, err := isGzip(local)
	if err != nil {
		return 0, fmt.Errorf("read the artifact of %s: %w", rel.Version, err)
	}
	counter := &progressReader{ctx: ctx, r: io.LimitReader(local, rel.Size), total: rel.Size, report: progress}
	sealed := newSealedArtifact(counter, rel.Size, compressed)
	out, err := c.Feed(ctx, receiveScript(l, rel, nonce(), sealed.name, compressed, len(manifest)), io.MultiReader(bytes.NewReader(manifest), sealed))
	sent := counter.sent.Load()
	if err == nil {
		if progress != nil {
			progress(sent, rel.Size)
		}
		return sent, nil
	}
	if ctx.Err() == nil {
		if changed := sealed.mismatch(rel); changed != "" {
			return sent, fmt.Errorf("sha256 mismatch for %s on %s: %s", rel.Version, c.target.label(), changed)
		}
	}
	return sent, c.receiveError(ctx, l, rel, sent, out, err)
}

// isGzip reports whether f starts with gzip's magic number, and rewinds it. Anything else is
// sent as a plain tar: an artifact whose data does not shrink is packed without compression.
func isGzip(f *os.File) (bool, error) {
	magic := make([]byte, 2)
	n, err := io.ReadFull(f, magic)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return false, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return false, err
	}
	return n == 2 && magic[0] == 0x1f && magic[1] == 0x8b, nil
}

func nonce() string {
	b := make([]byte, 4)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// hasher is a shell line that picks the host's fastest sha256, for the files of a release
// assembled on the host (assembleScript): openssl's uses the CPU's SHA
// instructions (about four times the speed of coreutils' sha256sum on the machines we
// measured); sha256sum, part of every Debian, is used where openssl is not installed. Both
// print the hex digest as their first word.
const hasher = `if command -v openssl >/dev/null 2>&1; then hasher="openssl dgst -sha256 -r"; else hasher=sha256sum; fi
`

// Exit statuses of receiveScript (and assembleScript) that name what went wrong.
const (
	exitSHAMismatch = 65
	exitUnpack      = 66
)

// receiveScript reads the sealed artifact (sealedArtifact) on its stdin once: tar unpacks it
// into a temp directory as it arrives, straight from the connection, with -i (over the
// artifact's end-of-archive blocks) so that it unpacks ferry's seal too. Only when tar
// succeeded and the seal, a member named with this upload's token, says the version's sha256
// is the release put in place; otherwise, and when the stream ends early (cancel, lost
// connection: there is no seal), every temp file is removed before the script exits.
func receiveScript(l layout, rel Release, n, seal string, compressed bool, manifestLen int) string {
	keepManifest, readManifest, record := "", "", "rm -f -- "+store.ShellQuote(l.statFile(rel.Version))
	if manifestLen > 0 {
		record = statRecord(`"$tmp"`, store.ShellQuote(l.statTemp(rel.Version, n)), store.ShellQuote(l.statFile(rel.Version)))
		// The manifest (gzipped) comes first on stdin: dd takes exactly its bytes.
		readManifest = fmt.Sprintf(`dd bs=%d count=1 iflag=fullblock status=none | gzip -dc > "$files" || { clean; exit %d; }`, manifestLen, exitUnpack)
		keepManifest = fmt.Sprintf(` && mv -- "$files" %s`, store.ShellQuote(l.filesFile(rel.Version)))
	}
	// 128 KiB records: a tenth of the reads of tar's default 10 KiB.
	untar := "tar -b 256 -i -xf - --no-same-owner -C \"$tmp\""
	if compressed {
		untar = "tar -b 256 -i -xzf - --no-same-owner -C \"$tmp\""
	}
	return fmt.Sprintf(`want=%[1]s
tmp=%[2]s
files=%[8]s
seal="$tmp"/%[3]s
clean() { rm -rf -- "$tmp" "$files"; }
rm -rf -- %[9]s
%[10]s
mkdir -- "$tmp" || { clean; exit %[5]d; }
%[6]s
untar=$?
cat > /dev/null
got=
if [ -f "$seal" ] && [ ! -h "$seal" ]; then IFS= read -r got < "$seal"; fi
if [ "$untar" -ne 0 ]; then
  df -Pk -- "$(dirname -- "$tmp")" | awk 'NR == 2 { print "free-kib " $4 }'
  clean; exit %[5]d
fi
if [ "$got" != "$want" ]; then echo "$got"; clean; exit %[4]d; fi
rm -f -- "$seal" && { %[13]s; } && printf '%%s\n' "$want" > %[11]s%[12]s && mv -T -- "$tmp" %[7]s || { clean; exit %[5]d; }
`, store.ShellQuote(strings.ToLower(rel.SHA256)), store.ShellQuote(l.unpacking(rel.Version, n)), store.ShellQuote(seal),
		exitSHAMismatch, exitUnpack, untar, store.ShellQuote(l.release(rel.Version)), store.ShellQuote(l.filesTemp(rel.Version, n)),
		l.tempsOf(rel.Version), readManifest, store.ShellQuote(l.shaFile(rel.Version)), keepManifest, record)
}

// receiveError says why receiving an artifact failed: canceled, the connection lost, the disk
// full, the checksum of what arrived wrong, or the archive broken.
func (c *Conn) receiveError(ctx context.Context, l layout, rel Release, sent int64, out string, err error) error {
	what := fmt.Sprintf("uploading %s to %s after %s of %s", rel.Version, l.releases(), byteCount(sent), byteCount(rel.Size))
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("canceled while %s: %w", what, ctx.Err())
	case strings.Contains(err.Error(), "No space left") || diskFull(out):
		return fmt.Errorf("no space left on %s while %s: %w", c.target.label(), what, err)
	case strings.Contains(err.Error(), fmt.Sprintf("exit status %d", exitSHAMismatch)):
		return fmt.Errorf("sha256 mismatch for %s on %s: the uploaded file has %s, the artifact %s", rel.Version, c.target.label(), strings.TrimSpace(out), rel.SHA256)
	case c.closed():
		return fmt.Errorf("the connection to %s was lost while %s: %v", c.target.label(), what, err)
	}
	return fmt.Errorf("check and unpack %s on %s: %w", rel.Version, c.target.label(), err)
}

// diskFull reads the free space receiveScript printed after tar failed: under 1 MiB left means
// tar stopped because the disk is full (tar itself may only say it wrote less than asked).
func diskFull(out string) bool {
	for _, line := range strings.Split(out, "\n") {
		if kib, ok := strings.CutPrefix(line, "free-kib "); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(kib), 10, 64)
			return err == nil && n < 1024
		}
	}
	return false
}

// closed reports whether the connection has ended, waiting a moment for the transport to
// notice a cut.
func (c *Conn) closed() bool {
	waited := make(chan error, 1)
	go func() { waited <- c.client.Wait() }()
	select {
	case <-waited:
		return true
	case <-c.done:
		return true
	case <-time.After(200 * time.Millisecond):
	}
	_, _, err := c.client.SendRequest("keepalive@openssh.com", true, nil)
	return err != nil
}

// progressReader counts what is read, reports it about every MiB read and stops when ctx
// ends.
type progressReader struct {
	ctx      context.Context
	r        io.Reader
	total    int64
	sent     atomic.Int64
	reported int64
	report   func(sent, total int64)
}

func (p *progressReader) Read(b []byte) (int, error) {
	if err := p.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := p.r.Read(b)
	sent := p.sent.Add(int64(n))
	if p.report != nil && sent-p.reported >= 1<<20 {
		p.reported = sent
		p.report(sent, p.total)
	}
	return n, err
}

func byteCount(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
