package deploy

import (
	"context"
	"ferry/store"
	"fmt"
	"io"
	"os"
	"strings"
	"sync/atomic"
	"time"
)

// Upload puts rel under root/releases/<version>/ on the host and returns the bytes sent. A
// release already there with the same recorded sha256 is kept and nothing is sent. The artifact
// is streamed to a temp name, its sha256 checked on the host, unpacked into a temp directory and
// only then renamed to its final name; temp files are removed when a step fails while the
// connection still stands (and before the next upload of the same version otherwise).
func (c *Conn) Upload(ctx context.Context, root string, rel Release, progress func(sent, total int64)) (sent int64, err error) {
	if err := rel.Validate(); err != nil {
		return 0, err
	}
	l := layout{root}
	present, err := c.releasePresent(ctx, l, rel)
	if err != nil || present {
		return 0, err
	}
	defer func() {
		if err != nil {
			c.removeTemps(ctx, l, rel.Version)
		}
	}()
	if sent, err = c.send(ctx, l, rel, progress); err != nil {
		return sent, err
	}
	return sent, c.verifyAndUnpack(ctx, l, rel)
}

// releasePresent reports whether the release is on the host with the same sha256. A release
// directory with another or no recorded sha256 is removed, unless current points at it.
func (c *Conn) releasePresent(ctx context.Context, l layout, rel Release) (bool, error) {
	prepare := fmt.Sprintf("mkdir -p -- %s %s && rm -rf -- %s %s %s && if [ -d %s ]; then echo present; fi",
		store.ShellQuote(l.releases()), store.ShellQuote(l.shared()+"/logs"), store.ShellQuote(l.unpacking(rel.Version)),
		store.ShellQuote(l.uploading(rel.Version)), store.ShellQuote(l.shaTemp(rel.Version)), store.ShellQuote(l.release(rel.Version)))
	out, err := c.Output(ctx, prepare, nil)
	if err != nil {
		return false, fmt.Errorf("prepare %s on %s: %w", l.releases(), c.target.label(), err)
	}
	if strings.TrimSpace(out) != "present" {
		return false, nil
	}
	sha, err := c.recordedSHA(l, rel.Version)
	if err != nil {
		return false, err
	}
	if strings.EqualFold(sha, rel.SHA256) {
		return true, nil
	}
	current, err := c.currentVersion(l)
	if err != nil {
		return false, err
	}
	if current == rel.Version {
		return false, fmt.Errorf("release %s on %s holds another artifact (sha256 %q, want %s) and is the current release: refusing to replace it",
			rel.Version, c.target.label(), sha, rel.SHA256)
	}
	if _, err := c.Output(ctx, "rm -rf -- "+l.removeRelease(rel.Version), nil); err != nil {
		return false, fmt.Errorf("remove the stale release %s on %s: %w", rel.Version, c.target.label(), err)
	}
	return false, nil
}

