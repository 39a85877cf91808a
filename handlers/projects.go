package handlers

import (
	"fmt"
	"net/http"

	"github.com/gin-gonic/gin"

	"ferry/store"
)

func (s *Server) registerProjects(r gin.IRouter) {
	r.GET("/projects", s.need(loggedIn), s.listProjects)
	r.POST("/projects", s.need(adminOnly), s.createProject)
	r.GET("/projects/:project", s.need(projectRead), s.getProject)
	r.PATCH("/projects/:project", s.need(projectAdmin), s.updateProject)
	r.DELETE("/projects/:project", s.need(projectAdmin), s.deleteProject)
}

// projectInput is the body of a project create or update; absent fields are nil.
type projectInput struct {
	Name          *string        `json:"name"`
	GitLabPath    *string        `json:"gitlab_path"`
	CloneURL      *string        `json:"clone_url"`
	WebhookSecret *string        `json:"webhook_secret"`
	GitLabToken   *string        `json:"gitlab_token"`
	Trigger       *store.Trigger `json:"trigger"`
	KeepVersions  *int           `json:"keep_versions"`
	TagTemplate   *string        `json:"tag_template"`
	// CloneCredentials is "user:token" for an http(s) clone URL; write-only. Credentials
	// written into clone_url are taken out of it and kept here.
	CloneCredentials *string `json:"clone_credentials"`

	// WebhookSigningToken is GitLab's webhook signing token (whsec_…); "" removes it.
	WebhookSigningToken *string `json:"webhook_signing_token"`
}

// projectView is a project as the API shows it: secrets replaced by whether they are set.
type projectView struct {
	*store.Project
	HasWebhookSecret bool   `json:"has_webhook_secret"`
	HasGitLabToken   bool   `json:"has_gitlab_token"`
	WebhookURL       string `json:"webhook_url"`
	// WebhookSecret is set only in the answer to a create that generated the secret.
	WebhookSecret string `json:"webhook_secret,omitempty"`

	HasCloneCredentials bool `json:"has_clone_credentials"`
	// HasWebhookSigningToken says whether deliveries must carry a valid signature.
	HasWebhookSigningToken bool `json:"has_webhook_signing_token"`
}

func (s *Server) projectView(p *store.Project) projectView {
	p.Trigger = normalTrigger(p.Trigger)
	return projectView{
		Project:          p,
		HasWebhookSecret: p.WebhookSecret != "",
		HasGitLabToken:   p.GitLabToken != "",
		WebhookURL:       s.baseURL + "/hooks/gitlab",

		HasCloneCredentials:    p.CloneCredentials != "",
		HasWebhookSigningToken: p.WebhookSigningToken != "",
	}
}

// normalTrigger makes empty lists and maps show as [] and {} rather than null.
func normalTrigger(t store.Trigger) store.Trigger {
	if t.Branches == nil {
		t.Branches = []string{}
	}
	if t.Deploy == nil {
		t.Deploy = map[string]string{}
	}
	return t
}

// createProject creates a project; without a webhook_secret it generates one and shows it in
// this answer only.
func (s *Server) createProject(c *gin.Context) {
	var in projectInput
	if !s.bindJSON(c, &in) {
		return
	}
	p := &store.Project{KeepVersions: 20, Trigger: store.DefaultTrigger()}
	in.applyTo(p)
	generated := ""
	if p.WebhookSecret == "" {
		generated = store.RandomSecret(24)
		p.WebhookSecret = generated
	}
	if err := s.db.CreateProject(c.Request.Context(), p); err != nil {
		s.fail(c, fmt.Errorf("create project %q: %w", p.Name, err))
		return
	}
	view := s.projectView(p)
	view.WebhookSecret = generated
	c.JSON(http.StatusCreated, view)
}

// applyTo copies the given fields onto p.
func (in *projectInput) applyTo(p *store.Project) {
	set(&p.Name, in.Name)
	set(&p.GitLabPath, in.GitLabPath)
	set(&p.CloneURL, in.CloneURL)
	set(&p.WebhookSecret, in.WebhookSecret)
	set(&p.GitLabToken, in.GitLabToken)
	set(&p.KeepVersions, in.KeepVersions)
	set(&p.TagTemplate, in.TagTemplate)
	set(&p.CloneCredentials, in.CloneCredentials)
	set(&p.WebhookSigningToken, in.WebhookSigningToken)
	if in.Trigger != nil {
		p.Trigger = normalTrigger(*in.Trigger)
	}
}

// set copies *from to *to when from is given.
func set[T any](to *T, from *T) {
	if from != nil {
		*to = *from
	}
}

func (s *Server) getProject(c *gin.Context) {
	c.JSON(http.StatusOK, s.projectView(projectOf(c)))
}

func (s *Server) updateProject(c *gin.Context) {
	var in projectInput
	if !s.bindJSON(c, &in) {
		return
	}
	name := projectOf(c).Name
	upd := store.ProjectUpdate{
		Name: in.Name, GitLabPath: in.GitLabPath, CloneURL: in.CloneURL,
		WebhookSecret: in.WebhookSecret, GitLabToken: in.GitLabToken,
		TagTemplate: in.TagTemplate, KeepVersions: in.KeepVersions,
		CloneCredentials:    in.CloneCredentials,
		WebhookSigningToken: in.WebhookSigningToken,
	}
	if in.Trigger != nil {
		t := normalTrigger(*in.Trigger)
		upd.Trigger = &t
	}
	p, err := s.db.UpdateProject(c.Request.Context(), name, upd)
	if err != nil {
		s.fail(c, fmt.Errorf("update project %q: %w", name, err))
		return
	}
	c.JSON(http.StatusOK, s.projectView(p))
}

func (s *Server) deleteProject(c *gin.Context) {
	name := projectOf(c).Name
	if err := s.db.DeleteProject(c.Request.Context(), name); err != nil {
		s.fail(c, fmt.Errorf("delete project %q: %w", name, err))
		return
	}
	c.Status(http.StatusNoContent)
}
