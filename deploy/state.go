package deploy

import (
	"context"
	"fmt"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"ferry/store"
)

// probeScript prints, in one round trip, what a host holds under a deploy path: where current
// points, every release directory with its modification time, and every recorded sha256 (the
// file beside the release, and the legacy one inside it). Each line is "<kind> <field> <name>"
// with the name last, so a name with spaces stays whole. With prepare, it first creates the
// releases and shared/logs directories and removes the temp files earlier uploads of version
// left behind.
func probeScript(l layout, prepare bool, version string) string {
	var b strings.Builder
	if prepare { // test builtins first: no mkdir or rm process when there is nothing to do
		dirs := store.ShellQuote(l.releases()) + " " + store.ShellQuote(l.shared()+"/logs")
		fmt.Fprintf(&b, "for d in %s; do [ -d \"$d\" ] || { mkdir -p -- %s || exit 1; break; }; done\n", dirs, dirs)
		fmt.Fprintf(&b, "for f in %[1]s; do if [ -e \"$f\" ] || [ -L \"$f\" ]; then rm -rf -- %[1]s || exit 1; break; fi; done\n", l.tempsOf(version))
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
