package deploy

import (
	"context"
	"errors"
	"ferry/store"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"time"
)

// Release is one version to put on a host: its name and the local tar.gz artifact.
type Release struct {
	Version  string
	Artifact string // local path of the tar.gz
	SHA256   string // hex sha256 of the artifact
	Size     int64  // bytes of the artifact
}

// Validate checks that the version can name a directory and the sha256 looks like one.
func (r Release) Validate() error {
	v := r.Version
	switch {
	case v == "" || v == "." || v == "..":
		return fmt.Errorf("version %q cannot name a release directory", v)
	case strings.HasPrefix(v, ".") || strings.HasPrefix(v, "-"):
		return fmt.Errorf("version %q must not start with %q", v, v[:1])
	case strings.ContainsAny(v, "/\x00\n\r"):
		return fmt.Errorf("version %q must not hold a slash or a line break", v)
	case strings.HasSuffix(v, ".tmp"):
		return fmt.Errorf("version %q must not end in .tmp", v)
	}
	if len(r.SHA256) != 64 || strings.Trim(strings.ToLower(r.SHA256), "0123456789abcdef") != "" {
		return fmt.Errorf("sha256 %q of version %s is not 64 hex digits", r.SHA256, v)
	}
	return nil
}

// layout names the places of DESIGN.md's host layout under one deploy path.
type layout struct{ root string }

func (l layout) releases() string          { return path.Join(l.root, "releases") }
func (l layout) release(v string) string   { return path.Join(l.root, "releases", v) }
func (l layout) current() string           { return path.Join(l.root, "current") }
func (l layout) shared() string            { return path.Join(l.root, "shared") }
func (l layout) logFile(v string) string   { return path.Join(l.root, "shared", "logs", v+".log") }
func (l layout) unpacking(v string) string { return path.Join(l.root, "releases", v+".tmp") }
func (l layout) uploading(v string) string { return path.Join(l.root, "releases", "."+v+".tar.gz.tmp") }
func (l layout) shaTemp(v string) string   { return path.Join(l.root, "releases", "."+v+".sha256.tmp") }

// shaFile records the sha256 of the artifact a release was unpacked from. It lives beside the
// release directory, not in it, so no member of an artifact can be it: a version never starts
// with a dot.
func (l layout) shaFile(v string) string { return path.Join(l.root, "releases", "."+v+".sha256") }

// legacyShaFile is where older versions of ferry recorded the sha256, inside the release; it is read
// only for a release without a shaFile (unpacked by an older ferry, which wrote it last).
func (l layout) legacyShaFile(v string) string {
	return path.Join(l.root, "releases", v, ".ferry-sha256")
}

// KeptRelease is one release directory on a host.
type KeptRelease struct {
	Version string
	SHA256  string
	// Deployed is when the release was last switched to (or unpacked).
	Deployed time.Time
}

// HostState is what a host holds under a deploy path: the release current points at ("" when
// there is none yet) and every release kept, most recently deployed first.
type HostState struct {
	Current  string
	Releases []KeptRelease
}

// State reads which release current points at and which releases are kept under root.
func (c *Conn) State(ctx context.Context, root string) (HostState, error) {
	l := layout{root}
	current, err := c.currentVersion(l)
	if err != nil {
		return HostState{}, err
	}
	kept, err := c.keptReleases(l)
	if err != nil {
		return HostState{}, err
	}
	return HostState{Current: current, Releases: kept}, nil
}

// currentVersion returns the version current points at, "" when there is no current link.
func (c *Conn) currentVersion(l layout) (string, error) {
	client, err := c.SFTP()
	if err != nil {
		return "", err
	}
	target, err := client.ReadLink(l.current())
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read where %s points on %s: %w", l.current(), c.target.label(), err)
	}
	return path.Base(path.Clean(target)), nil
}

func (c *Conn) keptReleases(l layout) ([]KeptRelease, error) {
	client, err := c.SFTP()
	if err != nil {
		return nil, err
	}
	entries, err := client.ReadDir(l.releases())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list %s on %s: %w", l.releases(), c.target.label(), err)
	}
	var kept []KeptRelease
	for _, e := range entries {
		name := e.Name()
		if !e.IsDir() || strings.HasPrefix(name, ".") || strings.HasSuffix(name, ".tmp") {
			continue
		}
		sha, _ := c.recordedSHA(l, name)
		kept = append(kept, KeptRelease{Version: name, SHA256: sha, Deployed: e.ModTime()})
	}
	sort.SliceStable(kept, func(i, j int) bool { return kept[i].Deployed.After(kept[j].Deployed) })
	return kept, nil
}

// recordedSHA returns the sha256 recorded for a release, "" with no error when there is none.
func (c *Conn) recordedSHA(l layout, version string) (string, error) {
	sha, found, err := c.readSHA(l.shaFile(version))
	if err != nil || found {
		return sha, err
	}
	sha, _, err = c.readSHA(l.legacyShaFile(version))
	return sha, err
}

func (c *Conn) readSHA(file string) (sha string, found bool, err error) {
	client, err := c.SFTP()
	if err != nil {
		return "", false, err
	}
	f, err := client.Open(file)
	if errors.Is(err, os.ErrNotExist) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("read %s on %s: %w", file, c.target.label(), err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, 200))
	if err != nil {
		return "", false, fmt.Errorf("read %s on %s: %w", file, c.target.label(), err)
	}
	return strings.TrimSpace(string(data)), true, nil
}

// removeRelease is the shell words that remove a release directory and its recorded sha256.
func (l layout) removeRelease(v string) string {
	return store.ShellQuote(l.release(v)) + " " + store.ShellQuote(l.shaFile(v))
}

// switchCurrent points current at releases/<version> with one rename over the old link, so
// there is never a moment without a current link. It also marks the release as just deployed.
func (c *Conn) switchCurrent(ctx context.Context, l layout, version string, out func(stream, line string)) error {
	script := fmt.Sprintf("cd %s && touch -c %s && rm -f .current.tmp && ln -s %s .current.tmp && mv -T .current.tmp current",
		store.ShellQuote(l.root), store.ShellQuote("releases/"+version), store.ShellQuote("releases/"+version))
	if _, err := c.Output(ctx, script, out); err != nil {
		return fmt.Errorf("switch %s to release %s on %s: %w", l.current(), version, c.target.label(), err)
	}
	return nil
}

// prune removes the oldest releases beyond keep, never current nor previous.
func (c *Conn) prune(ctx context.Context, l layout, keep int, current, previous string, log func(string)) error {
	kept, err := c.keptReleases(l)
	if err != nil {
		return err
	}
	var remove []string
	left := 0
	for _, r := range kept {
		if r.Version == current || r.Version == previous || left < keep {
			left++
			continue
		}
		remove = append(remove, l.removeRelease(r.Version))
		log(fmt.Sprintf("removing old release %s (keeping %d)", r.Version, keep))
	}
	if len(remove) == 0 {
		return nil
	}
	if _, err := c.Output(ctx, "rm -rf -- "+strings.Join(remove, " "), nil); err != nil {
		return fmt.Errorf("remove old releases on %s: %w", c.target.label(), err)
	}
	return nil
}
