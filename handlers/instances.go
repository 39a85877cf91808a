package handlers

import (
	"fmt"
	"net/http"

	"github.com/gin-gonic/gin"

	"ferry/store"
)

func (s *Server) registerInstances(r *gin.RouterGroup) {
	r.GET("/projects/:project/instances", s.need(projectRead), s.listInstances)
}

// listInstances says what runs where: per host of the project, the version current points at,
// the releases kept there, how the last deployment there ended and since when.
func (s *Server) listInstances(c *gin.Context) {
	p := projectOf(c)
	list, err := s.db.ListInstances(c.Request.Context(), p.ID)
	if err != nil {
		s.fail(c, fmt.Errorf("list the instances of %s: %w", p.Name, err))
		return
	}
	if list == nil {
		list = []*store.Instance{}
	}
	for _, in := range list {
		if in.Releases == nil {
			in.Releases = []string{}
		}
	}
	c.JSON(http.StatusOK, list)
}
