package build

import (
	"context"
	"strings"

	"ferry/store"
)

// BranchTip returns the commit the branch names in the project's mirror, that is as of the
// mirror's last fetch (a mirror clone keeps the remote's branches as refs/heads/*). A branch
// the mirror does not have fails with an ENOTFOUND *store.Error; a name git would not accept
// with EINVALID.
func (g *Git) BranchTip(ctx context.Context, r Repo, branch string) (string, error) {
	if len(branch) > 255 || !refNameRE.MatchString(branch) || strings.Contains(branch, "..") || strings.HasSuffix(branch, ".lock") {
		return "", store.Errorf(store.EINVALID, "branch %q is not a branch name git accepts", truncateText(branch, 80))
	}
	// The name starts with a letter, digit or _, so it cannot be taken for an option.
	out, err := runGit(ctx, g.MirrorDir(r.Project), "rev-parse", "--verify", "--quiet", "refs/heads/"+branch+"^{commit}")
	if err != nil {
		if ctxErr := contextError(err); ctxErr != nil {
			return "", ctxErr
		}
		return "", store.Errorf(store.ENOTFOUND, "branch %s is not in %s (deleted since the push?)", truncateText(branch, 80), redactURL(r.URL))
	}
	return strings.TrimSpace(string(out)), nil
}
