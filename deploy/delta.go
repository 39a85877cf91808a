package deploy

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"ferry/store"
)

// Exit statuses of assembleScript besides exitSHAMismatch and exitUnpack.
const (
	exitLink        = 67
	exitBaseChanged = 68
)

// deltaWorthIt is the share of the artifact's file bytes above which the files a host lacks
// are sent as the whole artifact instead: past it the saving is small and the whole artifact
// needs no assembling.
const deltaWorthIt = 0.5

// errNoDelta says why a release is not assembled from the files the host holds.
type errNoDelta struct{ reason string }

func (e *errNoDelta) Error() string { return e.reason }

// sendDelta puts rel on the host from the files its kept releases already hold (by sha256 and
// mode, read from their manifests) and an archive of only the files none of them has. The
// release is assembled in a temp directory, every file of it checked against the release's
// manifest with sha256sum, and only then renamed into place, with the artifact's sha256 and
// the manifest recorded beside it. It returns the bytes of the archive sent; an *errNoDelta
// when the release should be sent whole instead (nothing was put in place then).
//
// When this process read one of the host's kept releases before (Manifests), the host is
// sent only how the release differs from it, with the archive, in one command (sendEdits);
// otherwise it is sent a plan of every file first and answers which files it lacks.
//
// decided is told, once it is known which files the host lacks, whether that pays.
func (c *Conn) sendDelta(ctx context.Context, l layout, st HostState, rel Release, idx *fileIndex, progress func(sent, total int64),
	say func(string), decided func(worth bool)) (int64, error) {
	if from, ok := idx.fromKnownBase(st, rel.Version); ok {
		return c.sendEdits(ctx, l, rel, idx, from, progress, say, decided)
	}
	n := nonce()
	out, err := c.Feed(ctx, planScript(l, st, rel.Version, n), bytes.NewReader(idx.plan))
	if err != nil {
		if ctx.Err() != nil {
			return 0, err
		}
		return 0, &errNoDelta{fmt.Sprintf("could not match the files of %s with the kept releases on %s: %v", rel.Version, c.target.label(), err)}
	}
	missing := map[string]bool{}
	for _, line := range strings.Split(out, "\n") {
		if line != "" {
			missing[line] = true
		}
	}
	var need int64
	for _, f := range idx.files {
		if missing[f.path] {
			need += f.size
		}
	}
	worth := float64(need) <= deltaWorthIt*float64(idx.size)
	decided(worth)
	if !worth {
		return 0, &errNoDelta{fmt.Sprintf("the kept releases hold only %s of the %s of files of %s", byteCount(idx.size-need), byteCount(idx.size), rel.Version)}
	}
	archive, done := deltaArchive(rel, missing, need)
	defer done()
	counter := &progressReader{ctx: ctx, r: archive, total: need, report: progress}
	out, err = c.Feed(ctx, assembleScript(l, rel, n, idx.digest, planPrepared()), counter)
	if err == nil && say != nil {
		say(fmt.Sprintf("%d of %d files of %s were on the host already (linked from kept releases); sent the other %d (%s of files)",
			len(idx.files)-len(missing), len(idx.files), rel.Version, len(missing), byteCount(need)))
	}
	return c.assembled(ctx, rel, counter.sent.Load(), out, err)
}

// assembled says how assembling rel on the host went, from what assembleScript printed and its error.
func (c *Conn) assembled(ctx context.Context, rel Release, sent int64, out string, err error) (int64, error) {
	switch {
	case err == nil:
		return sent, nil
	case ctx.Err() != nil:
		return sent, fmt.Errorf("canceled while sending the new files of %s to %s: %w", rel.Version, c.target.label(), ctx.Err())
	case strings.Contains(err.Error(), fmt.Sprintf("exit status %d", exitSHAMismatch)):
		return sent, &errNoDelta{fmt.Sprintf("release %s assembled on %s from kept files does not match its manifest (%s)", rel.Version, c.target.label(), firstLine(out))}
	case strings.Contains(err.Error(), fmt.Sprintf("exit status %d", exitBaseChanged)):
		return sent, &errNoDelta{fmt.Sprintf("the manifest of the kept release on %s is not the one ferry recorded (%s)", c.target.label(), firstLine(out))}
	}
	return sent, &errNoDelta{fmt.Sprintf("assemble release %s on %s from kept files: %v", rel.Version, c.target.label(), err)}
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return line
}

// deltaArchive streams a tar of the artifact's members but for the regular files the host
// has (those not in missing): directories and symlinks always, so the tree is whole. done
// stops the stream and waits for it.
func deltaArchive(rel Release, missing map[string]bool, need int64) (io.Reader, func()) {
	pr, pw := io.Pipe()
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		// Few large writes: each write to the pipe becomes an SSH packet of its own, and
		// gzip writes its compressed blocks a few hundred bytes at a time.
		buf := bufio.NewWriterSize(pw, 64<<10)
		err := writeDelta(rel, missing, deltaLevel(need), buf)
		if err == nil {
			err = buf.Flush()
		}
		pw.CloseWithError(err)
	}()
	return pr, func() { pr.Close(); <-finished }
}

