package handlers

import (
	"fmt"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"ferry/store"
)

// The version page: one version of a project, where it runs now, the changes since the
// version before (loaded by app.js from GET /api/v1/projects/:project/changes) and a button
// that opens the deploy dialog for it.

func (s *Server) registerVersionPages(r gin.IRouter) {
	r.GET("/projects/:project/versions/:version", s.need(projectRead), s.versionPage)
}

// versionData is the data of version.html.
type versionData struct {
	Project *store.Project
	Version *store.Version
	// Build is the build that made the version; nil if it is gone.
	Build *store.Build
	// RunsOn are the hosts where the version is the current one.
	RunsOn []versionPlace
	// Newest says the version is the project's newest kept one (else deploying it may be a
	// rollback, which the deploy dialog's changes say per environment).
	Newest bool
}

// versionPlace is one host running the version, in its environment.
type versionPlace struct {
	Environment, Host, Status string
	Since                     time.Time
}

// versionPage shows a version: its commit, build, size and date, where it runs now, the
// changes since the version before, and deploy (or roll back to) it.
func (s *Server) versionPage(c *gin.Context) {
	ctx, p := c.Request.Context(), projectOf(c)
	v, err := s.versionByNameOrID(ctx, p, c.Param("version"))
	if err != nil {
		s.fail(c, err)
		return
	}
	d := versionData{Project: p, Version: v}
	if b, err := s.db.GetBuild(ctx, v.BuildID); err == nil {
		fillCommitURLs([]*store.Build{b}, p)
		d.Build = b
	} else if !store.IsNotFound(err) {
		s.fail(c, fmt.Errorf("get the build of version %s: %w", v.Name, err))
		return
	}
	instances, err := s.db.ListInstances(ctx, p.ID)
	if err != nil {
		s.fail(c, fmt.Errorf("list instances of %s: %w", p.Name, err))
		return
	}
	for _, in := range instances {
		if in.Version == v.Name {
			d.RunsOn = append(d.RunsOn, versionPlace{Environment: in.Environment, Host: in.Host, Status: in.Status, Since: in.Since})
		}
	}
	newest, err := s.newestVersion(ctx, p.ID)
	if err != nil {
		s.fail(c, fmt.Errorf("find the newest version of %s: %w", p.Name, err))
		return
	}
	d.Newest = newest != nil && newest.ID == v.ID
	s.render(c, http.StatusOK, "version.html", "projects", d)
}
