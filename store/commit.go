package store

import "regexp"

// A commit id is a full git object name in lowercase hex: 40 digits (SHA-1) or 64 (SHA-256
// repositories). Abbreviations are refused everywhere a commit is named for building, since
// two commits may share one in time and a build must name exactly one.
var commitIDRE = regexp.MustCompile(`^[0-9a-f]{40}([0-9a-f]{24})?$`)

// CheckCommitID returns nil when sha is a full commit id, and an EINVALID error that says
// what is wanted otherwise.
func CheckCommitID(sha string) error {
	if !commitIDRE.MatchString(sha) {
		return Errorf(EINVALID, "%q is not a full commit id (40 or 64 lowercase hex digits)", truncate(sha, 80))
	}
	return nil
}

// ShortSHA returns the first 8 characters of a commit id, as GitLab shows it; a shorter text
// is returned as it is.
func ShortSHA(sha string) string {
	if len(sha) > 8 {
		return sha[:8]
	}
	return sha
}
