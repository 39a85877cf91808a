package notify

import (
	"strings"
	"unicode/utf8"
)

// TruncatedMark is the text a shortened message or log tail carries.
const TruncatedMark = "(truncated)"

// cutEnd returns s shortened to at most limit bytes, keeping its start and ending with
// "(truncated)"; s is returned unchanged when it fits. A rune is never split.
func cutEnd(s string, limit int) string {
	if limit <= 0 || len(s) <= limit {
		return s
	}
	return cutAndMark(s, limit)
}

// cutAndMark shortens s so that, followed by "(truncated)", it fits in limit bytes.
func cutAndMark(s string, limit int) string {
	suffix := "\n" + TruncatedMark
	if limit <= len(suffix) {
		return runePrefix(TruncatedMark, limit)
	}
	return strings.TrimRight(runePrefix(s, limit-len(suffix)), " \n") + suffix
}

// runePrefix returns the longest prefix of s of at most n bytes that ends on a rune boundary.
func runePrefix(s string, n int) string {
	if n >= len(s) {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// keepTail returns the longest suffix of s of at most n bytes that starts on a rune boundary,
// and, when the suffix holds a line break, starts at a whole line.
func keepTail(s string, n int) string {
	if n >= len(s) {
		return s
	}
	if n <= 0 {
		return ""
	}
	start := len(s) - n
	for start < len(s) && !utf8.RuneStart(s[start]) {
		start++
	}
	tail := s[start:]
	if start > 0 && s[start-1] != '\n' {
		if i := strings.IndexByte(tail, '\n'); i >= 0 && i+1 < len(tail) {
			tail = tail[i+1:]
		}
	}
	return tail
}

// lastLines returns at most n of the last lines of lines, each split further if it holds
// line breaks, with trailing empty lines removed.
func lastLines(lines []string, n int) []string {
	var all []string
	for _, l := range lines {
		all = append(all, strings.Split(strings.ReplaceAll(l, "\r\n", "\n"), "\n")...)
	}
	for len(all) > 0 && strings.TrimSpace(all[len(all)-1]) == "" {
		all = all[:len(all)-1]
	}
	if len(all) > n {
		all = all[len(all)-n:]
	}
	return all
}

// fitBody joins head and the log tail rendered by wrap, keeping the total within limit bytes
// (no limit when limit <= 0). The log tail is cut first, from its oldest end; when even an
// empty log does not fit, the log is left out and the head is cut.
func fitBody(head, log string, limit int, wrap func(log string, truncated bool) string) string {
	if log == "" {
		return cutEnd(head, limit)
	}
	body := head + wrap(log, false)
	if limit <= 0 || len(body) <= limit {
		return body
	}
	room := limit - len(head) - len(wrap("", true))
	if tail := keepTail(log, room); tail != "" {
		return head + wrap(tail, true)
	}
	return cutAndMark(head, limit)
}
