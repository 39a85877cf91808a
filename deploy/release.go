package deploy

import (
	"context"
	"ferry/store"
	"fmt"
	"path"
	"strings"
	"time"
)

// Release is one version to put on a host: its name and the local tar.gz artifact.
type Release struct {
	Version  string
	Artifact string // local path of the tar.gz
	SHA256   string // hex sha256 of the artifact
	Size     int64  // bytes of the artifact
	// Files indexes the artifact's files once for every host of a rollout (NewFileIndex); nil
	// means each host reads the artifact for it.
	Files *FileIndex
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
// layout is where a deployment's files are on a host; vars are the host's variables, which
// the stop, start and health commands see in their environment (releaseEnv).
type layout struct {
	root string
	vars map[string]string
}

func (l layout) releases() string        { return path.Join(l.root, "releases") }
func (l layout) release(v string) string { return path.Join(l.root, "releases", v) }
func (l layout) current() string         { return path.Join(l.root, "current") }
func (l layout) shared() string          { return path.Join(l.root, "shared") }
func (l layout) logFile(v string) string { return path.Join(l.root, "shared", "logs", v+".log") }
func (l layout) unpacking(v, n string) string {
	return path.Join(l.root, "releases", v+".ferry-"+n+".tmp")
}

// tempsOf is the shell words (quoted names and globs) naming every temp file and directory an
// upload of version leaves while it runs: this ferry's (with their attempt's nonce) and those
// of older ferry versions.
func (l layout) tempsOf(v string) string {
	q := func(name string) string { return store.ShellQuote(path.Join(l.root, "releases", name)) }
	return strings.Join([]string{q(v) + ".ferry-????????.tmp", q("."+v) + ".ferry-????????.*.tmp",
		q(v + ".tmp"), q("." + v + ".tar.gz.tmp"), q("." + v + ".sha256.tmp")}, " ")
}

// shaFile records the sha256 of the artifact a release was unpacked from. It lives beside the
// release directory, not in it, so no member of an artifact can be it: a version never starts
// with a dot.
func (l layout) shaFile(v string) string { return path.Join(l.root, "releases", "."+v+".sha256") }

// filesFile is the manifest of a release: one line per regular file, "<sha256> <mode> <path>".
// It lives beside the release like shaFile, and lets a later release be assembled on the host
// from the files it already holds.
func (l layout) filesFile(v string) string { return path.Join(l.root, "releases", "."+v+".files") }

// statFile records, for every regular file of a release, its inode, size and modification
// time as they were when the release was checked and put in place: "<path>\t<inode>\t<size>\t
// <mtime>" (find -printf '%P\t%i\t%s\t%T@'). A file linked from this release into a new one
// whose inode, size and mtime are still those is not read again to check the new release (see
// assembleScript), as rsync and git judge a file unchanged; any write to it changes its mtime.
func (l layout) statFile(v string) string { return path.Join(l.root, "releases", "."+v+".stat") }

// statRecord is the shell line that writes the statFile of the release being put in place
// from its directory dir (a temp name, before the rename), into statTemp and then statFile. It
// never fails: without find -printf (busybox) there is no record, and files linked from the
// release are read to be checked.
func statRecord(dir, statTemp, statFile string) string {
	return fmt.Sprintf(`{ (cd -- %[1]s && %[4]s) > %[2]s 2>/dev/null && mv -- %[2]s %[3]s; } || rm -f -- %[2]s %[3]s`,
		dir, statTemp, statFile, statList)
}

// statList prints a statFile's lines for the files under the working directory.
const statList = `find . -type f -printf '%P\t%i\t%s\t%T@\n'`

// filesTemp and linksTemp are an upload's manifest and its list of files to link, until the
// release is in place.
func (l layout) filesTemp(v, n string) string {
	return path.Join(l.root, "releases", "."+v+".ferry-"+n+".files.tmp")
}
func (l layout) statTemp(v, n string) string {
	return path.Join(l.root, "releases", "."+v+".ferry-"+n+".stat.tmp")
}
func (l layout) sumsTemp(v, n string) string {
	return path.Join(l.root, "releases", "."+v+".ferry-"+n+".sums.tmp")
}
func (l layout) linksTemp(v, n string) string {
	return path.Join(l.root, "releases", "."+v+".ferry-"+n+".links.tmp")
}

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
	// manifests names the kept releases with a manifest of their files (layout.filesFile).
	manifests map[string]bool
}

// State reads which release current points at and which releases are kept under root, in
// one command on the host.
func (c *Conn) State(ctx context.Context, root string) (HostState, error) {
	return c.probe(ctx, layout{root: root}, false, "")
}

