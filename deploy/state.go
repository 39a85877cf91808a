package deploy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"ferry/store"
)

// probeScript prints, in one round trip, what a host holds under a deploy path: where current
// points, every release directory with its modification time, and every recorded sha256 (the
// file beside the release, and the legacy one inside it). Each line is "<kind> <field> <name>"
// with the name last, so a name with spaces stays whole. With prepare, it first creates the
// releases and shared/logs directories, removes the temp files earlier uploads of version
// left behind, and starts the removal of any trash an earlier prune left (see Conn.prune).
func probeScript(l layout, prepare bool, version string) string {
	var b strings.Builder
	if prepare { // test builtins first: no mkdir or rm process when there is nothing to do
		dirs := store.ShellQuote(l.releases()) + " " + store.ShellQuote(l.shared()+"/logs")
		fmt.Fprintf(&b, "for d in %s; do [ -d \"$d\" ] || { mkdir -p -- %s || exit 1; break; }; done\n", dirs, dirs)
		fmt.Fprintf(&b, "for f in %[1]s; do if [ -e \"$f\" ] || [ -L \"$f\" ]; then rm -rf -- %[1]s || exit 1; break; fi; done\n", l.tempsOf(version))
		// Trash an earlier prune did not finish removing (the host rebooted, the removal was
		// killed): removed again, detached, as prune does; a removal still running is not waited
		// for (two rm -rf of one directory both end, with nothing left).
		trash := store.ShellQuote(l.releases()) + "/" + trashPrefix + "*"
		fmt.Fprintf(&b, "for t in %[1]s; do if [ -d \"$t\" ]; then set -- %[1]s\n%[2]s\nbreak; fi; done\n", trash, removeTrashDetached())
	}
	fmt.Fprintf(&b, "cd -- %s 2>/dev/null || exit 0\n", store.ShellQuote(l.root))
	b.WriteString(`if [ -L current ]; then printf 'current - %s\n' "$(readlink current)"; fi
[ -d releases ] || exit 0
cd releases || exit 1
find . -mindepth 1 -maxdepth 1 -type d ! -name '.*' ! -name '*.tmp' -printf 'release %T@ %f\n' 2>/dev/null ||
for d in *; do # a find without -printf (busybox): whole seconds from stat
  [ -d "$d" ] && [ ! -L "$d" ] || continue
  case "$d" in *.tmp) continue;; esac
  printf 'release %s %s\n' "$(stat -c %Y -- "$d")" "$d"
done
for f in .*.sha256; do
  [ -f "$f" ] || continue
  sha=; { read -r sha _ || :; } < "$f"
  name=${f#.}; printf 'sha %s %s\n' "${sha:--}" "${name%.sha256}"
done
for f in .*.files; do
  [ -f "$f" ] || continue
  name=${f#.}; printf 'files - %s\n' "${name%.files}"
done
for f in */.ferry-sha256; do
  [ -f "$f" ] || continue
  sha=; { read -r sha _ || :; } < "$f"
  printf 'legacy %s %s\n' "${sha:--}" "${f%/.ferry-sha256}"
done
`)
	return b.String()
}

// probe reads the host's state under l in one command; see probeScript.
func (c *Conn) probe(ctx context.Context, l layout, prepare bool, version string) (HostState, error) {
	out, err := c.Quick(ctx, probeScript(l, prepare, version))
	if err != nil {
		if prepare {
			return HostState{}, fmt.Errorf("prepare %s on %s: %w", l.releases(), c.target.label(), err)
		}
		return HostState{}, fmt.Errorf("read the releases under %s on %s: %w", l.root, c.target.label(), err)
	}
	return parseProbe(out), nil
}

