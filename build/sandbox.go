package build

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Where a sandboxed script finds its directories. Fixed paths, so a build.env can name them
// and so nothing tells the script where ferry keeps its data.
const (
	sandboxSrc     = "/build/src"
	sandboxHome    = "/build/home"
	sandboxCache   = "/build/cache"
	sandboxTmp     = "/tmp"
	sandboxObjects = "/build/.mirror-objects"
	// sandboxUID is the user a script runs as inside the sandbox: nobody. Outside, its files
	// belong to ferry's user, so it can write its checkout and nothing else of ferry's is there.
	sandboxUID = "65534"
)

// DefaultBwrap is the bubblewrap program a Sandbox runs when told no other.
const DefaultBwrap = "bwrap"

// readOnlyTrees are the parts of the machine a build sees, read-only: toolchains and the
// system's configuration (resolver, CA certificates, users).
var readOnlyTrees = []string{"/usr", "/etc", "/opt"}

// privateTrees are searched at start for what only an owner or group may read, which is then
// masked, so a build never reads more there than any unprivileged user could. /usr holds what
// packages install, readable by all, and is too large to search at every start.
var privateTrees = []string{"/etc", "/opt"}

// mergedUsrLinks are the top-level directories that are symlinks into /usr on most systems
// and real directories on some.
var mergedUsrLinks = []string{"/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"}

// Sandbox runs build scripts in bubblewrap (bwrap): in their own user, pid, mount, IPC and
// UTS namespaces, with the host's network, as nobody, seeing /usr, /etc and /opt read-only,
// their checkout, home, cache and tmp writable, and nothing else of the machine: not ferry's
// data dir, other builds' workspaces, ferry's processes or environment. The sandbox ends when
// ferry does (--die-with-parent, and SIGKILL to bwrap when ferry's thread dies).
type Sandbox struct {
	bwrap  string
	masked []string // files no unprivileged user may read, bound over with /dev/null
	hidden []string // directories no unprivileged user may enter, covered by an empty tmpfs
}

// ferryConfig are where ferry's own settings (an environment file with FERRY_SECRET_KEY) are
// usually kept; they are hidden whatever their modes.
var ferryConfig = []string{"/etc/ferry", "/etc/default/ferry", "/etc/sysconfig/ferry", "/opt/ferry"}

// NewSandbox finds bwrap (a name is looked up in PATH; "" means DefaultBwrap), checks that it
// can start a sandbox here, and notes what in the read-only trees must stay out of sight:
// what no unprivileged user may read, ferry's usual config places, and hide (ferry's data
// dir, should it lie in /etc or /opt). It fails with a message that says what to install or
// set when bwrap is missing or cannot create namespaces on this machine.
func NewSandbox(bwrap string, hide ...string) (*Sandbox, error) {
	if bwrap == "" {
		bwrap = DefaultBwrap
	}
	path, err := exec.LookPath(bwrap)
	if err != nil {
		return nil, fmt.Errorf("the build sandbox needs bubblewrap, and %s was not found (%v): install the bubblewrap package (apt-get install bubblewrap), or run builds unsandboxed with FERRY_BUILD_SANDBOX=off only if everyone who can push is trusted with ferry's secrets", bwrap, errors.Unwrap(err))
	}
	s := &Sandbox{bwrap: path}
	for _, root := range privateTrees {
		s.findPrivate(root)
	}
	for _, p := range append(hide, ferryConfig...) {
		s.hide(p)
	}
	if err := s.probe(); err != nil {
		return nil, err
	}
	return s, nil
}

// Path returns the bwrap program the sandbox runs.
func (s *Sandbox) Path() string { return s.bwrap }

// probe starts one empty sandbox, so a kernel without user namespaces is reported at start
// rather than by every build.
func (s *Sandbox) probe() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args := append(s.baseArgs(), "--", "/bin/sh", "-c", "exit 0")
	cmd := exec.CommandContext(ctx, s.bwrap, args...)
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("the build sandbox does not work on this machine: %s %v: %s; allow unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1, user.max_user_namespaces > 0, or an AppArmor profile for bwrap), or run builds unsandboxed with FERRY_BUILD_SANDBOX=off only if everyone who can push is trusted with ferry's secrets",
			s.bwrap, err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// findPrivate notes everything below root that an unprivileged user could not read. Running
// ferry as root makes the sandbox's user root outside it, the owner of /etc/shadow and the
// SSH host keys; masking them keeps the rule "nothing nobody could read".
func (s *Sandbox) findPrivate(root string) {
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		mode := info.Mode()
		switch {
		case mode.IsDir() && mode.Perm()&0o005 != 0o005:
			s.hidden = append(s.hidden, p)
			return fs.SkipDir
		case mode.IsRegular() && mode.Perm()&0o004 == 0:
			s.masked = append(s.masked, p)
		}
		return nil
	})
}