// removeRelease is the shell words that name a release directory and its record files.
func (l layout) removeRelease(v string) string {
	return store.ShellQuote(l.release(v)) + " " + store.ShellQuote(l.shaFile(v)) + " " + store.ShellQuote(l.filesFile(v)) + " " + store.ShellQuote(l.statFile(v))
}

// switchCurrent points current at releases/<version> with one rename over the old link, so
// there is never a moment without a current link. It also marks the release as just deployed.
func (c *Conn) switchCurrent(ctx context.Context, l layout, version string, out func(stream, line string)) error {
	if _, err := c.Quick(ctx, switchScript(l, version)); err != nil {
		return fmt.Errorf("switch %s to release %s on %s: %w", l.current(), version, c.target.label(), err)
	}
	return nil
}

// prune removes the oldest of kept (most recently deployed first) beyond keep, never current
// nor previous, in one command when there is anything to remove. It returns the versions left,
// in kept's order. Deleting a large release takes seconds, which the deployment does not wait
// for: the command moves each release (its directory, then its record files) out of the
// release namespace, one rename each, into a trash directory under releases/ whose name starts
// with a dot (which the probe never lists, so a moved release is at once no kept release), then
// starts the removal of that directory detached from the session, at the lowest CPU and I/O
// priority the host offers, and returns. A failed rename is reported, and that release keeps
// its record files; a removal that never ended (the host rebooted) is taken up by the next
// deployment's probe (probeScript).
func (c *Conn) prune(ctx context.Context, l layout, kept []KeptRelease, keep int, current, previous string, log func(string)) ([]string, error) {
	var remove, left []string
	for _, r := range kept {
		if r.Version == current || r.Version == previous || len(left) < keep {
			left = append(left, r.Version)
			continue
		}
		remove = append(remove, r.Version)
		log(fmt.Sprintf("removing old release %s (keeping %d)", r.Version, keep))
	}
	if len(remove) == 0 {
		return left, nil
	}
	if _, err := c.Quick(ctx, pruneScript(l, remove, nonce())); err != nil {
		return nil, fmt.Errorf("remove old releases on %s: %w", c.target.label(), err)
	}
	return left, nil
}

// trashPrefix starts the name of a directory under releases/ holding releases being removed.
const trashPrefix = ".ferry-trash-"

// pruneScript moves the releases named versions into a new trash directory under releases/:
// their directories with one mv (a rename each: they are on one file system), then with one
// more the record files of those whose directory is gone, skipping files that are not there.
// Then it starts the trash's removal (removeTrashDetached). It fails when a move failed.
func pruneScript(l layout, versions []string, n string) string {
	var dirs, records strings.Builder
	for _, v := range versions {
		dir := store.ShellQuote(l.release(v))
		fmt.Fprintf(&dirs, " %s", dir)
		fmt.Fprintf(&records, "[ -e %[1]s ] || [ -L %[1]s ] || for f in %[2]s %[3]s %[4]s; do [ -e \"$f\" ] && set -- \"$@\" \"$f\"; done\n",
			dir, store.ShellQuote(l.shaFile(v)), store.ShellQuote(l.filesFile(v)), store.ShellQuote(l.statFile(v)))
	}
	return fmt.Sprintf(`t=%s
mkdir -- "$t" || exit 1
set --
for f in%s; do if [ -e "$f" ] || [ -L "$f" ]; then set -- "$@" "$f"; fi; done
moved=0
[ $# -eq 0 ] || mv -- "$@" "$t/" || moved=$?
set --
%s[ $# -eq 0 ] || mv -- "$@" "$t/" || moved=$?
set -- "$t"
%s
exit $moved
`, store.ShellQuote(path.Join(l.releases(), trashPrefix+n)), dirs.String(), records.String(), removeTrashDetached())
}

// trashRemover is the script that removes the directories in its arguments, at the lowest
// best-effort I/O priority (ionice) and CPU priority (nice) where the host has those
// commands, so that the removal yields to the service just started. ionice sets the priority
// of the shell itself (-p), which rm inherits: an ionice refused (in some containers) does not
// stop the removal.
var trashRemover = `command -v ionice >/dev/null 2>&1 && ionice -c 2 -n 7 -p $$ >/dev/null 2>&1
command -v nice >/dev/null 2>&1 && exec nice -n 19 rm -rf -- "$@"
exec rm -rf -- "$@"`

// removeTrashDetached is the shell lines that start trashRemover on the directories in "$@" in
// the background, in a session of its own (setsid, else nohup) with stdin, stdout and stderr on
// /dev/null: the SSH command returns at once, and the removal goes on after its session ends.
func removeTrashDetached() string {
	return `if command -v setsid >/dev/null 2>&1; then detach=setsid; else detach=nohup; fi
$detach sh -c '` + trashRemover + `' ferry-trash "$@" </dev/null >/dev/null 2>&1 &`
}
