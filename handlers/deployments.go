package handlers

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"ferry/store"
)

func (s *Server) registerDeployments(r *gin.RouterGroup) {
	s.finders["deployment"] = findDeployment
	r.POST("/projects/:project/deployments", s.need(projectBuild), s.createDeployment)
	r.GET("/projects/:project/deployments", s.need(projectRead), s.listDeployments)
	r.GET("/deployments/:deployment", s.need(projectRead), s.getDeployment)
	r.GET("/deployments/:deployment/log", s.need(projectRead), s.deploymentLog)
	r.POST("/deployments/:deployment/cancel", s.need(projectDeploy), s.cancelDeployment)
	r.POST("/deployments/:deployment/retry", s.need(projectDeploy), s.retryDeployment)
}

// DeploymentWaker is told when a deployment was queued, so a deploy worker in this process
// starts it at once instead of at its next look at the queue (deploy.Worker has it).
type DeploymentWaker interface {
	Wake()
}

// findDeployment is the ProjectFinder of :deployment: its project, and its environment, so
// that canceling or retrying on a protected environment needs the production right.
func findDeployment(ctx context.Context, db *store.DB, id int64) (int64, string, error) {
	d, err := db.GetDeployment(ctx, id)
	if err != nil {
		return 0, "", err
	}
	return d.ProjectID, d.Environment, nil
}

// deploymentInput is the body of POST /projects/:project/deployments.
type deploymentInput struct {
	Environment string         `json:"environment"`
	Version     string         `json:"version"`
	Hosts       []string       `json:"hosts"`
	Strategy    *strategyInput `json:"strategy"`
	// ScheduledAt (RFC 3339, in the future) runs the deployment later.
	ScheduledAt string `json:"scheduled_at"`
	// OverrideFreeze with Reason deploys during a freeze; administrators only.
	OverrideFreeze bool   `json:"override_freeze"`
	Reason         string `json:"reason"`
}

func (s *Server) createDeployment(c *gin.Context) {
	var in deploymentInput
	if !s.bindJSON(c, &in) {
		return
	}
	p := projectOf(c)
	nd, err := s.newDeployment(c, p, in)
	if err != nil {
		s.fail(c, err)
		return
	}
	ctx := c.Request.Context()
	d, err := s.db.CreateDeployment(ctx, nd)
	if err != nil {
		s.fail(c, fmt.Errorf("deploy %s of %s to %s: %w", in.Version, p.Name, in.Environment, err))
		return
	}
	s.wakeDeployer()
	s.renderDeployment(c, http.StatusCreated, d.ID)
}

// newDeployment checks a deployment request: the environment, the user's right to deploy
// there, the version and the hosts, each refused in words naming what is wrong.
func (s *Server) newDeployment(c *gin.Context, p *store.Project, in deploymentInput) (store.NewDeployment, error) {
	ctx := c.Request.Context()
	nd := store.NewDeployment{ProjectID: p.ID, TriggeredBy: "api by " + currentUser(c).Name}
	if strings.TrimSpace(in.Environment) == "" {
		return nd, store.Errorf(store.EINVALID, "environment: required; name one of the environments of %s", p.Name)
	}
	env, err := s.db.GetEnvironment(ctx, p.ID, in.Environment)
	if store.IsNotFound(err) {
		return nd, store.Errorf(store.EINVALID, "environment: project %s has no environment named %q", p.Name, clip(in.Environment, 100))
	}
	if err != nil {
		return nd, err
	}
	if err := s.mayDeployTo(c, p, env); err != nil {
		return nd, err
	}
	nd.EnvironmentID = env.ID
	if strings.TrimSpace(in.Version) == "" {
		return nd, store.Errorf(store.EINVALID, "version: required; name a kept version of %s", p.Name)
	}
	v, err := s.db.GetVersionByName(ctx, p.ID, in.Version)
	if store.IsNotFound(err) {
		return nd, s.versionGone(ctx, p, in.Version)
	}
	if err != nil {
		return nd, err
	}
	nd.VersionID = v.ID
	if nd.Hosts, err = s.deploymentHosts(ctx, env, in.Hosts); err != nil {
		return nd, err
	}
	if in.Strategy != nil {
		st := in.Strategy.strategy()
		if err := st.Validate(); err != nil {
			return nd, err
		}
		nd.Strategy = &st
	}
	return nd, changeControl(c, in, &nd)
}