// deltaLevel is the gzip level of an archive of need bytes of files. Tar's header and padding
// (about 1 KB a file) sit between the files' data; when the data does not shrink, gzip's
// fastest level stores each 64 KiB block as it is, headers and all, while the next level finds
// the zeros (a 1 MB archive of 20 files of random data: 17 KB over its data at level 1, 3 KB
// at level 2) at four times the CPU (30 ms a MB here). That pays for a small archive, sent
// where bytes are what counts, not for a large one.
func deltaLevel(need int64) int {
	if need <= tightDelta {
		return 2
	}
	return gzip.BestSpeed
}

// tightDelta is the largest archive packed at gzip level 2 (see deltaLevel).
const tightDelta = 4 << 20

func writeDelta(rel Release, missing map[string]bool, level int, w io.Writer) error {
	f, err := os.Open(rel.Artifact)
	if err != nil {
		return fmt.Errorf("open the artifact of %s: %w", rel.Version, err)
	}
	defer f.Close()
	r, err := archiveReader(f)
	if err != nil {
		return err
	}
	// Compressed even when the files are not: tar's headers, padding and the directories
	// (sent whole, so the tree is) are mostly zeros (see deltaLevel).
	gz, _ := gzip.NewWriterLevel(w, level)
	tr, tw := tar.NewReader(r), tar.NewWriter(gz)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			if err := tw.Close(); err != nil {
				return err
			}
			return gz.Close()
		}
		if err != nil {
			return fmt.Errorf("read the artifact of %s: %w", rel.Version, err)
		}
		if hdr.Typeflag == tar.TypeReg && !missing[hdr.Name] {
			continue
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if hdr.Typeflag == tar.TypeReg {
			if _, err := io.Copy(tw, tr); err != nil {
				return err
			}
		}
	}
}

// planScript reads the new release's plan (fileIndex.plan, gzipped) on stdin, keeps it in a
// temp file, and prints the path of every file that no kept release (with a manifest) holds
// with the same sha256 (its first planHex digits) and mode; for the others it writes "<kept release>/<its path>\t<path>" to the links file.
func planScript(l layout, st HostState, version, n string) string {
	var kept []string
	for _, r := range st.Releases {
		if st.manifests[r.Version] && r.Version != version {
			kept = append(kept, store.ShellQuote("."+r.Version+".files"))
		}
	}
	return fmt.Sprintf(`cd -- %[1]s || exit 1
rm -rf -- %[2]s
files=%[3]s
gzip -dc > "$files" && : > %[4]s || exit 1
awk -v new="$files" -v links=%[4]s '
{ key = substr($1, 1, %[6]d) " " $2; p = $0; sub(/^[^ ]+ [^ ]+ /, "", p) }
FILENAME != new {
  if (!(key in src)) { r = substr(FILENAME, 2); sub(/\.files$/, "", r); src[key] = r "/" p }
  next
}
key in src { print src[key] "\t" p > links; next }
{ print p }
' %[5]s "$files" || exit 1
`, store.ShellQuote(l.releases()), l.tempsOf(version)+" "+store.ShellQuote(l.linksTemp(version, n)), store.ShellQuote(l.filesTemp(version, n)),
		store.ShellQuote(l.linksTemp(version, n)), strings.Join(kept, " "), planHex)
}

// linkFiles is a Perl program (Perl is part of every Debian and most other systems) that
// hard-links each "<source>\t<destination>" line of its stdin, creating the destination's
// directories: one process for thousands of links.
const linkFiles = `my $root = shift;
while (my $line = <STDIN>) {
  chomp $line;
  my ($src, $dst) = split /\t/, $line, 2;
  $dst = "$root/$dst";
  my @dirs; my $p = $dst;
  while ($p =~ s{/[^/]+$}{} && $p ne $root && !-d $p) { unshift @dirs, $p }
  for my $d (@dirs) { mkdir $d or -d $d or die "mkdir $d: $!\n" }
  link $src, $dst or die "link $src to $dst: $!\n";
}`

