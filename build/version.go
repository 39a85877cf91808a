package build

import (
	"strings"
	"time"

	"ferry/store"
)

// maxNamePart is the longest branch or tag part of a version name.
const maxNamePart = 40

// VersionName names the version a build makes: YYYYMMDDHHMMSS-<branch>-<shortsha> in UTC, or
// for a tag build the tag itself. Branch and tag are made safe for paths and shells with
// SafeName; a branch with nothing safe left is left out, and so is a tag (the name is then
// built as for a branch push).
func VersionName(t time.Time, branch, sha, tag string) string {
	if name := SafeName(tag); name != "" {
		return name
	}
	parts := []string{t.UTC().Format("20060102150405")}
	if name := SafeName(branch); name != "" {
		parts = append(parts, name)
	}
	if short := SafeName(store.ShortSHA(sha)); short != "" {
		parts = append(parts, short)
	}
	return strings.Join(parts, "-")
}

// SafeName keeps only ASCII letters, digits, '.', '_' and '-' of s: every run of other
// characters becomes one '-', runs of dots one dot, and the result is trimmed of separators at
// both ends and cut to 40 characters. It may return "".
func SafeName(s string) string {
	var b strings.Builder
	prev := byte(0)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isSafe(c) {
			c = '-'
		}
		if (c == '-' || c == '.') && c == prev {
			continue
		}
		b.WriteByte(c)
		prev = c
	}
	name := trimSeparators(b.String())
	if len(name) > maxNamePart {
		name = trimSeparators(name[:maxNamePart])
	}
	return name
}

func isSafe(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
}

func trimSeparators(s string) string { return strings.Trim(s, "-._") }