// hide keeps p out of the sandbox when it lies in one of the trees the sandbox shows.
func (s *Sandbox) hide(p string) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real
	}
	info, err := os.Stat(abs)
	if err != nil || slices.Contains(s.masked, abs) {
		return
	}
	for _, h := range s.hidden {
		if abs == h || strings.HasPrefix(abs, h+"/") {
			return // hidden already with a directory above it
		}
	}
	for _, root := range readOnlyTrees {
		if abs == root || strings.HasPrefix(abs, root+"/") {
			if info.IsDir() {
				s.hidden = append(s.hidden, abs)
			} else {
				s.masked = append(s.masked, abs)
			}
			return
		}
	}
}

// baseArgs are the bwrap arguments of every sandbox: namespaces and the read-only machine.
func (s *Sandbox) baseArgs() []string {
	args := []string{
		"--unshare-all", "--share-net", "--die-with-parent", "--new-session",
		"--uid", sandboxUID, "--gid", sandboxUID, "--hostname", "ferry-build",
		"--proc", "/proc", "--dev", "/dev",
	}
	for _, root := range readOnlyTrees {
		args = append(args, "--ro-bind-try", root, root)
	}
	for _, p := range mergedUsrLinks {
		switch target, err := os.Readlink(p); {
		case err == nil:
			args = append(args, "--symlink", target, p)
		default:
			args = append(args, "--ro-bind-try", p, p)
		}
	}
	args = append(args, resolverArgs()...)
	for _, p := range s.masked {
		args = append(args, "--ro-bind", os.DevNull, p)
	}
	for _, p := range s.hidden {
		args = append(args, "--tmpfs", p, "--remount-ro", p)
	}
	return args
}

// resolverArgs makes /etc/resolv.conf work where it is a symlink out of /etc (systemd-resolved
// keeps it in /run, which the sandbox does not show).
func resolverArgs() []string {
	target, err := filepath.EvalSymlinks("/etc/resolv.conf")
	if err != nil || strings.HasPrefix(target, "/etc/") || strings.HasPrefix(target, "/usr/") {
		return nil
	}
	return []string{"--ro-bind-try", target, target}
}

// sandboxDirs are the host directories of one build, bound writable into its sandbox.
type sandboxDirs struct {
	src, home, tmp, cache string
	// objects is the project's mirror object store, which the checkout borrows from; read-only.
	objects string
}

// command returns the bwrap command that runs argv with env inside a new sandbox.
func (s *Sandbox) command(dirs sandboxDirs, env []string, argv ...string) (*exec.Cmd, error) {
	args := s.baseArgs()
	for _, b := range []struct{ host, inside string }{
		{dirs.src, sandboxSrc}, {dirs.home, sandboxHome}, {dirs.tmp, sandboxTmp}, {dirs.tmp, "/var/tmp"}, {dirs.cache, sandboxCache},
	} {
		if b.host != "" {
			host, err := filepath.Abs(b.host) // the data dir may be given relative, ./ferry-data
			if err != nil {
				return nil, err
			}
			args = append(args, "--bind", host, b.inside)
		}
	}
	if dirs.objects != "" {
		if err := pointAlternates(dirs.src, sandboxObjects); err != nil {
			return nil, err
		}
		objects, err := filepath.Abs(dirs.objects)
		if err != nil {
			return nil, err
		}
		args = append(args, "--ro-bind", objects, sandboxObjects)
	}
	own, inside := bwrapEnv(env)
	args = append(args, inside...)
	args = append(args, "--remount-ro", "/", "--chdir", sandboxSrc, "--")
	cmd := exec.Command(s.bwrap, append(args, argv...)...)
	// bwrap hands its environment to the script, plus what --setenv adds inside.
	cmd.Env = own
	return cmd, nil
}

// bwrapEnv splits the script's environment into what bwrap itself may run with and --setenv
// arguments for the rest. bwrap runs as ferry, outside the sandbox, before any namespace, so
// a variable from build.env (the pushed .ferry.yml) must never reach its dynamic loader or
// libc: LD_PRELOAD or LD_AUDIT would load a library of the pusher's choice into it. Only the
// variables ferry sets itself stay in bwrap's environment; the script gets every one.
func bwrapEnv(env []string) (own, setenv []string) {
	for _, kv := range env {
		name, value, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(name, "FERRY_"), slices.Contains([]string{"PATH", "HOME", "TMPDIR", "LANG", "CI", "XDG_CACHE_HOME"}, name):
			own = append(own, kv)
		default:
			setenv = append(setenv, "--setenv", name, value)
		}
	}
	return own, setenv
}

// pointAlternates makes the checkout borrow objects from where the sandbox shows the mirror's
// object store, so git log and git describe work inside it.
func pointAlternates(src, objects string) error {
	file := filepath.Join(src, ".git", "objects", "info", "alternates")
	if _, err := os.Stat(file); err != nil {
		return nil // not a checkout that borrows objects
	}
	if err := os.WriteFile(file, []byte(objects+"\n"), 0o600); err != nil {
		return fmt.Errorf("prepare the checkout for the sandbox: %w", err)
	}
	return nil
}
