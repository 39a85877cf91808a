package notify

import (
	"regexp"
	"sort"
	"strings"
)

// Masked is what a hidden secret is replaced with.
const Masked = "****"

// minSecretLen is the shortest secret Mask replaces: shorter ones would hide ordinary words.
const minSecretLen = 4

var (
	// key=value and key: value, for keys that usually hold credentials.
	credentialPattern = regexp.MustCompile(`(?i)\b((?:[a-z0-9_.-]*(?:password|passwd|pwd|token|secret|api[_-]?key|access[_-]?key))["']?\s*[:=]\s*)("[^"]*"|'[^']*'|[^\s"'&,;]+)`)
	// HTTP authorization headers, and bare bearer tokens.
	authorizationPattern = regexp.MustCompile(`(?i)\b(authorization\s*[:=]\s*(?:bearer|basic|token)?\s*)([^\s"']+)`)
	bearerPattern        = regexp.MustCompile(`(?i)\b(bearer\s+)([a-z0-9\-._~+/]{8,}=*)`)
	// The password in a URL's user info: scheme://user:password@host.
	urlPasswordPattern = regexp.MustCompile(`([a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/@]*:)([^\s@/]+)(@)`)
	pemBegin           = regexp.MustCompile(`-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----`)
	pemEnd             = regexp.MustCompile(`-----END [A-Z0-9 ]*PRIVATE KEY-----`)
)

// Mask returns text with every secret of four or more characters replaced by "****", and
// with common credential shapes hidden even when their value is not listed: password=…,
// token=…, secret: …, "Authorization: Bearer …", passwords in URLs and PEM private key blocks
// (also a block cut off at either end, as happens in a log tail).
func Mask(text string, secrets []string) string {
	text = maskListed(text, secrets)
	text = maskPrivateKeys(text)
	text = credentialPattern.ReplaceAllString(text, "${1}"+Masked)
	text = authorizationPattern.ReplaceAllString(text, "${1}"+Masked)
	text = bearerPattern.ReplaceAllString(text, "${1}"+Masked)
	text = urlPasswordPattern.ReplaceAllString(text, "${1}"+Masked+"${3}")
	return text
}

// maskListed replaces the longest secrets first, so a secret containing a shorter one is
// hidden whole.
func maskListed(text string, secrets []string) string {
	sorted := make([]string, 0, len(secrets))
	for _, s := range secrets {
		if len(s) >= minSecretLen {
			sorted = append(sorted, s)
		}
	}
	sort.Slice(sorted, func(i, j int) bool { return len(sorted[i]) > len(sorted[j]) })
	for _, s := range sorted {
		text = strings.ReplaceAll(text, s, Masked)
	}
	return text
}

// maskPrivateKeys replaces each PEM private key block with its armour lines around "****".
// A block whose END line is missing is masked to the end of the text; an END line without a
// BEGIN before it masks everything before it.
func maskPrivateKeys(text string) string {
	var out strings.Builder
	for {
		begin := pemBegin.FindStringIndex(text)
		end := pemEnd.FindStringIndex(text)
		switch {
		case begin == nil && end == nil:
			out.WriteString(text)
			return out.String()
		case end != nil && (begin == nil || end[0] < begin[0]):
			out.WriteString(Masked + "\n" + text[end[0]:end[1]])
			text = text[end[1]:]
		default:
			out.WriteString(text[:begin[1]] + "\n" + Masked)
			rest := text[begin[1]:]
			closing := pemEnd.FindStringIndex(rest)
			if closing == nil {
				return out.String()
			}
			out.WriteString("\n" + rest[closing[0]:closing[1]])
			text = rest[closing[1]:]
		}
	}
}