// assembleScript unpacks the archive of new files on stdin into a temp directory, links the
// files the kept releases have into it, checks every file against the manifest, and only then
// records the artifact's sha256, the manifest and its files' stat beside the release and
// renames it into place. A linked file whose inode, size and modification time are still those
// its kept release recorded when it was checked (layout.statFile) is taken with the sha256 of
// that release's manifest instead of being read again; every other file is read and hashed.
// The check: the sha256 of every file the manifest names, in its order, printed as sha256sum
// prints them, must be exactly what it prints for the artifact's files (the sha256 of that output is the index's digest);
// the manifest kept beside the release is made of those sha256s.
//
// prepare is shell text that leaves in "$files" the release's files, "<sha256 or -> <mode>
// <path>" in the artifact's order, and in "$links" the files to link, before the archive is
// read from stdin (planPrepared, editFiles).
func assembleScript(l layout, rel Release, n, digest, prepare string) string {
	return fmt.Sprintf(hasher+`cd -- %[1]s || exit 1
tmp=%[2]s
files=%[3]s
links=%[4]s
clean() { rm -rf -- "$tmp" "$files" "$links"; }
%[15]s
mkdir -- "$tmp" || { clean; exit %[7]d; }
if ! tar -xzf - --no-same-owner -C "$tmp"; then
  df -Pk -- . | awk 'NR == 2 { print "free-kib " $4 }'
  clean; exit %[7]d
fi
perl -e %[5]s "$tmp" < "$links" || { clean; exit %[8]d; }
sums=%[14]s
now=${sums%%.tmp}.now.tmp tmpl=${sums%%.tmp}.tmpl.tmp hashed=${sums%%.tmp}.hashed.tmp
clean_sums() { rm -f -- "$sums" "$now" "$tmpl" "$hashed"; }
(cd -- "$tmp" && %[16]s) > "$now" 2>/dev/null || : > "$now"
set --
for f in .*.stat; do [ -f "$f" ] && [ -f "${f%%.stat}.files" ] && set -- "$@" "$f" "${f%%.stat}.files"; done
awk -v now="$now" -v links="$links" -v tmpl="$tmpl" '
FILENAME == now { split($0, a, "\t"); st[a[1]] = a[2] " " a[3] " " a[4]; next }
FILENAME == links { split($0, a, "\t"); src[a[2]] = a[1]; next }
FILENAME ~ /\.stat$/ { r = substr(FILENAME, 2); sub(/\.stat$/, "", r); split($0, a, "\t"); rec[r "/" a[1]] = a[2] " " a[3] " " a[4]; next }
FILENAME ~ /\.files$/ { r = substr(FILENAME, 2); sub(/\.files$/, "", r); p = $0; sub(/^[^ ]+ [^ ]+ /, "", p); sha[r "/" p] = $1; next }
{ p = $0; sub(/^[^ ]+ [^ ]+ /, "", p); s = src[p]
  if (s != "" && (s in rec) && (s in sha) && (p in st) && rec[s] == st[p]) { print "=" sha[s] > tmpl; next }
  print "?" > tmpl; print p }
' "$now" "$links" "$@" "$files" | tr '\n' '\0' |
  (cd -- "$tmp" && xargs -0 -r $hasher --) | cut -d ' ' -f 1 > "$hashed" || { clean_sums; clean; exit %[6]d; }
awk -v hashed="$hashed" 'FILENAME == hashed { h[++n] = $1; next } /^=/ { print substr($0, 2); next } { print h[++i] } END { if (i != n) exit 1 }' \
  "$hashed" "$tmpl" > "$sums" || { echo "some files are missing"; clean_sums; clean; exit %[6]d; }
rm -f -- "$now" "$tmpl" "$hashed"
[ "$(wc -l < "$sums")" -eq "$(wc -l < "$files")" ] || { echo "some files are missing"; clean_sums; clean; exit %[6]d; }
got=$(awk 'NR == FNR { h[FNR] = $1; next } { p = $0; sub(/^[^ ]+ [^ ]+ /, "", p); print h[FNR] "  " p }' "$sums" "$files" | $hasher | cut -d ' ' -f 1)
if [ "$got" != %[13]s ]; then echo "the sha256 of its files is not the release's"; rm -f -- "$sums"; clean; exit %[6]d; fi
awk 'NR == FNR { h[FNR] = $1; next } { p = $0; sub(/^[^ ]+ [^ ]+ /, "", p); print h[FNR] " " $2 " " p }' "$sums" "$files" > "$sums.files" &&
  mv -- "$sums.files" "$files" && rm -f -- "$sums" || { rm -f -- "$sums" "$sums.files"; clean; exit %[7]d; }
%[17]s
printf '%%s\n' %[9]s > %[10]s && mv -- "$files" %[11]s && mv -T -- "$tmp" %[12]s || { clean; exit %[7]d; }
rm -f -- "$links"
`, store.ShellQuote(l.releases()), store.ShellQuote(l.unpacking(rel.Version, n)), store.ShellQuote(l.filesTemp(rel.Version, n)),
		store.ShellQuote(l.linksTemp(rel.Version, n)), store.ShellQuote(linkFiles), exitSHAMismatch, exitUnpack, exitLink,
		store.ShellQuote(strings.ToLower(rel.SHA256)), store.ShellQuote(l.shaFile(rel.Version)), store.ShellQuote(l.filesFile(rel.Version)),
		store.ShellQuote(l.release(rel.Version)), store.ShellQuote(digest), store.ShellQuote(l.sumsTemp(rel.Version, n)), prepare,
		statList, statRecord(`"$tmp"`, store.ShellQuote(l.statTemp(rel.Version, n)), store.ShellQuote(l.statFile(rel.Version))))
}

// planPrepared is assembleScript's prepare after planScript, which left the files and links.
func planPrepared() string {
	return fmt.Sprintf(`[ -f "$files" ] && [ -f "$links" ] || { echo "the plan of this upload is gone" >&2; clean; exit %d; }`, exitUnpack)
}
