package handlers

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"ferry/store"
)

// What am I about to ship: the commits between the version an environment runs and the one
// about to be deployed, and the branches and recent commits to build, read from the project's
// mirror (build.Frontend implements Repository; without it these answer that ferry cannot
// read history).

// Repository reads a project's history from its git mirror.
type Repository interface {
	// History returns the commits reachable from to and not from from, newest first.
	History(ctx context.Context, p *store.Project, from, to string, limit int) ([]store.CommitSummary, error)
	// BranchHistory returns the latest commits of a branch, newest first.
	BranchHistory(ctx context.Context, p *store.Project, branch string, limit int) ([]store.CommitSummary, error)
	// IsAncestor reports whether commit a is an ancestor of (or is) commit b.
	IsAncestor(ctx context.Context, p *store.Project, a, b string) (bool, error)
	// Refs returns the branches and tags of the project's remote.
	Refs(ctx context.Context, p *store.Project) (branches, tags []string, err error)
}

// How many commits a list of changes shows.
const changesLimit = 50

func (s *Server) registerChanges(r gin.IRouter) {
	r.GET("/projects/:project/changes", s.need(projectRead), s.getChanges)
	r.GET("/projects/:project/refs", s.need(projectRead), s.listRefs)
	r.GET("/projects/:project/commits", s.need(projectRead), s.listBranchCommits)
}

// repository returns the history reader, or an error that says there is none.
func (s *Server) repository() (Repository, error) {
	if r, ok := s.gitlab.(Repository); ok && r != nil {
		return r, nil
	}
	return nil, store.Errorf(store.EINVALID, "this ferry does not read project history (no build side is configured)")
}

// Directions of a deployment, from the version running to the target.
const (
	directionFirst    = "first"    // nothing runs there yet
	directionForward  = "forward"  // the target is newer: commits are added
	directionRollback = "rollback" // the target is older: commits are taken away
	directionSame     = "same"     // the same commit
	directionOther    = "other"    // neither contains the other (another branch)
)

// changes is what deploying a version to an environment changes.
type changes struct {
	Environment string `json:"environment,omitempty"`
	Running     string `json:"running"`
	RunningSHA  string `json:"running_sha,omitempty"`
	// Previous is set instead of Running for "changes since the version before".
	Previous  string                `json:"previous,omitempty"`
	Target    string                `json:"target"`
	TargetSHA string                `json:"target_sha"`
	Direction string                `json:"direction"`
	Commits   []store.CommitSummary `json:"commits"`
	// Truncated says there are more commits than listed.
	Truncated bool `json:"truncated,omitempty"`
}

// getChanges answers GET /projects/{project}/changes?version=V[&environment=E]: with an
// environment, the commits between what runs there now and V (removed ones for a rollback);
// without, the commits since the version built before V.
func (s *Server) getChanges(c *gin.Context) {
	ctx := c.Request.Context()
	p := projectOf(c)
	repo, err := s.repository()
	if err != nil {
		s.fail(c, err)
		return
	}
	target, err := s.db.GetVersionByName(ctx, p.ID, c.Query("version"))
	if err != nil {
		s.fail(c, store.Errorf(store.EINVALID, "version: %s", store.ErrorMessage(err)))
		return
	}
	ch := &changes{Target: target.Name, TargetSHA: target.SHA, Commits: []store.CommitSummary{}}
	base := ""
	if env := c.Query("environment"); env != "" {
		ch.Environment = env
		if base, err = s.runningIn(ctx, p, env, ch); err != nil {
			s.fail(c, err)
			return
		}
	} else if base, err = s.versionBefore(ctx, p, target, ch); err != nil {
		s.fail(c, err)
		return
	}
	if err := s.fillChanges(ctx, repo, p, base, ch); err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, ch)
}