// changeControl reads the schedule and the freeze override of a deployment request.
func changeControl(c *gin.Context, in deploymentInput, nd *store.NewDeployment) error {
	if in.ScheduledAt != "" {
		at, err := time.Parse(time.RFC3339, in.ScheduledAt)
		if err != nil {
			return store.Errorf(store.EINVALID, "scheduled_at: %q is not an RFC 3339 time such as 2026-12-24T22:00:00+08:00", clip(in.ScheduledAt, 60))
		}
		nd.ScheduledAt = &at
	}
	if in.OverrideFreeze {
		if !currentUser(c).Admin {
			return store.Errorf(store.EFORBIDDEN, "only an administrator may override a freeze")
		}
		nd.OverrideFreeze, nd.OverrideReason = true, in.Reason
	} else if in.Reason != "" {
		return store.Errorf(store.EINVALID, "reason: only used with override_freeze: true")
	}
	return nil
}

// versionGone says why a project has no kept version called name: retention removed it, or
// there never was one.
func (s *Server) versionGone(ctx context.Context, p *store.Project, name string) error {
	all, err := s.db.ListVersions(ctx, p.ID, true)
	if err != nil {
		return err
	}
	for _, v := range all {
		if v.Name == name && v.DeletedAt != nil {
			return store.Errorf(store.EINVALID, "version: %s of %s was removed by retention on %s; deploy a version that is kept",
				name, p.Name, v.DeletedAt.UTC().Format("2006-01-02 15:04 MST"))
		}
	}
	return store.Errorf(store.EINVALID, "version: project %s has no version named %q", p.Name, clip(name, 200))
}

// mayDeployTo refuses a member without the production right a protected environment, with
// the same rule need applies to routes naming an environment.
func (s *Server) mayDeployTo(c *gin.Context, p *store.Project, env *store.Environment) error {
	u := currentUser(c)
	var m *store.Member
	if !u.Admin {
		var err error
		if m, err = s.db.GetMember(c.Request.Context(), p.ID, u.ID); err != nil && !store.IsNotFound(err) {
			return err
		}
	}
	if decide(projectDeploy, u, m, env.Protected) != allowed {
		return store.Errorf(store.EFORBIDDEN, "you may not deploy to %s: %s", env.Name, forbiddenReason(projectDeploy))
	}
	return nil
}

// deploymentHosts turns host names into ids; each must be in the environment, once.
func (s *Server) deploymentHosts(ctx context.Context, env *store.Environment, names []string) ([]int64, error) {
	var ids []int64
	for i, name := range names {
		if !slices.Contains(env.Hosts, name) {
			return nil, store.Errorf(store.EINVALID, "hosts: %q is not a host of environment %s (its hosts: %s)",
				clip(name, 100), env.Name, strings.Join(env.Hosts, ", "))
		}
		if slices.Contains(names[:i], name) {
			return nil, store.Errorf(store.EINVALID, "hosts: %s is named twice", name)
		}
		h, err := s.db.GetHost(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("hosts: %w", err)
		}
		ids = append(ids, h.ID)
	}
	return ids, nil
}

func (s *Server) wakeDeployer() {
	if s.deployer != nil {
		s.deployer.Wake()
	}
}

// renderDeployment answers with the deployment as GET /deployments/:id shows it.
func (s *Server) renderDeployment(c *gin.Context, status int, id int64) {
	d, err := s.db.GetDeployment(c.Request.Context(), id)
	if err != nil {
		s.fail(c, fmt.Errorf("get deployment %d: %w", id, err))
		return
	}
	c.JSON(status, deploymentView(d))
}

func deploymentView(d *store.Deployment) *store.Deployment {
	if d.Hosts == nil {
		d.Hosts = []*store.HostStep{}
	}
	return d
}

