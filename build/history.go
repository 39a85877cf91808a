package build

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"ferry/store"
)

// The history of a project as its mirror holds it, for the pages: what changed between two
// versions, and the branches and recent commits to build.

// logFormat is one commit per record: sha, author, committer time and title, NUL-separated.
const logFormat = "--format=%H%x00%an%x00%ct%x00%s%x1e"

// History returns the commits reachable from to and not from from (both full commit ids;
// from "" means none), newest first, at most limit. A commit the mirror does not hold fails
// with ENOTFOUND.
func (g *Git) History(ctx context.Context, r Repo, from, to string, limit int) ([]store.CommitSummary, error) {
	args := []string{"log", logFormat, "-n", strconv.Itoa(limit)}
	for _, sha := range []string{to, from} {
		if sha == "" {
			continue
		}
		if err := g.hasCommit(ctx, r, sha); err != nil {
			return nil, err
		}
	}
	args = append(args, to)
	if from != "" {
		args = append(args, "^"+from)
	}
	return g.log(ctx, r, args)
}

// BranchHistory returns the latest commits of a branch in the mirror, newest first.
func (g *Git) BranchHistory(ctx context.Context, r Repo, branch string, limit int) ([]store.CommitSummary, error) {
	tip, err := g.BranchTip(ctx, r, branch)
	if err != nil {
		return nil, err
	}
	return g.log(ctx, r, []string{"log", logFormat, "-n", strconv.Itoa(limit), tip})
}

// IsAncestor reports whether commit a is an ancestor of (or the same as) commit b.
func (g *Git) IsAncestor(ctx context.Context, r Repo, a, b string) (bool, error) {
	for _, sha := range []string{a, b} {
		if err := g.hasCommit(ctx, r, sha); err != nil {
			return false, err
		}
	}
	_, err := runGit(ctx, g.MirrorDir(r.Project), "merge-base", "--is-ancestor", a, b)
	if err == nil {
		return true, nil
	}
	if ctxErr := contextError(err); ctxErr != nil {
		return false, ctxErr
	}
	return false, nil
}

// Refs asks the project's remote (git ls-remote, as ResolveRef does) for its branches and tags.
func (g *Git) Refs(ctx context.Context, r Repo) (branches, tags []string, err error) {
	if r, err = r.validate(); err != nil {
		return nil, nil, err
	}
	out, err := runGitEnv(ctx, "", r.authEnv(), "ls-remote", "--heads", "--tags", "--", r.URL)
	if err != nil {
		return nil, nil, unreachable(r, err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		_, name, ok := strings.Cut(line, "\t")
		switch {
		case !ok || strings.HasSuffix(name, "^{}"):
		case strings.HasPrefix(name, "refs/heads/"):
			branches = append(branches, strings.TrimPrefix(name, "refs/heads/"))
		case strings.HasPrefix(name, "refs/tags/"):
			tags = append(tags, strings.TrimPrefix(name, "refs/tags/"))
		}
	}
	return branches, tags, nil
}

func (g *Git) hasCommit(ctx context.Context, r Repo, sha string) error {
	if err := store.CheckCommitID(sha); err != nil {
		return err
	}
	if _, err := runGit(ctx, g.MirrorDir(r.Project), "cat-file", "-e", sha+"^{commit}"); err != nil {
		if ctxErr := contextError(err); ctxErr != nil {
			return ctxErr
		}
		return store.Errorf(store.ENOTFOUND, "commit %s is not in the mirror of %s", store.ShortSHA(sha), redactURL(r.URL))
	}
	return nil
}

func (g *Git) log(ctx context.Context, r Repo, args []string) ([]store.CommitSummary, error) {
	out, err := runGit(ctx, g.MirrorDir(r.Project), args...)
	if err != nil {
		if ctxErr := contextError(err); ctxErr != nil {
			return nil, ctxErr
		}
		return nil, fmt.Errorf("read the history of %s: %w", r.Project, err)
	}
	var commits []store.CommitSummary
	for _, rec := range strings.Split(string(out), "\x1e") {
		f := strings.Split(strings.TrimLeft(rec, "\n"), "\x00")
		if len(f) != 4 {
			continue
		}
		secs, _ := strconv.ParseInt(f[2], 10, 64)
		commits = append(commits, store.CommitSummary{SHA: f[0], Author: f[1], Time: time.Unix(secs, 0).UTC(), Title: f[3]})
	}
	return commits, nil
}

// History returns the commits of p from to back to (not including) from, newest first.
func (f *Frontend) History(ctx context.Context, p *store.Project, from, to string, limit int) ([]store.CommitSummary, error) {
	return f.w.git.History(ctx, RepoOf(p, f.w.cfg.GitLab.BaseURL), from, to, limit)
}

// BranchHistory returns the latest commits of a branch of p as its mirror holds them.
func (f *Frontend) BranchHistory(ctx context.Context, p *store.Project, branch string, limit int) ([]store.CommitSummary, error) {
	return f.w.git.BranchHistory(ctx, RepoOf(p, f.w.cfg.GitLab.BaseURL), branch, limit)
}

// IsAncestor reports whether commit a of p is an ancestor of commit b.
func (f *Frontend) IsAncestor(ctx context.Context, p *store.Project, a, b string) (bool, error) {
	return f.w.git.IsAncestor(ctx, RepoOf(p, f.w.cfg.GitLab.BaseURL), a, b)
}

// Refs returns the branches and tags of p's remote.
func (f *Frontend) Refs(ctx context.Context, p *store.Project) (branches, tags []string, err error) {
	return f.w.git.Refs(ctx, RepoOf(p, f.w.cfg.GitLab.BaseURL))
}
