package store

import (
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// PushInfo is what a trigger looks at in a push. Name is the branch name, or the tag name when
// Tag is set; Message is the head commit's message.
type PushInfo struct {
	Tag     bool
	Name    string
	Message string
	// Deleted is a push that removed the branch or tag.
	Deleted bool
	// MadeByFerry is a tag ferry itself created after a build; building it again would loop.
	MadeByFerry bool
}

// Match decides whether a push builds. Deletions and tags ferry made never build; tags build
// only with Tags set (the keyword does not apply to them: a tag is a deliberate act); a
// branch must match one of Branches (every branch when empty) and its head commit message
// must hold Keyword as a whole word, in any case (every message when empty). reason is a
// sentence for the event list saying why the push builds or not. A nil t is DefaultTrigger.
func (t *Trigger) Match(p PushInfo) (build bool, reason string) {
	if t == nil {
		d := DefaultTrigger()
		t = &d
	}
	kind := "branch"
	if p.Tag {
		kind = "tag"
	}
	switch {
	case p.Deleted:
		return false, fmt.Sprintf("%s %s was deleted", kind, p.Name)
	case p.Tag && p.MadeByFerry:
		return false, fmt.Sprintf("tag %s was made by ferry", p.Name)
	case p.Tag && !t.Tags:
		return false, fmt.Sprintf("tag %s: tag builds are off (trigger.tags)", p.Name)
	case p.Tag:
		return true, fmt.Sprintf("tag %s builds (trigger.tags)", p.Name)
	}
	if !t.matchesBranch(p.Name) {
		return false, fmt.Sprintf("branch %s does not match %s", p.Name, strings.Join(t.Branches, ", "))
	}
	if t.Keyword != "" && !HasKeyword(p.Message, t.Keyword) {
		return false, fmt.Sprintf("commit message has no '%s'", t.Keyword)
	}
	if t.Keyword != "" {
		return true, fmt.Sprintf("branch %s, commit message has '%s'", p.Name, t.Keyword)
	}
	return true, fmt.Sprintf("branch %s builds on every push", p.Name)
}

func (t *Trigger) matchesBranch(branch string) bool {
	if len(t.Branches) == 0 {
		return true
	}
	for _, pattern := range t.Branches {
		if ok, _ := path.Match(pattern, branch); ok {
			return true
		}
	}
	return false
}

// HasKeyword reports whether keyword stands in message as a whole word (not inside a longer
// word of letters, digits or '_'), ignoring case (Unicode simple case folding). It is called
// for every push, so it compares runes rather than compile a pattern each time.
func HasKeyword(message, keyword string) bool {
	if keyword == "" {
		return true
	}
	if !utf8.ValidString(keyword) {
		return false
	}
	for i := 0; i < len(message); {
		if n, ok := foldedPrefix(message[i:], keyword); ok && !isWordRune(lastRune(message[:i])) && !isWordRune(firstRune(message[i+n:])) {
			return true
		}
		_, size := utf8.DecodeRuneInString(message[i:])
		i += size
	}
	return false
}

// foldedPrefix reports whether s starts with prefix, ignoring case, and how many bytes of s
// that prefix takes.
func foldedPrefix(s, prefix string) (int, bool) {
	n := 0
	for _, want := range prefix {
		if n >= len(s) {
			return 0, false
		}
		r, size := utf8.DecodeRuneInString(s[n:])
		if !sameFolded(r, want) {
			return 0, false
		}
		n += size
	}
	return n, true
}

// sameFolded reports whether a and b are one letter up to case.
func sameFolded(a, b rune) bool {
	if a == b {
		return true
	}
	for f := unicode.SimpleFold(a); f != a; f = unicode.SimpleFold(f) {
		if f == b {
			return true
		}
	}
	return false
}

// isWordRune reports whether r is part of a word: a letter, a digit (any number) or '_'.
// The no-rune value -1 is not.
func isWordRune(r rune) bool {
	return r == '_' || unicode.IsLetter(r) || unicode.IsNumber(r)
}

func firstRune(s string) rune {
	if s == "" {
		return -1
	}
	r, _ := utf8.DecodeRuneInString(s)
	return r
}

func lastRune(s string) rune {
	if s == "" {
		return -1
	}
	r, _ := utf8.DecodeLastRuneInString(s)
	return r
}

// DeployTarget returns the environment a good build of branch is deployed to: the entry of
// Deploy naming the branch exactly, else the first glob (in sorted order) matching it.
func (t *Trigger) DeployTarget(branch string) (env string, ok bool) {
	if t == nil || branch == "" {
		return "", false
	}
	if env, ok := t.Deploy[branch]; ok {
		return env, true
	}
	for _, pattern := range slices.Sorted(maps.Keys(t.Deploy)) {
		if matched, _ := path.Match(pattern, branch); matched {
			return t.Deploy[pattern], true
		}
	}
	return "", false
}
