package handlers

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"ferry/store"
)

// The web pages. They read the store directly and render on the server, so that they work
// without JavaScript for reading; templates/static/app.js adds live logs and the actions, which
// go through the JSON API with the session's CSRF token. Job pages are in pages_jobs.go, the
// pages of administration in pages_admin.go.

func (s *Server) registerPages(r gin.IRouter) {
	s.registerLanguage(r)
	r.GET("/", s.need(loggedIn), s.dashboardPage)
	r.GET("/projects/:project", s.need(projectRead), s.projectPage)
	r.GET("/projects/:project/deploy", s.need(projectRead), s.deployPage)
	r.GET("/projects/:project/settings", s.need(projectAdmin), s.settingsPage)
	r.GET("/builds/:build", s.need(projectRead), s.buildPage)
	r.GET("/deployments/:deployment", s.need(projectRead), s.deploymentPage)
	r.GET("/hosts", s.need(loggedIn), s.hostsPage)
	r.GET("/users", s.need(adminOnly), s.usersPage)
	r.GET("/tokens", s.need(loggedIn), s.tokensPage)
	r.GET("/audit", s.need(adminOnly), s.auditPage)
	s.registerVersionPages(r)
}

// How much the pages show.
const (
	recentJobs      = 15   // builds and deployments on the dashboard
	projectBuilds   = 20   // builds on a project page
	projectEvents   = 20   // webhook events on a project page
	estimateRuns    = 10   // finished runs the estimate is the median of
	pageLogLines    = 2000 // log lines rendered into a job page; the stream sends the rest
	dashboardFanout = 50   // projects whose jobs a member's dashboard reads
)

// dashboardData is the data of projects.html.
type dashboardData struct {
	Projects    []*store.Project
	Builds      []*store.Build
	Deployments []*store.Deployment
	// Approvals are the deployments waiting for the user's approval.
	Approvals []*store.Deployment
	// HookURL is the webhook address shown after an administrator creates a project.
	HookURL string
	// PickFromGitLab offers GitLab's projects in the new project form.
	PickFromGitLab bool
}

