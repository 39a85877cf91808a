package deploy

import (
	"testing"
	"time"
)

// The probe's output becomes the host's state: releases newest first with their recorded
// sha256 (the legacy one only when there is no other), names with spaces whole, leftovers
// without a release dropped.
func TestParseProbe(t *testing.T) {
	out := `current - releases/v2
release 1700000100.500000000 v1
release 1700000200.250000000 v2
release 1700000200 with space
release 1700000200.250000000 v2
sha aaaa v1
legacy bbbb v1
legacy cccc with space
sha dddd gone
files - v2
files - gone
`
	st := parseProbe(out)
	if st.Current != "v2" {
		t.Errorf("current %q, want v2", st.Current)
	}
	var got []string
	for _, r := range st.Releases {
		got = append(got, r.Version+"="+r.SHA256)
	}
	want := []string{"v2=", "with space=cccc", "v1=aaaa"}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Errorf("releases %v, want %v", got, want)
	}
	if !st.Releases[0].Deployed.Equal(time.Unix(1700000200, 250000000)) {
		t.Errorf("v2 deployed %v", st.Releases[0].Deployed)
	}
	if !st.manifests["v2"] || st.manifests["gone"] {
		t.Errorf("manifests %v, want only v2", st.manifests)
	}
}
