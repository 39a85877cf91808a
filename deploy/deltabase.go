package deploy

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"path"
	"strings"

	"ferry/store"
)

// baseEdits is how a release differs from one the host keeps and this process read before:
// what the host is sent instead of a plan of every file (see editFiles for the format).
type baseEdits struct {
	base        string // the kept release's version
	manifestSHA string // the sha256 of its manifest, as the host keeps it
	edits       []byte // gzipped
	missing     map[string]bool
	need        int64 // bytes of the files in missing
}

// fromKnownBase picks, among the releases the host keeps with a manifest and whose index this
// process holds, the one that leaves the fewest bytes to send, and returns the edits from it.
// ok is false when there is none.
func (idx *fileIndex) fromKnownBase(st HostState, version string) (best baseEdits, ok bool) {
	if idx.known == nil {
		return baseEdits{}, false
	}
	for _, r := range st.Releases {
		if !st.manifests[r.Version] || r.Version == version {
			continue
		}
		base := idx.known.lookup(r.SHA256)
		if base == nil || base.manifestSHA == "" || len(base.files) == 0 {
			continue
		}
		edits, missing, need := diffFiles(base.files, idx.files)
		if !ok || need < best.need {
			best = baseEdits{base: r.Version, manifestSHA: base.manifestSHA, edits: gzipped(edits), missing: missing, need: need}
			ok = true
		}
	}
	return best, ok
}

// diffFiles returns the edits that make files out of base (see editFiles), the paths of the
// files no file of base has the content and mode of, and their bytes.
func diffFiles(base, files []indexedFile) (string, map[string]bool, int64) {
	type content struct {
		sha  string
		mode int64
	}
	byPath := make(map[string]int, len(base))
	byContent := make(map[content]int, len(base))
	for j, f := range base {
		byPath[f.path] = j
		if _, ok := byContent[content{f.sha, f.mode}]; !ok {
			byContent[content{f.sha, f.mode}] = j
		}
	}
	var b strings.Builder
	missing := map[string]bool{}
	var need int64
	cur, run := 0, 0
	flush := func() {
		if run > 0 {
			fmt.Fprintf(&b, "c %d\n", run)
			run = 0
		}
	}
	for _, f := range files {
		if j, ok := byPath[f.path]; ok && j >= cur && base[j].sha == f.sha && base[j].mode == f.mode {
			if j > cur {
				flush()
				fmt.Fprintf(&b, "s %d\n", j-cur)
			}
			run++
			cur = j + 1
			continue
		}
		flush()
		if j, ok := byContent[content{f.sha, f.mode}]; ok {
			fmt.Fprintf(&b, "l %d %s\n", j+1, f.path)
			continue
		}
		fmt.Fprintf(&b, "n %o %s\n", f.mode, f.path)
		missing[f.path] = true
		need += f.size
	}
	flush()
	return b.String(), missing, need
}

// sendEdits puts rel on the host as sendDelta does, from one kept release the host holds and
// this process read before: in one command, it sends the edits that make the release's list of
// files out of that release's manifest, then an archive of the files that release lacks. The
// assembled release is checked exactly as sendDelta's is.
func (c *Conn) sendEdits(ctx context.Context, l layout, rel Release, idx *fileIndex, from baseEdits, progress func(sent, total int64),
	say func(string), decided func(worth bool)) (int64, error) {
	worth := float64(from.need) <= deltaWorthIt*float64(idx.size)
	decided(worth)
	if !worth {
		return 0, &errNoDelta{fmt.Sprintf("the kept release %s holds only %s of the %s of files of %s", from.base, byteCount(idx.size-from.need), byteCount(idx.size), rel.Version)}
	}
	archive, done := deltaArchive(rel, from.missing, from.need)
	defer done()
	counter := &progressReader{ctx: ctx, r: io.MultiReader(bytes.NewReader(from.edits), archive), total: from.need, report: progress}
	n := nonce()
	out, err := c.Feed(ctx, assembleScript(l, rel, n, idx.digest, editFiles(l, rel.Version, n, from)), counter)
	if err == nil && say != nil {
		say(fmt.Sprintf("%d of %d files of %s were on the host already (linked from release %s); sent the other %d (%s of files)",
			len(idx.files)-len(from.missing), len(idx.files), rel.Version, from.base, len(from.missing), byteCount(from.need)))
	}
	return c.assembled(ctx, rel, counter.sent.Load(), out, err)
}

// editFiles is assembleScript's prepare for sendEdits. It checks that the host's manifest of
// the base release is the one ferry read, takes the gzipped edits from stdin (exactly their
// bytes) and applies them to that manifest, in order:
//
//	c N            the next N files of the base, as they are
//	s N            skip the next N files of the base
//	l J <path>     the base's J-th file (content and mode) at path
//	n <mode> <path> a file of the archive that follows
//
// Every file but those of the archive is linked from the base release.
func editFiles(l layout, version, n string, from baseEdits) string {
	edits := path.Join(l.releases(), "."+version+".ferry-"+n+".edits.tmp")
	return fmt.Sprintf(`rm -rf -- %[1]s
manifest=%[2]s
edits=%[3]s
got=$($hasher < "$manifest" | cut -d ' ' -f 1)
[ "$got" = %[4]s ] || { echo "$manifest has sha256 $got"; exit %[5]d; }
dd bs=%[6]d count=1 iflag=fullblock status=none | gzip -dc > "$edits" &&
  base=%[7]s awk -v files="$files" -v links="$links" '
function take(j, at,   f, p) {
  if (j < 1 || j > last) exit 2
  split(line[j], f, " "); p = line[j]; sub(/^[^ ]+ [^ ]+ /, "", p)
  if (at == "") at = p
  print f[1] " " f[2] " " at > files
  print ENVIRON["base"] "/" p "\t" at > links
}
NR == FNR { line[FNR] = $0; last = FNR; next }
$1 == "c" { for (i = 0; i < $2; i++) take(++cur, ""); next }
$1 == "s" { cur += $2; next }
$1 == "l" { p = $0; sub(/^l [0-9]+ /, "", p); take($2 + 0, p); next }
$1 == "n" { p = $0; sub(/^n [0-7]+ /, "", p); print "- " $2 " " p > files; next }
{ exit 2 }
' "$manifest" "$edits" && [ -f "$files" ] && touch -- "$links" || { echo "the edits of the kept release's manifest failed" >&2; rm -f -- "$edits"; clean; exit %[8]d; }
rm -f -- "$edits"`, l.tempsOf(version), store.ShellQuote(l.filesFile(from.base)), store.ShellQuote(edits), store.ShellQuote(from.manifestSHA),
		exitBaseChanged, len(from.edits), store.ShellQuote(from.base), exitUnpack)
}
