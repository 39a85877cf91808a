package deploy_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"ferry/deploy"
	"ferry/deploy/sshtest"
	"ferry/store"
)

// TestPrunedReleasesAreRemovedAfterTheRollout: beyond keep_releases the oldest releases go,
// never the current or previous one. The rollout's result and the host's state say so at once;
// the files (each release's directory and record files) are gone shortly after, with no trash
// left.
func TestPrunedReleasesAreRemovedAfterTheRollout(t *testing.T) {
	c := sshtest.Start(t, 2, sshtest.Options{})
	spec := testSpec(store.Strategy{Kind: store.StrategyParallel})
	spec.KeepReleases = 1
	rels := map[string]deploy.Release{}
	for _, v := range []string{"v1", "v2", "v3", "v4"} {
		rels[v] = makeRelease(t, v, artifact{})
	}
	steps := []struct {
		deploy  string
		kept    []string
		removed string // the release the log says is removed, if any
	}{
		{"v1", []string{"v1"}, ""},
		{"v2", []string{"v2", "v1"}, ""},   // v1 is previous: kept beyond keep_releases
		{"v3", []string{"v3", "v2"}, "v1"}, // v1 is neither
		{"v2", []string{"v2", "v3"}, ""},   // back to v2: v3 is previous now
		{"v4", []string{"v4", "v2"}, "v3"},
	}
	for _, step := range steps {
		rec := newRecorder()
		results := rollout(t, c, spec, rels[step.deploy], rec, allSucceed(2)...)
		for i, h := range c.Hosts() {
			if !slices.Equal(results[i].Kept, step.kept) {
				t.Errorf("after %s, %s keeps %v, want %v", step.deploy, h.Name, results[i].Kept, step.kept)
			}
			// At once, before the removal ended: the host holds only the kept releases.
			state, err := dial(t, targetOf(c, h), deploy.DialOptions{}).State(context.Background(), spec.Path)
			if err != nil {
				t.Fatal(err)
			}
			var versions []string
			for _, r := range state.Releases {
				versions = append(versions, r.Version)
				if r.SHA256 != rels[r.Version].SHA256 {
					t.Errorf("after %s, %s: release %s has sha256 %q, want %s", step.deploy, h.Name, r.Version, r.SHA256, rels[r.Version].SHA256)
				}
			}
			if !slices.Equal(versions, step.kept) || state.Current != step.deploy {
				t.Errorf("after %s, %s holds %v with current %s, want %v", step.deploy, h.Name, versions, state.Current, step.kept)
			}
			log := rec.log(h.Name)
			if want := "removing old release " + step.removed + " (keeping 1)"; step.removed != "" && !strings.Contains(log, want) {
				t.Errorf("after %s, %s: the log does not say %q:\n%s", step.deploy, h.Name, want, log)
			}
			if step.removed == "" && strings.Contains(log, "removing old release") {
				t.Errorf("after %s, %s: nothing was to be removed, yet:\n%s", step.deploy, h.Name, log)
			}
			var want []string
			for _, v := range step.kept {
				want = append(want, v, "."+v+".sha256", "."+v+".files", "."+v+".stat")
			}
			slices.Sort(want)
			if got := settledReleaseFiles(t, h); !slices.Equal(got, want) {
				t.Errorf("after %s, %s: releases/ holds %v, want %v", step.deploy, h.Name, got, want)
			}
		}
	}
	for _, h := range c.Hosts() {
		assertServing(t, h, "v4")
	}
}