// runningIn finds the version the environment's last good deployment put there.
func (s *Server) runningIn(ctx context.Context, p *store.Project, env string, ch *changes) (string, error) {
	e, err := s.db.GetEnvironment(ctx, p.ID, env)
	if err != nil {
		return "", store.Errorf(store.EINVALID, "environment: %s", store.ErrorMessage(err))
	}
	deps, err := s.db.ListDeployments(ctx, store.DeploymentFilter{ProjectID: p.ID, EnvironmentID: e.ID, Status: []string{store.DeploymentSuccess}, Limit: 1})
	if err != nil || len(deps) == 0 {
		return "", err
	}
	ch.Running = deps[0].Version
	v, err := s.db.GetVersionByName(ctx, p.ID, deps[0].Version)
	if err != nil {
		return "", nil // removed by retention: its commit is unknown
	}
	ch.RunningSHA = v.SHA
	return v.SHA, nil
}

// versionBefore finds the version kept before target (by creation), if any.
func (s *Server) versionBefore(ctx context.Context, p *store.Project, target *store.Version, ch *changes) (string, error) {
	versions, err := s.db.ListVersions(ctx, p.ID, false)
	if err != nil {
		return "", fmt.Errorf("list versions: %w", err)
	}
	var before *store.Version
	for _, v := range versions {
		if v.ID < target.ID && (before == nil || v.ID > before.ID) {
			before = v
		}
	}
	if before == nil {
		return "", nil
	}
	ch.Previous, ch.RunningSHA = before.Name, before.SHA
	return before.SHA, nil
}

// fillChanges lists the commits between base and the target and says which way they go.
func (s *Server) fillChanges(ctx context.Context, repo Repository, p *store.Project, base string, ch *changes) error {
	from, to := base, ch.TargetSHA
	switch {
	case base == "":
		ch.Direction = directionFirst
	case base == ch.TargetSHA:
		ch.Direction = directionSame
		return nil
	default:
		older, err := repo.IsAncestor(ctx, p, ch.TargetSHA, base)
		if err != nil {
			return err
		}
		newer, err := repo.IsAncestor(ctx, p, base, ch.TargetSHA)
		if err != nil {
			return err
		}
		switch {
		case older:
			ch.Direction, from, to = directionRollback, ch.TargetSHA, base
		case newer:
			ch.Direction = directionForward
		default:
			ch.Direction = directionOther
		}
	}
	commits, err := repo.History(ctx, p, from, to, changesLimit+1)
	if err != nil {
		return err
	}
	if len(commits) > changesLimit {
		commits, ch.Truncated = commits[:changesLimit], true
	}
	for i := range commits {
		commits[i].URL = commitURL(p.CloneURL, commits[i].SHA)
	}
	ch.Commits = commits
	return nil
}

// refsAnswer lists a project's branches and tags.
type refsAnswer struct {
	Branches []string `json:"branches"`
	Tags     []string `json:"tags"`
}

func (s *Server) listRefs(c *gin.Context) {
	repo, err := s.repository()
	if err != nil {
		s.fail(c, err)
		return
	}
	branches, tags, err := repo.Refs(c.Request.Context(), projectOf(c))
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, refsAnswer{Branches: orEmpty(branches), Tags: orEmpty(tags)})
}

// listBranchCommits answers GET /projects/{project}/commits?branch=B: its latest commits.
func (s *Server) listBranchCommits(c *gin.Context) {
	repo, err := s.repository()
	if err != nil {
		s.fail(c, err)
		return
	}
	branch := strings.TrimSpace(c.Query("branch"))
	if branch == "" {
		s.fail(c, store.Errorf(store.EINVALID, "branch: required"))
		return
	}
	p := projectOf(c)
	commits, err := repo.BranchHistory(c.Request.Context(), p, branch, 20)
	if err != nil {
		s.fail(c, err)
		return
	}
	for i := range commits {
		commits[i].URL = commitURL(p.CloneURL, commits[i].SHA)
	}
	c.JSON(http.StatusOK, orEmpty(commits))
}

func orEmpty[T any](xs []T) []T {
	if xs == nil {
		return []T{}
	}
	return xs
}
