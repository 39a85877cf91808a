package handlers

import (
	"fmt"
	"net/http"

	"github.com/gin-gonic/gin"

	"ferry/store"
)

func (s *Server) registerPages(r gin.IRouter) {
	r.GET("/", s.need(loggedIn), s.projectsPage)
	r.GET("/projects/:project", s.need(projectRead), s.projectPage)
}

// projectsData is the data of projects.html.
type projectsData struct {
	Projects []*store.Project
}

// projectsPage lists the projects the user can see.
func (s *Server) projectsPage(c *gin.Context) {
	projects, err := s.visibleProjects(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	s.render(c, http.StatusOK, "projects.html", "projects", projectsData{Projects: projects})
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

// projectData is the data of project.html.
type projectData struct {
	Project      *store.Project
	Environments []*store.Environment
}

// projectPage shows one project and its environments.
func (s *Server) projectPage(c *gin.Context) {
	p := projectOf(c)
	envs, err := s.db.ListEnvironments(c.Request.Context(), p.ID)
	if err != nil {
		s.fail(c, fmt.Errorf("list environments of %s: %w", p.Name, err))
		return
	}
	s.render(c, http.StatusOK, "project.html", "projects", projectData{Project: p, Environments: envs})
}
