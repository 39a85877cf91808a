package handlers

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"ferry/store"
)

// The pages of one build, one deployment, and the deploy dialog.

// jobLog is the start of a job's log as a page renders it: the stream sends what follows After.
type jobLog struct {
	Lines []store.LogLine
	After int64
	More  bool
}

// pageLog reads the first pageLogLines lines of a job's log (of one host when host is not "").
func (s *Server) pageLog(ctx context.Context, kind string, id int64, host string) (jobLog, error) {
	lines, err := s.db.ReadLog(ctx, kind, id, 0, host, pageLogLines+1)
	if err != nil {
		return jobLog{}, fmt.Errorf("read the log of %s %d: %w", kind, id, err)
	}
	l := jobLog{Lines: lines}
	if len(lines) > pageLogLines {
		l.Lines, l.More = lines[:pageLogLines], true
	}
	if len(l.Lines) > 0 {
		l.After = l.Lines[len(l.Lines)-1].Seq
	}
	return l, nil
}

// jobID reads the route's numeric id; need has checked it names a job of a project.
func jobID(c *gin.Context, param string) int64 {
	id, _ := strconv.ParseInt(c.Param(param), 10, 64)
	return id
}

// buildData is the data of build.html.
type buildData struct {
	Project  *store.Project
	Build    *store.Build
	Active   bool
	Estimate time.Duration
	jobLog
}

// buildPage shows one build with its live log.
func (s *Server) buildPage(c *gin.Context) {
	ctx, p := c.Request.Context(), projectOf(c)
	b, err := s.db.GetBuild(ctx, jobID(c, "build"))
	if err != nil {
		s.fail(c, fmt.Errorf("get build %s: %w", c.Param("build"), err))
		return
	}
	fillCommitURLs([]*store.Build{b}, p)
	d := buildData{Project: p, Build: b, Active: b.Status == store.BuildPending || b.Status == store.BuildRunning}
	if d.Active {
		if d.Estimate, err = s.buildEstimate(ctx, p.ID); err != nil {
			s.fail(c, err)
			return
		}
	}
	if d.jobLog, err = s.pageLog(ctx, store.JobBuild, b.ID, ""); err != nil {
		s.fail(c, err)
		return
	}
	s.render(c, http.StatusOK, "build.html", "projects", d)
}

// deploymentData is the data of deployment.html.
type deploymentData struct {
	Project    *store.Project
	Deployment *store.Deployment
	Active     bool // queued or running: cancel, poll, stream
	Retryable  bool // ended with hosts that did not succeed
	Estimate   time.Duration
	Host       string // the host whose log is shown; "" for all
	// MayDecide says the user may approve or reject it now; Approvers who else still may.
	MayDecide bool
	Approvers string
	// Strategy is the one that applies and where it comes from.
	Strategy appliedStrategy
	jobLog
}

// deploymentPage shows one deployment: a row per host and the live log of all hosts, or of the
// one host named by ?host=.
func (s *Server) deploymentPage(c *gin.Context) {
	ctx, p := c.Request.Context(), projectOf(c)
	dep, err := s.db.GetDeployment(ctx, jobID(c, "deployment"))
	if err != nil {
		s.fail(c, fmt.Errorf("get deployment %s: %w", c.Param("deployment"), err))
		return
	}
	d := deploymentData{Project: p, Deployment: dep,
		Active: dep.Status == store.DeploymentQueued || dep.Status == store.DeploymentRunning || store.DeploymentWaiting(dep.Status)}
	if err := s.approvalData(c, &d); err != nil {
		s.fail(c, err)
		return
	}
	d.Strategy = s.deploymentStrategy(ctx, p.ID, dep)
	for _, h := range dep.Hosts {
		if h.Host == c.Query("host") {
			d.Host = h.Host
		}
		if !d.Active && h.Status != store.HostSucceeded {
			d.Retryable = true
		}
	}
	if d.Active {
		if d.Estimate, err = s.deploymentEstimate(ctx, p.ID, dep.EnvironmentID); err != nil {
			s.fail(c, err)
			return
		}
	}
	if d.jobLog, err = s.pageLog(ctx, store.JobDeployment, dep.ID, d.Host); err != nil {
		s.fail(c, err)
		return
	}
	s.render(c, http.StatusOK, "deployment.html", "projects", d)
}

// deployData is the data of deploy.html, the deploy dialog.
type deployData struct {
	Project         *store.Project
	Versions        []*store.Version
	Environments    []deployEnv
	SelectedVersion string
	SelectedEnv     string
	// Running says, by version name, on which hosts it runs now.
	Running map[string]string
}

// deployEnv is an environment the dialog offers and whether the user may deploy to it.
type deployEnv struct {
	Env     *store.Environment
	Allowed bool
	Gates   deployGates
}

// deployPage is the deploy dialog: environment, version, hosts and strategy. It posts to the
// deployments API from the browser; ?version= and ?env= preselect.
func (s *Server) deployPage(c *gin.Context) {
	ctx, p, u := c.Request.Context(), projectOf(c), currentUser(c)
	versions, err := s.db.ListVersions(ctx, p.ID, false)
	if err != nil {
		s.fail(c, fmt.Errorf("list versions of %s: %w", p.Name, err))
		return
	}
	envs, err := s.db.ListEnvironments(ctx, p.ID)
	if err != nil {
		s.fail(c, fmt.Errorf("list environments of %s: %w", p.Name, err))
		return
	}
	production, err := s.hasProductionRight(ctx, p, u)
	if err != nil {
		s.fail(c, err)
		return
	}
	d := deployData{Project: p, Versions: versions, SelectedVersion: c.Query("version"), SelectedEnv: c.Query("env")}
	for _, e := range envs {
		gates, err := s.gatesFor(ctx, e, u)
		if err != nil {
			s.fail(c, err)
			return
		}
		d.Environments = append(d.Environments, deployEnv{Env: e, Allowed: !e.Protected || production, Gates: gates})
	}
	if d.Running, err = s.runningVersions(ctx, p.ID); err != nil {
		s.fail(c, err)
		return
	}
	s.render(c, http.StatusOK, "deploy.html", "projects", d)
}

// hasProductionRight reports whether u may deploy p to protected environments.
func (s *Server) hasProductionRight(ctx context.Context, p *store.Project, u *store.User) (bool, error) {
	if u.Admin {
		return true, nil
	}
	m, err := s.db.GetMember(ctx, p.ID, u.ID)
	if store.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("get the membership of %s in %s: %w", u.Name, p.Name, err)
	}
	return m.Production, nil
}

// runningVersions maps each version that runs somewhere to the hosts it runs on.
func (s *Server) runningVersions(ctx context.Context, projectID int64) (map[string]string, error) {
	instances, err := s.db.ListInstances(ctx, projectID)
	if err != nil {
		return nil, fmt.Errorf("list instances: %w", err)
	}
	hosts := map[string][]string{}
	for _, in := range instances {
		if in.Version != "" {
			hosts[in.Version] = append(hosts[in.Version], in.Host)
		}
	}
	out := make(map[string]string, len(hosts))
	for v, hs := range hosts {
		out[v] = strings.Join(hs, ", ")
	}
	return out, nil
}

// deploymentStrategy works out the strategy a deployment applies (or applied); a failure to
// read the environment or version leaves those out.
func (s *Server) deploymentStrategy(ctx context.Context, projectID int64, dep *store.Deployment) appliedStrategy {
	env, _ := s.db.GetEnvironment(ctx, projectID, dep.Environment)
	v, _ := s.db.GetVersionByName(ctx, projectID, dep.Version)
	return strategyFor(&dep.Strategy, env, v)
}
