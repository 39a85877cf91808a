package store

import "strings"

// ShellQuote is the one quoting function of ferry: the build script runner and the deploy
// engine both use it, so a word means the same to both. It returns s quoted for a POSIX shell, so that the shell reads it back as exactly s, one
// word, whatever it holds: $(…), `…`, ;, quotes, newlines, nothing at all. A word made only of
// letters, digits and -_./:=@%+, is returned as it is; anything else is single-quoted, with
// each single quote closed, escaped and reopened. Quote never fails.
func ShellQuote(s string) string {
	if s != "" && isShellSafe(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func isShellSafe(s string) bool {
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case strings.ContainsRune("-_./:=@%+,", r):
		default:
			return false
		}
	}
	return true
}