// dashboardPage lists the projects the user can see and their latest builds and deployments.
func (s *Server) dashboardPage(c *gin.Context) {
	projects, err := s.visibleProjects(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	d := dashboardData{Projects: projects, HookURL: s.publicURL(c) + "/hooks/gitlab", PickFromGitLab: s.gitlabProjects() != nil}
	if d.Builds, d.Deployments, err = s.recentJobs(c.Request.Context(), currentUser(c), projects); err != nil {
		s.fail(c, err)
		return
	}
	fillCommitURLs(d.Builds, projects...)
	if d.Approvals, err = s.db.ListApprovals(c.Request.Context(), currentUser(c).ID); err != nil {
		s.fail(c, err)
		return
	}
	s.render(c, http.StatusOK, "projects.html", "projects", d)
}

// visibleProjects returns every project for an administrator, else the user's projects.
func (s *Server) visibleProjects(c *gin.Context) ([]*store.Project, error) {
	u := currentUser(c)
	f := store.ProjectFilter{}
	if !u.Admin {
		f.MemberID = u.ID
	}
	projects, err := s.db.ListProjects(c.Request.Context(), f)
	if err != nil {
		return nil, fmt.Errorf("list projects for %s: %w", u.Name, err)
	}
	return projects, nil
}

// recentJobs returns the newest builds and deployments of the projects u sees: for an
// administrator of all, for others of their projects.
func (s *Server) recentJobs(ctx context.Context, u *store.User, projects []*store.Project) ([]*store.Build, []*store.Deployment, error) {
	if u.Admin {
		builds, err := s.db.ListBuilds(ctx, store.BuildFilter{Limit: recentJobs})
		if err != nil {
			return nil, nil, fmt.Errorf("list recent builds: %w", err)
		}
		deps, err := s.db.ListDeployments(ctx, store.DeploymentFilter{Limit: recentJobs})
		if err != nil {
			return nil, nil, fmt.Errorf("list recent deployments: %w", err)
		}
		return builds, deps, nil
	}
	var builds []*store.Build
	var deps []*store.Deployment
	for i, p := range projects {
		if i == dashboardFanout {
			break
		}
		b, err := s.db.ListBuilds(ctx, store.BuildFilter{ProjectID: p.ID, Limit: recentJobs})
		if err != nil {
			return nil, nil, fmt.Errorf("list builds of %s: %w", p.Name, err)
		}
		d, err := s.db.ListDeployments(ctx, store.DeploymentFilter{ProjectID: p.ID, Limit: recentJobs})
		if err != nil {
			return nil, nil, fmt.Errorf("list deployments of %s: %w", p.Name, err)
		}
		builds, deps = append(builds, b...), append(deps, d...)
	}
	sort.Slice(builds, func(i, j int) bool { return newer(builds[i].QueuedAt, builds[j].QueuedAt, builds[i].ID, builds[j].ID) })
	sort.Slice(deps, func(i, j int) bool { return newer(deps[i].QueuedAt, deps[j].QueuedAt, deps[i].ID, deps[j].ID) })
	return builds[:min(len(builds), recentJobs)], deps[:min(len(deps), recentJobs)], nil
}

// newer orders jobs newest first, by queue time and then id.
func newer(a, b time.Time, aID, bID int64) bool {
	if !a.Equal(b) {
		return a.After(b)
	}
	return aID > bID
}

var hexRE = regexp.MustCompile(`^[0-9a-f]{7,64}$`)

// commitURL returns the GitLab page of a commit, made from the project's clone URL (without
// any user or password in it); "" when the clone URL is not one of a web server.
func commitURL(cloneURL, sha string) string {
	if !hexRE.MatchString(sha) {
		return ""
	}
	if rest, ok := strings.CutPrefix(cloneURL, "git@"); ok {
		host, path, ok := strings.Cut(rest, ":")
		if !ok || host == "" || path == "" {
			return ""
		}
		cloneURL = "https://" + host + "/" + strings.TrimPrefix(path, "/")
	}
	u, err := url.Parse(cloneURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return ""
	}
	u.User, u.RawQuery, u.Fragment = nil, "", ""
	u.Path = strings.TrimSuffix(strings.TrimSuffix(u.Path, "/"), ".git") + "/-/commit/" + sha
	u.RawPath = ""
	return u.String()
}

// fillCommitURLs gives builds without the commit link GitLab sent one made from the clone URL.
func fillCommitURLs(builds []*store.Build, projects ...*store.Project) {
	byID := map[int64]*store.Project{}
	for _, p := range projects {
		byID[p.ID] = p
	}
	for _, b := range builds {
		if p := byID[b.ProjectID]; b.CommitURL == "" && p != nil {
			b.CommitURL = commitURL(p.CloneURL, b.SHA)
		}
	}
}

// projectData is the data of project.html.
type projectData struct {
	Project       *store.Project
	Environments  []envView
	Builds        []*store.Build
	BuildEstimate time.Duration
	Versions      []*store.Version
	Deployments   []*store.Deployment
	Events        []*store.Event
}

// envView is one environment on the project page: its hosts and what each runs, the
// deployment in progress, how many wait, and how long one usually takes.
type envView struct {
	Env      *store.Environment
	Hosts    []hostCell
	Running  *store.Deployment
	Queued   int
	Estimate time.Duration
	// Gated counts deployments awaiting approval or scheduled; Frozen is the freeze in force.
	Gated  int
	Frozen *store.FreezeWindow
	// Strategy is the one a deployment of the newest version would apply, and where it comes from.
	Strategy appliedStrategy
}

// hostCell is one host of the grid and the version it runs now ("" for none).
type hostCell struct {
	Host, Version, Previous, Status string
	Since                           time.Time
	// Live is the host's step in the deployment running in its environment, if any.
	Live *store.HostStep
}

// projectPage shows a project: what runs where, its builds, versions, deployments and events.
func (s *Server) projectPage(c *gin.Context) {
	ctx, p := c.Request.Context(), projectOf(c)
	d := projectData{Project: p}
	var err error
	if d.Environments, err = s.environmentGrid(ctx, p); err != nil {
		s.fail(c, err)
		return
	}
	if err = s.projectJobs(ctx, p, &d); err != nil {
		s.fail(c, err)
		return
	}
	s.render(c, http.StatusOK, "project.html", "projects", d)
}

// projectJobs loads the builds, versions, deployments, events and build estimate of p into d.
func (s *Server) projectJobs(ctx context.Context, p *store.Project, d *projectData) error {
	var err error
	if d.Builds, err = s.db.ListBuilds(ctx, store.BuildFilter{ProjectID: p.ID, Limit: projectBuilds}); err != nil {
		return fmt.Errorf("list builds of %s: %w", p.Name, err)
	}
	fillCommitURLs(d.Builds, p)
	if d.BuildEstimate, err = s.buildEstimate(ctx, p.ID); err != nil {
		return err
	}
	if d.Versions, err = s.db.ListVersions(ctx, p.ID, false); err != nil {
		return fmt.Errorf("list versions of %s: %w", p.Name, err)
	}
	if d.Deployments, err = s.db.ListDeployments(ctx, store.DeploymentFilter{ProjectID: p.ID, Limit: recentJobs}); err != nil {
		return fmt.Errorf("list deployments of %s: %w", p.Name, err)
	}
	if d.Events, err = s.db.ListEvents(ctx, p.ID, projectEvents); err != nil {
		return fmt.Errorf("list webhook events of %s: %w", p.Name, err)
	}
	return nil
}

// environmentGrid returns p's environments with the version each host runs and what is in
// progress there.
func (s *Server) environmentGrid(ctx context.Context, p *store.Project) ([]envView, error) {
	envs, err := s.db.ListEnvironments(ctx, p.ID)
	if err != nil {
		return nil, fmt.Errorf("list environments of %s: %w", p.Name, err)
	}
	instances, err := s.db.ListInstances(ctx, p.ID)
	if err != nil {
		return nil, fmt.Errorf("list instances of %s: %w", p.Name, err)
	}
	byHost := map[string]*store.Instance{}
	for _, in := range instances {
		byHost[in.Host] = in
	}
	active, err := s.db.ListDeployments(ctx, store.DeploymentFilter{ProjectID: p.ID,
		Status: []string{store.DeploymentQueued, store.DeploymentRunning, store.DeploymentAwaitingApproval, store.DeploymentScheduled}, Limit: 200})
	if err != nil {
		return nil, fmt.Errorf("list deployments in progress of %s: %w", p.Name, err)
	}
	newest, err := s.newestVersion(ctx, p.ID)
	if err != nil {
		return nil, fmt.Errorf("find the newest version of %s: %w", p.Name, err)
	}
	views := make([]envView, 0, len(envs))
	for _, e := range envs {
		v := envView{Env: e, Frozen: store.FrozenAt(e.Freezes, time.Now()), Strategy: strategyFor(nil, e, newest)}
		for _, h := range e.Hosts {
			cell := hostCell{Host: h}
			if in := byHost[h]; in != nil {
				cell.Version, cell.Previous, cell.Status, cell.Since = in.Version, in.Previous, in.Status, in.Since
			}
			v.Hosts = append(v.Hosts, cell)
		}
		for _, dep := range active {
			switch {
			case dep.EnvironmentID != e.ID:
			case dep.Status == store.DeploymentRunning:
				v.Running = dep
			case store.DeploymentWaiting(dep.Status):
				v.Gated++
			default:
				v.Queued++
			}
		}
		if err := s.fillLiveSteps(ctx, &v); err != nil {
			return nil, err
		}
		if v.Estimate, err = s.deploymentEstimate(ctx, p.ID, e.ID); err != nil {
			return nil, err
		}
		views = append(views, v)
	}
	return views, nil
}

// buildEstimate is the median time of the project's last good builds; 0 without any.
func (s *Server) buildEstimate(ctx context.Context, projectID int64) (time.Duration, error) {
	builds, err := s.db.ListBuilds(ctx, store.BuildFilter{ProjectID: projectID, Status: []string{store.BuildSuccess}, Limit: estimateRuns})
	if err != nil {
		return 0, fmt.Errorf("list earlier builds for the estimate: %w", err)
	}
	var ds []time.Duration
	for _, b := range builds {
		ds = appendRun(ds, b.StartedAt, b.FinishedAt)
	}
	return median(ds), nil
}

// deploymentEstimate is the median time of the last good deployments of a project to one
// environment; 0 without any.
func (s *Server) deploymentEstimate(ctx context.Context, projectID, envID int64) (time.Duration, error) {
	deps, err := s.db.ListDeployments(ctx, store.DeploymentFilter{ProjectID: projectID, EnvironmentID: envID,
		Status: []string{store.DeploymentSuccess}, Limit: estimateRuns})
	if err != nil {
		return 0, fmt.Errorf("list earlier deployments for the estimate: %w", err)
	}
	var ds []time.Duration
	for _, d := range deps {
		ds = appendRun(ds, d.StartedAt, d.FinishedAt)
	}
	return median(ds), nil
}

// appendRun adds how long a finished run took.
func appendRun(ds []time.Duration, started, finished *time.Time) []time.Duration {
	if started == nil || finished == nil || !finished.After(*started) {
		return ds
	}
	return append(ds, finished.Sub(*started))
}

// median returns the median of ds (the mean of the middle two for an even count); 0 for none.
func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	sorted := append([]time.Duration(nil), ds...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	mid := len(sorted) / 2
	if len(sorted)%2 == 0 {
		return (sorted[mid-1] + sorted[mid]) / 2
	}
	return sorted[mid]
}
