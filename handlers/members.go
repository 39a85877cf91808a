package handlers

import (
	"fmt"
	"net/http"

	"github.com/gin-gonic/gin"

	"ferry/store"
)

func (s *Server) registerMembers(r gin.IRouter) {
	r.GET("/projects/:project/members", s.need(projectRead), s.listMembers)
	r.POST("/projects/:project/members", s.need(projectAdmin), s.setMember)
	r.DELETE("/projects/:project/members/:user", s.need(projectAdmin), s.removeMember)
}

// memberInput is the body of a member create: the user's name and the production right.
type memberInput struct {
	User       string `json:"user"`
	Production bool   `json:"production"`
}

func (s *Server) listMembers(c *gin.Context) {
	p := projectOf(c)
	members, err := s.db.ListMembers(c.Request.Context(), p.ID)
	if err != nil {
		s.fail(c, fmt.Errorf("list members of %s: %w", p.Name, err))
		return
	}
	if members == nil {
		members = []*store.Member{}
	}
	c.JSON(http.StatusOK, members)
}

// setMember adds a user to the project, or changes their production right if they are one.
func (s *Server) setMember(c *gin.Context) {
	var in memberInput
	if !s.bindJSON(c, &in) {
		return
	}
	if in.User == "" {
		s.fail(c, store.Errorf(store.EINVALID, "user: required"))
		return
	}
	p := projectOf(c)
	m, err := s.db.SetMember(c.Request.Context(), p.ID, in.User, in.Production)
	if err != nil {
		s.fail(c, fmt.Errorf("add %q to project %s: %w", in.User, p.Name, err))
		return
	}
	c.JSON(http.StatusCreated, m)
}

func (s *Server) removeMember(c *gin.Context) {
	p := projectOf(c)
	user := c.Param("user")
	if err := s.db.RemoveMember(c.Request.Context(), p.ID, user); err != nil {
		s.fail(c, fmt.Errorf("remove %q from project %s: %w", user, p.Name, err))
		return
	}
	c.Status(http.StatusNoContent)
}
