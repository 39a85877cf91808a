package deploy_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"ferry/deploy"
	"ferry/deploy/sshtest"
	"ferry/store"
)

// A new version that changes a few files of a large tree sends only those files: the host
// assembles the release from what its kept release holds, and each file is what the artifact
// holds. A kept file changed on the host since is caught by the manifest check of the
// assembled release, and the release is then sent whole.
func TestANewVersionSendsOnlyTheFilesTheHostLacks(t *testing.T) {
	c := sshtest.Start(t, 1, sshtest.Options{})
	h := c.Hosts()[0]
	spec := testSpec(store.Strategy{})
	tree := makeTree(t, 200, 4<<20)
	v1 := packTree(t, tree, "v1")
	rollout(t, c, spec, v1, nil, deploy.HostSucceeded)
	assertServing(t, h, "v1")

	changed := filepath.Join("data", "03", "file-0003.bin")
	writeTreeFile(t, tree, changed, bytes.Repeat([]byte("v2"), 1000))
	v2 := packTree(t, tree, "v2")
	rec := newRecorder()
	res := rollout(t, c, spec, v2, rec, deploy.HostSucceeded)
	assertServing(t, h, "v2")
	if sent := res[0].BytesSent; sent <= 0 || sent > v2.Size/20 {
		t.Errorf("v2 sent %d bytes of %d, want some but at most 5%%", sent, v2.Size)
	}
	if log := rec.log("host-1"); !strings.Contains(log, "200 of 202 files of v2 were on the host already") {
		t.Errorf("the log does not say how many files were taken from the host:\n%s", log)
	}
	assertSameFiles(t, tree, h.Path("releases/v2"), changed, filepath.Join("data", "04", "file-0004.bin"), "bin/app", "VERSION")

	// Someone changes a file of the running release on the host; v3 would reuse it.
	kept := h.Path(filepath.Join("releases", "v2", "data", "05", "file-0005.bin"))
	if err := os.WriteFile(kept, bytes.Repeat([]byte("x"), 20000), 0o644); err != nil {
		t.Fatal(err)
	}
	writeTreeFile(t, tree, changed, bytes.Repeat([]byte("v3"), 1000))
	v3 := packTree(t, tree, "v3")
	rec = newRecorder()
	res = rollout(t, c, spec, v3, rec, deploy.HostSucceeded)
	assertServing(t, h, "v3")
	wantAssemblyRefused(t, rec, res[0], v3)
	assertSameFiles(t, tree, h.Path("releases/v3"), filepath.Join("data", "05", "file-0005.bin"), changed)
	if got := releaseEntries(t, h); strings.Join(got, " ") != "v1 v2 v3" {
		t.Errorf("releases %v, want v1 v2 v3 without temp files", got)
	}
}

func writeTreeFile(t *testing.T, tree, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(tree, name), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// assertSameFiles checks that each named file of release is the tree's.
func assertSameFiles(t *testing.T, tree, release string, names ...string) {
	t.Helper()
	for _, name := range names {
		want, err := os.ReadFile(filepath.Join(tree, name))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(release, name))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s in %s: %d bytes (%v), want the artifact's %d bytes", name, release, len(got), err, len(want))
		}
	}
}

// A version with new content everywhere is sent whole, and only one of the hosts that hold
// the same releases is asked which files it lacks: the others take its answer.
func TestNewContentIsSentWholeAfterOneHostWasAsked(t *testing.T) {
	c := sshtest.Start(t, 3, sshtest.Options{})
	spec := testSpec(store.Strategy{Kind: store.StrategyParallel})
	rollout(t, c, spec, packTree(t, makeTree(t, 50, 16<<20), "v1"), nil, allSucceed(3)...)
	v2 := packTree(t, makeTree(t, 50, 16<<20), "v2") // more new data than the shared 7 MB service
	v2.Files = deploy.NewFileIndex()
	rec := newRecorder()
	results := rollout(t, c, spec, v2, rec, allSucceed(3)...)
	asked, told := 0, 0
	for i, h := range c.Hosts() {
		assertServing(t, h, "v2")
		if results[i].BytesSent < v2.Size {
			t.Errorf("%s: sent %d bytes, want the whole artifact (%d)", h.Name, results[i].BytesSent, v2.Size)
		}
		log := rec.log(h.Name)
		switch {
		case strings.Contains(log, "the kept releases hold only"):
			asked++
		case strings.Contains(log, "another host holding the same releases found too few of the files of v2"):
			told++
		default:
			t.Errorf("%s: the log does not say why the artifact was sent whole:\n%s", h.Name, log)
		}
	}
	if asked != 1 || told != 2 {
		t.Errorf("%d hosts were asked and %d told, want 1 and 2", asked, told)
	}
}