// listDeployments lists a project's deployments newest first (without their hosts):
// ?environment=NAME, ?status=running,queued, ?limit= (default 50, at most 500), ?before=ID.
func (s *Server) listDeployments(c *gin.Context) {
	p := projectOf(c)
	ctx := c.Request.Context()
	f := store.DeploymentFilter{ProjectID: p.ID}
	if name := c.Query("environment"); name != "" {
		env, err := s.db.GetEnvironment(ctx, p.ID, name)
		if store.IsNotFound(err) {
			s.fail(c, store.Errorf(store.EINVALID, "environment: project %s has no environment named %q", p.Name, clip(name, 100)))
			return
		}
		if err != nil {
			s.fail(c, err)
			return
		}
		f.EnvironmentID = env.ID
	}
	if v := c.Query("status"); v != "" {
		f.Status = strings.Split(v, ",")
	}
	var err error
	if f.Limit, f.BeforeID, err = pageQuery(c, 500); err != nil {
		s.fail(c, err)
		return
	}
	list, err := s.db.ListDeployments(ctx, f)
	if err != nil {
		s.fail(c, fmt.Errorf("list deployments of %s: %w", p.Name, err))
		return
	}
	if list == nil {
		list = []*store.Deployment{}
	}
	c.JSON(http.StatusOK, list)
}

// pageQuery reads ?limit= (1..most) and ?before= (an id).
func pageQuery(c *gin.Context, most int) (limit int, before int64, err error) {
	if v := c.Query("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > most {
			return 0, 0, store.Errorf(store.EINVALID, "limit: %q is not a number between 1 and %d", clip(v, 40), most)
		}
		limit = n
	}
	if v := c.Query("before"); v != "" {
		if before, err = parseID("before", v); err != nil {
			return 0, 0, err
		}
	}
	return limit, before, nil
}

func deploymentID(c *gin.Context) int64 {
	id, _ := strconv.ParseInt(c.Param("deployment"), 10, 64) // need checked it already
	return id
}

func (s *Server) getDeployment(c *gin.Context) {
	s.renderDeployment(c, http.StatusOK, deploymentID(c))
}

// deploymentLogPage is what GET /deployments/:id/log answers, as the build log does: the
// lines after ?after=, the deployment's status (so a poller knows when to stop) and the seq
// to ask after next time.
type deploymentLogPage struct {
	Lines  []store.LogLine `json:"lines"`
	Status string          `json:"status"`
	Next   int64           `json:"next"`
}

// deploymentLog returns log lines of every host in order: ?after=SEQ, ?host=NAME for one
// host's lines, ?limit= (default 1,000, at most 5,000).
func (s *Server) deploymentLog(c *gin.Context) {
	ctx := c.Request.Context()
	id := deploymentID(c)
	var after int64
	if v := c.Query("after"); v != "" {
		var err error
		if after, err = parseID("after", v); err != nil {
			s.fail(c, err)
			return
		}
	}
	limit, _, err := pageQuery(c, 5000)
	if err != nil {
		s.fail(c, err)
		return
	}
	d, err := s.db.GetDeployment(ctx, id)
	if err != nil {
		s.fail(c, fmt.Errorf("get deployment %d: %w", id, err))
		return
	}
	lines, err := s.db.ReadLog(ctx, store.JobDeployment, id, after, c.Query("host"), limit)
	if err != nil {
		s.fail(c, fmt.Errorf("read the log of deployment %d: %w", id, err))
		return
	}
	page := deploymentLogPage{Status: d.Status, Lines: lines, Next: after}
	if page.Lines == nil {
		page.Lines = []store.LogLine{}
	}
	if n := len(lines); n > 0 {
		page.Next = lines[n-1].Seq
	}
	c.JSON(http.StatusOK, page)
}

func (s *Server) cancelDeployment(c *gin.Context) {
	id := deploymentID(c)
	if _, err := s.db.CancelDeployment(c.Request.Context(), id); err != nil {
		s.fail(c, fmt.Errorf("cancel deployment %d: %w", id, err))
		return
	}
	s.renderDeployment(c, http.StatusOK, id)
}

func (s *Server) retryDeployment(c *gin.Context) {
	id := deploymentID(c)
	d, err := s.db.RetryDeployment(c.Request.Context(), id, "retry by "+currentUser(c).Name)
	if err != nil {
		s.fail(c, fmt.Errorf("retry deployment %d: %w", id, err))
		return
	}
	s.wakeDeployer()
	s.renderDeployment(c, http.StatusCreated, d.ID)
}
