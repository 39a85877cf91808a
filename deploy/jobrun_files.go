package deploy

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path"
	"strings"

	"ferry/store"
)

// putFile puts an uploaded file at <path>/<name> on the host: skipped when a file with the
// same sha256 is there, else written to a temp name beside it over SFTP, its sha256 checked on
// the host and only then renamed over the old one.
func (jr *jobRun) putFile(ctx context.Context, conn *Conn, plan store.RunStepPlan, pos int, host string) error {
	f, content, err := jr.w.db.ReadJobFile(ctx, plan.FileID)
	if err != nil {
		return fmt.Errorf("load file %s: %w", plan.File, err)
	}
	dest := path.Join(plan.Path, f.Name)
	skipped, err := conn.PutFile(ctx, dest, content, f.SHA256)
	if err != nil {
		return err
	}
	if skipped {
		jr.say(pos, host, "%s is there already with the same sha256: skipped", dest)
		return nil
	}
	jr.say(pos, host, "put %s (%s, sha256 %s)", dest, byteCount(f.Size), f.SHA256[:12])
	return nil
}

// PutFile writes content to dest on the host unless a file there has sha256 already; it
// reports whether it skipped. The content goes to a temp name, is checked with sha256sum on the
// host and renamed to dest.
func (c *Conn) PutFile(ctx context.Context, dest string, content []byte, sha256 string) (skipped bool, err error) {
	dir := path.Dir(dest)
	out, err := c.Output(ctx, fmt.Sprintf("mkdir -p -- %s && if [ -f %s ]; then sha256sum -- %s; fi",
		store.ShellQuote(dir), store.ShellQuote(dest), store.ShellQuote(dest)), nil)
	if err != nil {
		return false, fmt.Errorf("look at %s on %s: %w", dest, c.target.label(), err)
	}
	if have, _, _ := strings.Cut(strings.TrimSpace(out), " "); strings.EqualFold(have, sha256) {
		return true, nil
	}
	b := make([]byte, 6)
	rand.Read(b)
	tmp := path.Join(dir, "."+path.Base(dest)+".ferry-"+hex.EncodeToString(b))
	client, err := c.SFTP()
	if err != nil {
		return false, err
	}
	remote, err := client.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
	if err != nil {
		return false, fmt.Errorf("create %s on %s: %w", tmp, c.target.label(), err)
	}
	_, err = remote.ReadFromWithConcurrency(bytes.NewReader(content), 0)
	if cerr := remote.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		c.Output(context.WithoutCancel(ctx), "rm -f -- "+store.ShellQuote(tmp), nil)
		return false, fmt.Errorf("upload %s to %s: %w", dest, c.target.label(), err)
	}
	script := fmt.Sprintf(`got=$(sha256sum -- %[1]s | cut -d ' ' -f 1)
if [ "$got" != %[3]s ]; then rm -f -- %[1]s; echo "sha256 mismatch: got $got" >&2; exit %[4]d; fi
mv -f -- %[1]s %[2]s`, store.ShellQuote(tmp), store.ShellQuote(dest), store.ShellQuote(strings.ToLower(sha256)), exitSHAMismatch)
	if _, err := c.Output(ctx, script, nil); err != nil {
		return false, fmt.Errorf("check and place %s on %s: %w", dest, c.target.label(), err)
	}
	return false, nil
}