// parseProbe turns probeScript's output into a HostState, releases most recently deployed
// first. A release without a recorded sha256 has SHA256 "".
func parseProbe(out string) HostState {
	var st HostState
	shas, legacy := map[string]string{}, map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		kind, rest, _ := strings.Cut(line, " ")
		field, name, ok := strings.Cut(rest, " ")
		if !ok || name == "" {
			continue
		}
		if field == "-" {
			field = ""
		}
		switch kind {
		case "current":
			st.Current = path.Base(path.Clean(name))
		case "release":
			if _, seen := st.release(name); !seen {
				st.Releases = append(st.Releases, KeptRelease{Version: name, Deployed: unixTime(field)})
			}
		case "sha":
			shas[name] = field
		case "legacy":
			legacy[name] = field
		case "files":
			if st.manifests == nil {
				st.manifests = map[string]bool{}
			}
			st.manifests[name] = true
		}
	}
	for i, r := range st.Releases {
		sha, found := shas[r.Version]
		if !found {
			sha = legacy[r.Version]
		}
		st.Releases[i].SHA256 = sha
	}
	sort.SliceStable(st.Releases, func(i, j int) bool {
		a, b := st.Releases[i], st.Releases[j]
		if !a.Deployed.Equal(b.Deployed) {
			return a.Deployed.After(b.Deployed)
		}
		return a.Version < b.Version
	})
	for name := range st.manifests {
		if _, kept := st.release(name); !kept {
			delete(st.manifests, name)
		}
	}
	return st
}

// unixTime reads find's %T@ ("1700000000.123456789").
func unixTime(s string) time.Time {
	secs, frac, _ := strings.Cut(s, ".")
	sec, err := strconv.ParseInt(secs, 10, 64)
	if err != nil {
		return time.Time{}
	}
	frac = (frac + "000000000")[:9]
	nsec, _ := strconv.ParseInt(frac, 10, 64)
	return time.Unix(sec, nsec)
}

// release returns the kept release named version, or false.
func (s HostState) release(version string) (KeptRelease, bool) {
	for _, r := range s.Releases {
		if r.Version == version {
			return r, true
		}
	}
	return KeptRelease{}, false
}

// heldSession is the session of a probe that, once it answered, waits on the host for one more
// script: the stop, switch and start that follow go over it, without a new session (and a new
// shell) on the host. It is used at most once; Close ends it when it was not.
type heldSession struct {
	target  Target
	session *ssh.Session
	stdin   io.WriteCloser
	end     string // the line after the script the session is to run
	readers sync.WaitGroup

	mu      sync.Mutex
	stderr  string                    // the last stderr line of the probe
	forward func(stream, line string) // where the output after the probe goes, once Run began
	used    bool
}

// probeHeld reads the host's state like probe and keeps the session waiting for heldSession.Run.
// When it fails, no session is left.
func (c *Conn) probeHeld(ctx context.Context, l layout, prepare bool, version string) (HostState, *heldSession, error) {
	state, h, err := c.startHeld(ctx, probeScript(l, prepare, version))
	if err != nil {
		if prepare {
			return HostState{}, nil, fmt.Errorf("prepare %s on %s: %w", l.releases(), c.target.label(), err)
		}
		return HostState{}, nil, fmt.Errorf("read the releases under %s on %s: %w", l.root, c.target.label(), err)
	}
	return state, h, nil
}

