package handlers

import (
	"context"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"ferry/store"
)

// GitLabProjects finds projects on the configured GitLab (build.Frontend), so an
// administrator creating a project picks it instead of typing its path and clone URL.
type GitLabProjects interface {
	// HasGitLab reports whether a GitLab address is configured.
	HasGitLab() bool
	// SearchProjects lists the projects whose name or path holds search.
	SearchProjects(ctx context.Context, search string) ([]store.GitLabProject, error)
}

func (s *Server) registerGitLabProjects(r gin.IRouter) {
	r.GET("/gitlab/projects", s.need(adminOnly), s.searchGitLabProjects)
}

// gitlabProjects returns the project finder when a GitLab is configured, else nil.
func (s *Server) gitlabProjects() GitLabProjects {
	if g, ok := s.gitlab.(GitLabProjects); ok && g != nil && g.HasGitLab() {
		return g
	}
	return nil
}

// searchGitLabProjects answers GET /gitlab/projects?search=orders.
func (s *Server) searchGitLabProjects(c *gin.Context) {
	g := s.gitlabProjects()
	if g == nil {
		s.fail(c, store.Errorf(store.EINVALID, "no GitLab address is configured: set FERRY_GITLAB_URL and FERRY_GITLAB_TOKEN to pick projects from GitLab"))
		return
	}
	search := strings.TrimSpace(c.Query("search"))
	if len(search) > 100 {
		s.fail(c, store.Errorf(store.EINVALID, "search: at most 100 characters"))
		return
	}
	projects, err := g.SearchProjects(c.Request.Context(), search)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, projects)
}
