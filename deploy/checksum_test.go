package deploy_test

import (
	"os"
	"slices"
	"strings"
	"testing"

	"ferry/deploy"
	"ferry/deploy/sshtest"
	"ferry/store"
)

// An artifact may hold a file named like ferry's old checksum file: it deploys as it is, its
// content is kept, and it is not taken for the recorded sha256.
func TestAnArtifactMemberNamedLikeTheChecksumFileIsJustAFile(t *testing.T) {
	c := sshtest.Start(t, 1, sshtest.Options{})
	h := c.Hosts()[0]
	spec := testSpec(store.Strategy{})
	v1 := makeRelease(t, "v1", artifact{members: map[string]string{".ferry-sha256": "the app's own file\n"}})
	rollout(t, c, spec, v1, nil, deploy.HostSucceeded)
	assertServing(t, h, "v1")
	if data, err := os.ReadFile(h.Path("releases/v1/.ferry-sha256")); err != nil || string(data) != "the app's own file\n" {
		t.Errorf("the artifact's .ferry-sha256 holds %q (%v) on the host, want the artifact's content", data, err)
	}
	if data, err := os.ReadFile(h.Path("releases/.v1.sha256")); err != nil || strings.TrimSpace(string(data)) != v1.SHA256 {
		t.Errorf("recorded sha256 %q (%v), want %s", data, err, v1.SHA256)
	}
	// Deployed again, it is known by its recorded sha256: nothing is sent.
	if res := rollout(t, c, spec, v1, nil, deploy.HostSucceeded); res[0].BytesSent != 0 {
		t.Errorf("deploying v1 again sent %d bytes, want 0", res[0].BytesSent)
	}
}

// A changed artifact carrying a member that claims the expected sha256 is still refused: the
// host's own checksum of what arrived cannot be overwritten by what the artifact unpacks.
func TestAnArtifactCannotFoolTheChecksumWithAMember(t *testing.T) {
	c := sshtest.Start(t, 1, sshtest.Options{})
	h := c.Hosts()[0]
	spec := testSpec(store.Strategy{})
	rollout(t, c, spec, makeRelease(t, "v1", artifact{}), nil, deploy.HostSucceeded)
	good := makeRelease(t, "v2", artifact{})
	claim := good.SHA256 + "  " + "/srv/ferry-test/app/releases/.v2.tar.gz.tmp\n"
	// Padding first, so tar writes the member after sha256sum has written its result.
	evil := makeRelease(t, "v2", artifact{unhealthy: true, padding: 4 << 20, members: map[string]string{".ferry-sha256": claim}})
	evil.SHA256, evil.Size = good.SHA256, good.Size
	for range 3 {
		results := rollout(t, c, spec, evil, nil, deploy.HostFailed)
		wantError(t, errorOf(results[0].Reason), "sha256 mismatch for v2 on host-1")
		assertServing(t, h, "v1")
		if got := releaseEntries(t, h); !slices.Equal(got, []string{"v1"}) {
			t.Fatalf("releases %v after the refused upload, want only [v1] without temp files", got)
		}
	}
}