func (c *Conn) startHeld(ctx context.Context, probe string) (HostState, *heldSession, error) {
	session, err := c.client.NewSession()
	if err != nil {
		return HostState{}, nil, fmt.Errorf("open a session: %w", err)
	}
	stdin, stdout, stderr, err := sessionPipes(session)
	if err != nil {
		session.Close()
		return HostState{}, nil, err
	}
	h := &heldSession{target: c.target, session: session, stdin: stdin, end: newMarker("end")}
	answered := newMarker("probed")
	var out strings.Builder
	status := make(chan string, 1)
	probed := false
	route := func(stream, line string) {
		h.mu.Lock()
		defer h.mu.Unlock()
		switch {
		case h.forward != nil:
			h.forward(stream, line)
		case probed: // after the probe, before Run: nothing is printed there
		case stream == StreamStdout && strings.HasPrefix(line, answered+" "):
			status <- strings.TrimPrefix(line, answered+" ")
			probed = true
		case stream == StreamStdout:
			out.WriteString(line + "\n")
		case strings.TrimSpace(line) != "":
			h.stderr = line
		}
	}
	h.readers.Add(2)
	go func() { defer h.readers.Done(); streamLines(stdout, StreamStdout, route) }()
	go func() { defer h.readers.Done(); streamLines(stderr, StreamStderr, route) }()
	// The probe runs in a subshell (it exits early where there is nothing more to read); then
	// the shell reads the script it is to run next, up to the line h.end, and runs it; an
	// input that ends before says there is none.
	script := "(\n" + probe + "\n)\necho " + answered + ` $?
IFS= read -r next || exit 0
[ "$next" = run ] || exit 0
script=
while IFS= read -r line; do
  [ "$line" = ` + h.end + ` ] && break
  script="$script$line
"
done
eval "$script"`
	if err := session.Start(script); err != nil {
		session.Close()
		return HostState{}, nil, fmt.Errorf("start a command: %w", err)
	}
	readersDone := make(chan struct{})
	go func() { h.readers.Wait(); close(readersDone) }()
	select {
	case code := <-status:
		h.mu.Lock()
		why := h.stderr
		h.mu.Unlock()
		if code != "0" {
			h.Close()
			if why != "" {
				return HostState{}, nil, fmt.Errorf("exit status %s: %s", code, why)
			}
			return HostState{}, nil, fmt.Errorf("exit status %s", code)
		}
		h.mu.Lock()
		state := parseProbe(out.String())
		h.mu.Unlock()
		return state, h, nil
	case <-readersDone:
		err := exitError(c.target, session.Wait())
		session.Close()
		if err == nil {
			err = errors.New("the command ended without its answer")
		}
		return HostState{}, nil, err
	case <-ctx.Done():
		h.Close()
		return HostState{}, nil, fmt.Errorf("command on %s: %w", c.target.label(), ctx.Err())
	}
}

// Run runs cmd on the host as Conn.Run does (supervised, env exported first, output to out), in
// the held session.
func (h *heldSession) Run(ctx context.Context, cmd string, env map[string]string, out func(stream, line string)) error {
	prefix, err := exportPrefix(env)
	if err != nil {
		return err
	}
	h.mu.Lock()
	if h.used {
		h.mu.Unlock()
		return errors.New("the held session was used already")
	}
	h.used = true
	h.forward = serialized(out)
	h.mu.Unlock()
	defer h.session.Close()
	if _, err := io.WriteString(h.stdin, "run\n"+supervised(prefix+cmd)+"\n"+h.end+"\n"); err != nil {
		return fmt.Errorf("start a command on %s: %w", h.target.label(), err)
	}
	stop := context.AfterFunc(ctx, func() {
		h.stdin.Close() // the supervisor on the host kills the command when its stdin ends
		time.AfterFunc(3*time.Second, func() { h.session.Close() })
	})
	defer stop()
	h.readers.Wait()
	err = h.session.Wait()
	if ctx.Err() != nil {
		return fmt.Errorf("command on %s: %w", h.target.label(), ctx.Err())
	}
	return exitError(h.target, err)
}

// Close ends the session when Run did not use it; the shell waiting on the host exits. A nil
// h is none.
func (h *heldSession) Close() {
	if h == nil {
		return
	}
	h.mu.Lock()
	used := h.used
	h.used = true
	h.mu.Unlock()
	if !used {
		h.stdin.Close()
		h.session.Close()
	}
}

// probeState reads what the host holds into d.state. When the release is there already (a
// rollback, a redeploy), the probe's session is kept in d.held for the stop, switch and start:
// nothing is uploaded before them, so it does not count against the host's sessions meanwhile.
func (d *hostDeploy) probeState(ctx context.Context) error {
	state, held, err := d.conn.probeHeld(ctx, d.l, true, d.rel.Version)
	if err != nil {
		return err
	}
	d.state = state
	if kept, found := state.release(d.rel.Version); found && strings.EqualFold(kept.SHA256, d.rel.SHA256) {
		d.held = held
	} else {
		held.Close()
	}
	return nil
}
