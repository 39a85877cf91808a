package main

import (
	"runtime/debug"
	"strings"
)

// versionLine is what ferry version prints: the module version and the commit from the
// build info (go install ferry/cmd/ferry@v1.2.0 and builds in a git checkout carry them),
// or Version when set with -ldflags "-X main.Version=…".
func versionLine() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "ferry " + Version
	}
	return formatVersion(Version, info)
}

func formatVersion(ldVersion string, info *debug.BuildInfo) string {
	version := ldVersion
	if version == "dev" && info.Main.Version != "" && info.Main.Version != "(devel)" {
		version = info.Main.Version
	}
	var rev, at string
	modified := false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			at = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	parts := []string{"ferry", version}
	if rev != "" {
		commit := "commit " + short(rev, 12)
		if modified {
			commit += " (modified)"
		}
		if at != "" {
			commit += " of " + at
		}
		parts = append(parts, commit)
	}
	parts = append(parts, info.GoVersion)
	return strings.Join(parts, " ")
}
