package handlers

import (
	"context"
	"fmt"
	"net/http"
	"sort"

	"github.com/gin-gonic/gin"

	"ferry/store"
)

// The guided first run: an empty ferry shows its administrators the steps to a first
// deployment (a host with a confirmed key, a project, an environment that a good build of a
// branch deploys to, GitLab's webhook, a push), on /setup and in a banner over every page
// until a deployment has succeeded. Each step's page links on to the next.

func (s *Server) registerSetup(r gin.IRouter) {
	r.GET("/setup", s.need(adminOnly), s.setupPage)
}

// The steps of the first run, in order.
const (
	setupHost        = "host"
	setupProject     = "project"
	setupEnvironment = "environment"
	setupWebhook     = "webhook"
	setupDeploy      = "deploy"
)

// setupStep is one step of the first run: what to do, where, and whether it is done.
type setupStep struct {
	Key  string
	Href string
	Done bool
}

// setupState is how far this ferry is on the way to its first deployment.
type setupState struct {
	Steps []setupStep
	// Current is the index of the first step not done; Next is that step.
	Current int
	Next    *setupStep
	// Project is the first project, when there is one.
	Project *store.Project
	// Branch and Environment are where a push deploys to, once the environment step is done.
	Branch, Environment string
	// Deployment is the project's latest deployment, if any.
	Deployment *store.Deployment
}

// Number is the 1-based number of the current step.
func (st *setupState) Number() int { return st.Current + 1 }

// readSetup works out the first run's state from the store. It returns nil when a deployment
// has succeeded (ferry is set up), which it remembers.
func (s *Server) readSetup(ctx context.Context) (*setupState, error) {
	if s.setupDone.Load() {
		return nil, nil
	}
	st := &setupState{}
	hostDone, err := s.setupHostDone(ctx)
	if err != nil {
		return nil, err
	}
	projects, err := s.db.ListProjects(ctx, store.ProjectFilter{})
	if err != nil {
		return nil, fmt.Errorf("list projects: %w", err)
	}
	var envDone, hookDone, deployDone bool
	if len(projects) > 0 {
		sort.Slice(projects, func(i, j int) bool { return projects[i].ID < projects[j].ID })
		st.Project = projects[0]
		if envDone, err = s.setupEnvironmentDone(ctx, st); err != nil {
			return nil, err
		}
		events, err := s.db.ListEvents(ctx, st.Project.ID, 1)
		if err != nil {
			return nil, fmt.Errorf("list webhook events: %w", err)
		}
		hookDone = len(events) > 0
		if deployDone, err = s.setupDeployDone(ctx, st); err != nil {
			return nil, err
		}
	}
	if deployDone {
		s.setupDone.Store(true)
		return nil, nil
	}
	settings, project := "/", "/"
	if st.Project != nil {
		settings, project = "/projects/"+st.Project.Name+"/settings", "/projects/"+st.Project.Name
	}
	st.Steps = []setupStep{
		{Key: setupHost, Href: "/hosts", Done: hostDone},
		{Key: setupProject, Href: "/#new-project", Done: st.Project != nil},
		{Key: setupEnvironment, Href: settings + "#environments", Done: envDone},
		{Key: setupWebhook, Href: settings + "#webhook", Done: hookDone},
		{Key: setupDeploy, Href: project, Done: deployDone},
	}
	for st.Current < len(st.Steps)-1 && st.Steps[st.Current].Done {
		st.Current++
	}
	st.Next = &st.Steps[st.Current]
	return st, nil
}

// setupHostDone says whether some host has a private key and a confirmed host key.
func (s *Server) setupHostDone(ctx context.Context) (bool, error) {
	hosts, err := s.db.ListHosts(ctx)
	if err != nil {
		return false, fmt.Errorf("list hosts: %w", err)
	}
	for _, h := range hosts {
		if h.PrivateKey != "" && h.HostKey != "" {
			return true, nil
		}
	}
	return false, nil
}

// setupEnvironmentDone says whether the project has an environment with hosts that a good
// build of some branch deploys to, and fills in which.
func (s *Server) setupEnvironmentDone(ctx context.Context, st *setupState) (bool, error) {
	envs, err := s.db.ListEnvironments(ctx, st.Project.ID)
	if err != nil {
		return false, fmt.Errorf("list environments: %w", err)
	}
	branches := make([]string, 0, len(st.Project.Trigger.Deploy))
	for b := range st.Project.Trigger.Deploy {
		branches = append(branches, b)
	}
	sort.Strings(branches)
	for _, b := range branches {
		for _, e := range envs {
			if e.Name == st.Project.Trigger.Deploy[b] && len(e.Hosts) > 0 {
				st.Branch, st.Environment = b, e.Name
				return true, nil
			}
		}
	}
	return false, nil
}

// setupDeployDone says whether a deployment of the project succeeded, and keeps the latest.
func (s *Server) setupDeployDone(ctx context.Context, st *setupState) (bool, error) {
	deps, err := s.db.ListDeployments(ctx, store.DeploymentFilter{ProjectID: st.Project.ID, Limit: 1})
	if err != nil {
		return false, fmt.Errorf("list deployments: %w", err)
	}
	if len(deps) > 0 {
		st.Deployment = deps[0]
	}
	ok, err := s.db.ListDeployments(ctx, store.DeploymentFilter{ProjectID: st.Project.ID, Status: []string{store.DeploymentSuccess}, Limit: 1})
	if err != nil {
		return false, fmt.Errorf("list deployments: %w", err)
	}
	return len(ok) > 0, nil
}

// setupData is the data of setup.html.
type setupData struct {
	State   *setupState
	HookURL string
}

// setupPage shows the steps of the first run, or says that ferry is set up.
func (s *Server) setupPage(c *gin.Context) {
	st, err := s.readSetup(c.Request.Context())
	if err != nil {
		s.fail(c, err)
		return
	}
	s.render(c, http.StatusOK, "setup.html", "setup", setupData{State: st, HookURL: s.publicURL(c) + "/hooks/gitlab"})
}

// setupBanner returns the first run's state for the banner over the pages of an
// administrator, nil for everyone else and once ferry is set up. A failure to read it only
// leaves the banner out.
func (s *Server) setupBanner(c *gin.Context) *setupState {
	u := currentUser(c)
	if u == nil || !u.Admin || s.setupDone.Load() {
		return nil
	}
	st, err := s.readSetup(c.Request.Context())
	if err != nil {
		s.log.Warn("read the first run's state", "error", err)
		return nil
	}
	return st
}