// TestTrashLeftOnAHostIsRemovedByTheNextDeployment: a removal that never ended (the host
// rebooted, or it was killed) leaves its trash directory; the next deployment removes it.
func TestTrashLeftOnAHostIsRemovedByTheNextDeployment(t *testing.T) {
	c := sshtest.Start(t, 1, sshtest.Options{})
	h := c.Hosts()[0]
	spec := testSpec(store.Strategy{})
	rollout(t, c, spec, makeRelease(t, "v1", artifact{}), nil, deploy.HostSucceeded)
	for _, trash := range []string{".ferry-trash-0badc0de", ".ferry-trash-deadbeef"} {
		dir := h.Path(filepath.Join("releases", trash, "v0", "data"))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"a.bin", "b.bin", "../.v0.sha256"} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte("left over\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	results := rollout(t, c, spec, makeRelease(t, "v2", artifact{}), nil, deploy.HostSucceeded)
	if !slices.Equal(results[0].Kept, []string{"v2", "v1"}) {
		t.Errorf("keeps %v, want [v2 v1]", results[0].Kept)
	}
	want := []string{".v1.files", ".v1.sha256", ".v1.stat", ".v2.files", ".v2.sha256", ".v2.stat", "v1", "v2"}
	if got := settledReleaseFiles(t, h); !slices.Equal(got, want) {
		t.Errorf("releases/ holds %v after the next deployment, want %v", got, want)
	}
	assertServing(t, h, "v2")
}

// TestTheRolloutDoesNotWaitForTheRemovalOfOldReleases: the removal of a pruned release is held
// on the host until the test lets it go. The rollout returns meanwhile, with the release out of
// the host's releases already; once let go, the removal ends although the deployment's SSH
// connection is long closed.
func TestTheRolloutDoesNotWaitForTheRemovalOfOldReleases(t *testing.T) {
	c := sshtest.Start(t, 1, sshtest.Options{})
	h := c.Hosts()[0]
	spec := testSpec(store.Strategy{})
	spec.KeepReleases = 1
	hold := h.Path("hold")
	remoteHold := store.ShellQuote(filepath.Join(h.DeployPath, "hold"))
	defer deploy.SetTrashRemover(`while [ -e ` + remoteHold + ` ]; do sleep 0.05; done; exec rm -rf -- "$@"`)()
	rollout(t, c, spec, makeRelease(t, "v1", artifact{}), nil, deploy.HostSucceeded)
	rollout(t, c, spec, makeRelease(t, "v2", artifact{}), nil, deploy.HostSucceeded)
	if err := os.WriteFile(hold, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan []deploy.HostResult, 1)
	go func() {
		done <- deploy.Rollout(context.Background(), targetsOf(c), deploy.RolloutOptions{Spec: spec, Release: makeRelease(t, "v3", artifact{})})
	}()
	var results []deploy.HostResult
	select {
	case results = <-done:
	case <-time.After(2 * time.Minute):
		os.Remove(hold)
		t.Fatal("the rollout waited for the removal of v1")
	}
	if results[0].Status != deploy.HostSucceeded || !slices.Equal(results[0].Kept, []string{"v3", "v2"}) {
		t.Errorf("result %+v, want succeeded keeping [v3 v2]", results[0])
	}
	var trash []string
	var kept []string
	for _, name := range releaseFiles(t, h) {
		if strings.HasPrefix(name, ".ferry-trash-") {
			trash = append(trash, name)
		} else {
			kept = append(kept, name)
		}
	}
	if want := []string{".v2.files", ".v2.sha256", ".v2.stat", ".v3.files", ".v3.sha256", ".v3.stat", "v2", "v3"}; !slices.Equal(kept, want) {
		t.Errorf("releases/ holds %v besides the trash, want %v", kept, want)
	}
	if len(trash) != 1 {
		t.Fatalf("releases/ holds trash %v, want one directory", trash)
	}
	inTrash, err := os.ReadDir(h.Path(filepath.Join("releases", trash[0])))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range inTrash {
		names = append(names, e.Name())
	}
	if want := []string{".v1.files", ".v1.sha256", ".v1.stat", "v1"}; !slices.Equal(names, want) {
		t.Errorf("the trash holds %v while its removal is held, want %v", names, want)
	}
	assertServing(t, h, "v3")

	if err := os.Remove(hold); err != nil {
		t.Fatal(err)
	}
	if got := settledReleaseFiles(t, h); slices.Contains(got, trash[0]) {
		t.Errorf("the trash %s is still there after its removal was let go: %v", trash[0], got)
	}
}

// TestAReleaseThatCannotBeMovedAsideIsReportedAndKeptWhole: when the rename of a release to be
// removed fails (here it is a mount point), the deployment's log says why, and the release
// stays a kept release with its recorded sha256.
func TestAReleaseThatCannotBeMovedAsideIsReportedAndKeptWhole(t *testing.T) {
	c := sshtest.Start(t, 1, sshtest.Options{})
	h := c.Hosts()[0]
	spec := testSpec(store.Strategy{})
	spec.KeepReleases = 1
	v1 := makeRelease(t, "v1", artifact{})
	rollout(t, c, spec, v1, nil, deploy.HostSucceeded)
	rollout(t, c, spec, makeRelease(t, "v2", artifact{}), nil, deploy.HostSucceeded)
	conn := dial(t, targetOf(c, h), deploy.DialOptions{})
	v1Dir := store.ShellQuote(filepath.Join(h.DeployPath, "releases", "v1"))
	if _, err := conn.Quick(context.Background(), "mount --bind "+v1Dir+" "+v1Dir); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Quick(context.Background(), "umount "+v1Dir) })
	rec := newRecorder()
	rollout(t, c, spec, makeRelease(t, "v3", artifact{}), rec, deploy.HostSucceeded)
	log := rec.log(h.Name)
	for _, want := range []string{"removing old release v1 (keeping 1)", "pruning old releases: remove old releases on host-1", "v1", "busy"} {
		if !strings.Contains(log, want) {
			t.Errorf("the log lacks %q:\n%s", want, log)
		}
	}
	want := []string{".v1.files", ".v1.sha256", ".v1.stat", ".v2.files", ".v2.sha256", ".v2.stat", ".v3.files", ".v3.sha256", ".v3.stat", "v1", "v2", "v3"}
	if got := settledReleaseFiles(t, h); !slices.Equal(got, want) {
		t.Errorf("releases/ holds %v, want %v", got, want)
	}
	state, err := conn.State(context.Background(), spec.Path)
	if err != nil {
		t.Fatal(err)
	}
	if r := state.Releases[len(state.Releases)-1]; r.Version != "v1" || r.SHA256 != v1.SHA256 {
		t.Errorf("state %+v, want v1 kept with its sha256", state)
	}
	assertServing(t, h, "v3")
}
