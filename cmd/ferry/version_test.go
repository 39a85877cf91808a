package main

import (
	"runtime/debug"
	"strings"
	"testing"
)

func TestVersionLine(t *testing.T) {
	vcs := []debug.BuildSetting{{Key: "vcs.revision", Value: "6ae40f5c0ffee1234567890abcdef0123456789a"},
		{Key: "vcs.time", Value: "2026-12-01T10:00:00Z"}, {Key: "vcs.modified", Value: "false"}}
	for _, tc := range []struct {
		name, ld string
		info     debug.BuildInfo
		want     string
	}{
		{"go install ferry/cmd/ferry@v1.2.0", "dev", debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "v1.2.0"}},
			"ferry v1.2.0 go1.26.0"},
		{"go build in a checkout", "dev", debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "(devel)"}, Settings: vcs},
			"ferry dev commit 6ae40f5c0ffe of 2026-12-01T10:00:00Z go1.26.0"},
		{"-ldflags -X main.Version", "v1.3.0", debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "(devel)"},
			Settings: append(vcs[:2:2], debug.BuildSetting{Key: "vcs.modified", Value: "true"})},
			"ferry v1.3.0 commit 6ae40f5c0ffe (modified) of 2026-12-01T10:00:00Z go1.26.0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := formatVersion(tc.ld, &tc.info); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
	// The real binary reads its own build info.
	res := runFerry(t, ferryEnv(), "", "version")
	if res.code != 0 || !strings.HasPrefix(res.stdout, "ferry ") || !strings.Contains(res.stdout, " go1.") {
		t.Errorf("ferry version: exit %d, %q", res.code, res.stdout)
	}
}
