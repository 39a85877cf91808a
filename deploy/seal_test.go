package deploy_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"ferry/deploy"
	"ferry/deploy/sshtest"
	"ferry/store"
)

// A plain tar (what the build makes of data that does not shrink) deploys as a gzipped one
// does, and what ferry appends to prove the upload whole is not part of the release.
func TestAPlainTarArtifactDeploysWithNothingAdded(t *testing.T) {
	c := sshtest.Start(t, 1, sshtest.Options{})
	h := c.Hosts()[0]
	spec := testSpec(store.Strategy{})
	tree := makeTree(t, 10, 100<<10)
	rel := packTree(t, tree, "p1")
	rollout(t, c, spec, rel, nil, deploy.HostSucceeded)
	assertServing(t, h, "p1")
	got, want := filesUnder(t, h.Path("releases/p1")), filesUnder(t, tree)
	if !slices.Equal(got, want) {
		t.Errorf("release p1 on the host holds %v, want the artifact's files %v", got, want)
	}
}

// filesUnder lists the files under root (but run/, the service's own), relative to it.
func filesUnder(t *testing.T, root string) []string {
	t.Helper()
	var names []string
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if rel, _ := filepath.Rel(root, p); !strings.HasPrefix(rel, "run/") {
			names = append(names, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	return names
}

// An artifact file that lost its end since its sha256 was recorded is refused on the host,
// and nothing of it is left there.
func TestATruncatedArtifactIsRefusedOnTheHost(t *testing.T) {
	c := sshtest.Start(t, 1, sshtest.Options{})
	h := c.Hosts()[0]
	spec := testSpec(store.Strategy{})
	rollout(t, c, spec, makeRelease(t, "v1", artifact{}), nil, deploy.HostSucceeded)
	rel := packTree(t, makeTree(t, 10, 100<<10), "p2")
	// The end-of-archive blocks go: tar alone would unpack what is left without a complaint.
	if err := os.Truncate(rel.Artifact, rel.Size-1024); err != nil {
		t.Fatal(err)
	}
	results := rollout(t, c, spec, rel, nil, deploy.HostFailed)
	wantError(t, errorOf(results[0].Reason), "sha256 mismatch for p2 on host-1", "the artifact file ends after")
	assertServing(t, h, "v1")
	if got := releaseEntries(t, h); !slices.Equal(got, []string{"v1"}) {
		t.Errorf("releases %v after the refused upload, want only [v1] without temp files", got)
	}
}