// A new version deployed by a process that deployed the one before (deploy.Manifests, as the
// worker keeps them) is sent as its difference from the release the host keeps: changed,
// added, moved and removed files, without a hash of every file. The assembled release is the
// artifact's tree exactly. A kept file changed on the host, or a kept manifest changed, makes
// the release go whole.
func TestANewVersionIsSentAsItsDifferenceFromAKeptRelease(t *testing.T) {
	c := sshtest.Start(t, 1, sshtest.Options{})
	h := c.Hosts()[0]
	spec := testSpec(store.Strategy{})
	known := deploy.NewManifests()
	tree := makeTree(t, 200, 4<<20)
	v1 := packTree(t, tree, "v1")
	v1.Files = known.Index()
	rollout(t, c, spec, v1, nil, deploy.HostSucceeded)

	writeTreeFile(t, tree, filepath.Join("data", "03", "file-0003.bin"), bytes.Repeat([]byte("v2"), 1000))
	writeTreeFile(t, tree, filepath.Join("data", "new.bin"), []byte("a file v1 does not have\n"))
	moved, err := os.ReadFile(filepath.Join(tree, "data", "07", "file-0007.bin"))
	if err != nil {
		t.Fatal(err)
	}
	writeTreeFile(t, tree, filepath.Join("data", "moved.bin"), moved)
	for _, gone := range []string{"data/07/file-0007.bin", "data/11/file-0011.bin"} {
		if err := os.Remove(filepath.Join(tree, gone)); err != nil {
			t.Fatal(err)
		}
	}
	// Same content, other mode: a link would keep the old mode, so it is sent.
	if err := os.Chmod(filepath.Join(tree, "data", "12", "file-0012.bin"), 0o600); err != nil {
		t.Fatal(err)
	}
	v2 := packTree(t, tree, "v2")
	v2.Files = known.Index()
	rec := newRecorder()
	res := rollout(t, c, spec, v2, rec, deploy.HostSucceeded)
	assertServing(t, h, "v2")
	if sent := res[0].BytesSent; sent <= 0 || sent > 64<<10 {
		t.Errorf("v2 sent %d bytes, want the changed files and little more (at most 64 KiB)", sent)
	}
	if log := rec.log("host-1"); !strings.Contains(log, "198 of 202 files of v2 were on the host already (linked from release v1); sent the other 4") {
		t.Errorf("the log does not say how many files were taken from v1:\n%s", log)
	}
	assertSameTree(t, tree, h.Path("releases/v2"))

	kept := h.Path(filepath.Join("releases", "v2", "data", "05", "file-0005.bin"))
	if err := os.WriteFile(kept, bytes.Repeat([]byte("x"), 20000), 0o644); err != nil {
		t.Fatal(err)
	}
	writeTreeFile(t, tree, "VERSION", []byte("v3\n"))
	v3 := packTree(t, tree, "v3")
	v3.Files = known.Index()
	rec = newRecorder()
	res = rollout(t, c, spec, v3, rec, deploy.HostSucceeded)
	assertServing(t, h, "v3")
	wantAssemblyRefused(t, rec, res[0], v3)
	assertSameTree(t, tree, h.Path("releases/v3"))

	manifest, err := os.OpenFile(h.Path("releases/.v3.files"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	manifest.WriteString(strings.Repeat("0", 64) + " 644 data/extra.bin\n")
	manifest.Close()
	v4 := packTree(t, tree, "v4")
	v4.Files = known.Index()
	rec = newRecorder()
	res = rollout(t, c, spec, v4, rec, deploy.HostSucceeded)
	assertServing(t, h, "v4")
	if log := rec.log("host-1"); !strings.Contains(log, "is not the one ferry recorded") || !strings.Contains(log, "sending the whole artifact") {
		t.Errorf("the log does not say the kept manifest changed and the artifact was sent whole:\n%s", log)
	}
	assertSameTree(t, tree, h.Path("releases/v4"))

	// New content everywhere (more than the shared 7 MB service): the edits would send most
	// of it, so the artifact goes whole.
	tree = makeTree(t, 50, 16<<20)
	v5 := packTree(t, tree, "v5")
	v5.Files = known.Index()
	rec = newRecorder()
	res = rollout(t, c, spec, v5, rec, deploy.HostSucceeded)
	assertServing(t, h, "v5")
	if log := rec.log("host-1"); !strings.Contains(log, " holds only ") || !strings.Contains(log, "sending the whole artifact") {
		t.Errorf("the log does not say the kept release holds too little and the artifact was sent whole:\n%s", log)
	}
	if res[0].BytesSent != v5.Size {
		t.Errorf("v5 sent %d bytes, want the whole artifact (%d) and nothing before it", res[0].BytesSent, v5.Size)
	}
	assertSameTree(t, tree, h.Path("releases/v5"))
	if got := releaseEntries(t, h); strings.Join(got, " ") != "v3 v4 v5" {
		t.Errorf("releases %v, want v3 v4 v5 without temp files", got)
	}
}

// assertSameTree checks that release holds the tree's regular files, with their content and
// mode, and no other (but what the running service writes under run/).
func assertSameTree(t *testing.T, tree, release string) {
	t.Helper()
	want := map[string]bool{}
	filepath.WalkDir(tree, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		name, _ := filepath.Rel(tree, p)
		want[name] = true
		wantInfo, _ := d.Info()
		gotInfo, err := os.Stat(filepath.Join(release, name))
		if err != nil || gotInfo.Mode() != wantInfo.Mode() {
			t.Errorf("%s in %s: %v (%v), want mode %v", name, release, gotInfo, err, wantInfo.Mode())
		}
		assertSameFiles(t, tree, release, name)
		return nil
	})
	filepath.WalkDir(release, func(p string, d os.DirEntry, err error) error {
		name, _ := filepath.Rel(release, p)
		if err == nil && d.Type().IsRegular() && !want[name] && !strings.HasPrefix(name, "run/") {
			t.Errorf("%s holds %s, which the artifact does not", release, name)
		}
		return err
	})
}

// A version this process read before is not read again for the next host (the staging hosts,
// then production's): its file index is taken from what was kept. That skips no check: when
// the artifact on ferry's disk changed since, the release assembled from it does not match the
// manifest, the whole artifact sent then does not match its sha256, and the host keeps
// running what it ran.
func TestAVersionReadBeforeIsNotReadAgainAndStillChecked(t *testing.T) {
	c := sshtest.Start(t, 2, sshtest.Options{})
	hosts, targets := c.Hosts(), targetsOf(c)
	spec := testSpec(store.Strategy{})
	known := deploy.NewManifests()
	tree := makeTree(t, 100, 2<<20)
	v1 := packTree(t, tree, "v1")
	v1.Files = known.Index()
	for _, res := range deploy.Rollout(context.Background(), targets, deploy.RolloutOptions{Spec: spec, Release: v1}) {
		if res.Status != deploy.HostSucceeded {
			t.Fatalf("v1 on %s: %s: %s", res.Host, res.Status, res.Reason)
		}
	}

	changed := bytes.Repeat([]byte("v2"), 1000)
	writeTreeFile(t, tree, filepath.Join("data", "03", "file-0003.bin"), changed)
	v2 := packTree(t, tree, "v2")
	deployTo := func(target deploy.Target) (deploy.HostResult, *recorder) {
		v2.Files = known.Index()
		rec := newRecorder()
		res := deploy.Rollout(context.Background(), []deploy.Target{target}, deploy.RolloutOptions{Spec: spec, Release: v2, Events: rec.events})
		return res[0], rec
	}
	if res, _ := deployTo(targets[0]); res.Status != deploy.HostSucceeded {
		t.Fatalf("v2 on host-1: %s: %s", res.Status, res.Reason)
	}
	assertServing(t, hosts[0], "v2")

	// The changed file's bytes in v2's artifact, altered on ferry's disk after host-1 got it.
	data, err := os.ReadFile(v2.Artifact)
	if err != nil {
		t.Fatal(err)
	}
	at := bytes.Index(data, changed)
	if at < 0 {
		t.Fatal("the changed file is not in v2's artifact")
	}
	copy(data[at:], bytes.Repeat([]byte("zz"), 1000))
	if err := os.WriteFile(v2.Artifact, data, 0o644); err != nil {
		t.Fatal(err)
	}
	res, rec := deployTo(targets[1])
	if res.Status != deploy.HostFailed || !strings.Contains(res.Reason, "sha256 mismatch") {
		t.Errorf("v2 from a changed artifact on host-2: %s: %s, want failed with a sha256 mismatch", res.Status, res.Reason)
	}
	// The index kept from host-1's rollout was used (a new read of the changed artifact would
	// have failed before any assembling): host-2 assembled v2 from v1, and refused it.
	if log := rec.log("host-2"); !strings.Contains(log, "does not match its manifest") {
		t.Errorf("host-2's log does not say the assembled release was refused:\n%s", log)
	}
	assertServing(t, hosts[1], "v1")
	if _, err := os.Stat(hosts[1].Path("releases/v2")); !os.IsNotExist(err) {
		t.Errorf("host-2 keeps a release v2 (%v), want none", err)
	}
}

// Files linked from a kept release are not read again when their inode, size and modification
// time are those recorded when that release was checked (.<version>.stat), but any write to
// one is caught: a kept file rewritten in place with as many bytes makes the assembled release
// fail its check, and the release is sent whole. A kept release without that record (put there
// by an older ferry) has every file linked from it read and checked, even one whose change
// kept its size and modification time.
func TestAKeptFileChangedInPlaceIsCaughtWhenLinked(t *testing.T) {
	c := sshtest.Start(t, 1, sshtest.Options{})
	h := c.Hosts()[0]
	spec := testSpec(store.Strategy{})
	tree := makeTree(t, 100, 2<<20)
	v1 := packTree(t, tree, "v1")
	rollout(t, c, spec, v1, nil, deploy.HostSucceeded)
	if _, err := os.Stat(h.Path("releases/.v1.stat")); err != nil {
		t.Fatalf("v1 has no record of its files' stat: %v", err)
	}

	rewrite := func(name string, keepTime bool) {
		t.Helper()
		info, err := os.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		for i := range data {
			data[i] ^= 0xff
		}
		if err := os.WriteFile(name, data, info.Mode()); err != nil {
			t.Fatal(err)
		}
		if keepTime {
			if err := os.Chtimes(name, info.ModTime(), info.ModTime()); err != nil {
				t.Fatal(err)
			}
		}
	}
	deployAndCheck := func(version string, files *deploy.FileIndex) {
		t.Helper()
		writeTreeFile(t, tree, "VERSION", []byte(version+"\n"))
		rel := packTree(t, tree, version)
		rel.Files = files
		rec := newRecorder()
		res := rollout(t, c, spec, rel, rec, deploy.HostSucceeded)
		wantAssemblyRefused(t, rec, res[0], rel)
		assertServing(t, h, version)
		assertSameTree(t, tree, h.Path("releases/"+version))
	}

	// Same size, a new modification time: the record no longer matches, the file is read.
	// (v1 was not read by this process: the host is asked which files it holds.)
	known := deploy.NewManifests()
	rewrite(h.Path("releases/v1/data/04/file-0004.bin"), false)
	deployAndCheck("v2", known.Index())

	// No record: every linked file is read, and a change that kept size and time is caught.
	if err := os.Remove(h.Path("releases/.v2.stat")); err != nil {
		t.Fatal(err)
	}
	// (v2 was read by this process: the host is sent v3's difference from it.)
	rewrite(h.Path("releases/v2/data/06/file-0006.bin"), true)
	deployAndCheck("v3", known.Index())
}

// wantAssemblyRefused fails unless the host's log says the release assembled from its kept
// files did not match the manifest and the whole artifact was sent, and it was.
func wantAssemblyRefused(t *testing.T, rec *recorder, res deploy.HostResult, rel deploy.Release) {
	t.Helper()
	if log := rec.log(res.Host); !strings.Contains(log, "does not match its manifest") || !strings.Contains(log, "sending the whole artifact") {
		t.Errorf("%s: the log does not say the assembled release was refused and the artifact sent whole:\n%s", rel.Version, log)
	}
	if res.BytesSent < rel.Size {
		t.Errorf("%s sent %d bytes, want the whole artifact (%d) after the refused assembly", rel.Version, res.BytesSent, rel.Size)
	}
}