// send streams the artifact to its temp name on the host.
func (c *Conn) send(ctx context.Context, l layout, rel Release, progress func(sent, total int64)) (int64, error) {
	local, err := os.Open(rel.Artifact)
	if err != nil {
		return 0, fmt.Errorf("open the artifact of %s: %w", rel.Version, err)
	}
	defer local.Close()
	client, err := c.SFTP()
	if err != nil {
		return 0, err
	}
	remote, err := client.OpenFile(l.uploading(rel.Version), os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
	if err != nil {
		return 0, fmt.Errorf("create %s on %s: %w", l.uploading(rel.Version), c.target.label(), err)
	}
	counter := &progressReader{ctx: ctx, r: local, total: rel.Size, report: progress}
	_, err = remote.ReadFromWithConcurrency(counter, 0)
	if closeErr := remote.Close(); err == nil && closeErr != nil {
		err = closeErr
	}
	sent := counter.sent.Load()
	if err != nil {
		return sent, c.uploadError(ctx, l, rel, sent, err)
	}
	if progress != nil {
		progress(sent, rel.Size)
	}
	return sent, nil
}

// uploadError says why an upload stopped: canceled, the connection lost, or the disk full.
func (c *Conn) uploadError(ctx context.Context, l layout, rel Release, sent int64, err error) error {
	what := fmt.Sprintf("uploading %s to %s after %s of %s", rel.Version, l.releases(), byteCount(sent), byteCount(rel.Size))
	if ctx.Err() != nil {
		return fmt.Errorf("canceled while %s: %w", what, ctx.Err())
	}
	if c.closed() {
		return fmt.Errorf("the connection to %s was lost while %s: %v", c.target.label(), what, err)
	}
	client, sftpErr := c.SFTP()
	if sftpErr == nil {
		vfs, vfsErr := client.StatVFS(l.releases())
		if vfsErr == nil && vfs.FreeSpace() < uint64(max(rel.Size-sent, 1<<20)) {
			return fmt.Errorf("no space left on %s while %s: %s free", c.target.label(), what, byteCount(int64(vfs.FreeSpace())))
		}
	}
	return fmt.Errorf("%s on %s: %w", what, c.target.label(), err)
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

// Exit statuses of verifyAndUnpack's script that name what went wrong.
const (
	exitSHAMismatch = 65
	exitUnpack      = 66
)

// verifyAndUnpack checks the uploaded file's sha256 on the host and, at the same time, extracts
// it into a temp directory: one round trip, and checksum and unpacking use two cores of the
// host instead of one after the other. Only when the sha256 matches is it recorded (beside the
// release, where no member of the artifact can write) and the directory renamed to the
// release's final name. The checksum goes to a temp file beside the directory too, so a member
// of the artifact cannot overwrite it while tar runs.
func (c *Conn) verifyAndUnpack(ctx context.Context, l layout, rel Release) error {
	tmp, tarball := store.ShellQuote(l.unpacking(rel.Version)), store.ShellQuote(l.uploading(rel.Version))
	want := strings.ToLower(rel.SHA256)
	script := fmt.Sprintf(`set -e
want=%[3]s
mkdir -- %[1]s
sha256sum -- %[2]s > %[6]s &
summer=$!
untar=0
tar -xzf %[2]s -C %[1]s --no-same-owner || untar=$?
wait "$summer" || { echo "sha256sum failed" >&2; exit %[5]d; }
got=$(cut -d ' ' -f 1 < %[6]s)
rm -f -- %[6]s
if [ "$got" != "$want" ]; then echo "$got"; exit %[4]d; fi
if [ "$untar" -ne 0 ]; then exit %[5]d; fi
printf '%%s\n' "$want" > %[8]s
mv -T -- %[1]s %[7]s
rm -f -- %[2]s`, tmp, tarball, store.ShellQuote(want), exitSHAMismatch, exitUnpack, store.ShellQuote(l.shaTemp(rel.Version)),
		store.ShellQuote(l.release(rel.Version)), store.ShellQuote(l.shaFile(rel.Version)))
	out, err := c.Output(ctx, script, nil)
	switch {
	case err == nil:
		return nil
	case strings.Contains(err.Error(), fmt.Sprintf("exit status %d", exitSHAMismatch)):
		return fmt.Errorf("sha256 mismatch for %s on %s: the uploaded file has %s, the artifact %s", rel.Version, c.target.label(), strings.TrimSpace(out), rel.SHA256)
	case strings.Contains(err.Error(), "No space left"):
		return fmt.Errorf("no space left on %s while unpacking %s into %s: %w", c.target.label(), rel.Version, l.releases(), err)
	}
	return fmt.Errorf("check and unpack %s on %s: %w", rel.Version, c.target.label(), err)
}

// removeTemps deletes the temp files of an upload that failed, even after ctx ended.
func (c *Conn) removeTemps(ctx context.Context, l layout, version string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	c.Output(ctx, fmt.Sprintf("rm -rf -- %s %s %s", store.ShellQuote(l.unpacking(version)), store.ShellQuote(l.uploading(version)),
		store.ShellQuote(l.shaTemp(version))), nil)
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
