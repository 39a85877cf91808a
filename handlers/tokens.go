package handlers

import (
	"fmt"
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"ferry/store"
)

func (s *Server) registerTokens(r gin.IRouter) {
	r.GET("/user/tokens", s.need(loggedIn), s.listTokens)
	r.POST("/user/tokens", s.need(loggedIn), s.createToken)
	r.DELETE("/user/tokens/:id", s.need(loggedIn), s.deleteToken)
}

// tokenInput is the body of a token create.
type tokenInput struct {
	Name string `json:"name"`
}

// newTokenView is a token as its create answer shows it: the only time its secret is shown.
type newTokenView struct {
	*store.Token
	Secret string `json:"token"`
}

func (s *Server) listTokens(c *gin.Context) {
	u := currentUser(c)
	tokens, err := s.db.ListTokens(c.Request.Context(), u.ID)
	if err != nil {
		s.fail(c, fmt.Errorf("list tokens of %s: %w", u.Name, err))
		return
	}
	if tokens == nil {
		tokens = []*store.Token{}
	}
	c.JSON(http.StatusOK, tokens)
}

func (s *Server) createToken(c *gin.Context) {
	var in tokenInput
	if !s.bindJSON(c, &in) {
		return
	}
	u := currentUser(c)
	t, secret, err := s.db.CreateToken(c.Request.Context(), u.ID, in.Name)
	if err != nil {
		s.fail(c, fmt.Errorf("create token %q for %s: %w", in.Name, u.Name, err))
		return
	}
	c.JSON(http.StatusCreated, newTokenView{Token: t, Secret: secret})
}

func (s *Server) deleteToken(c *gin.Context) {
	id, err := parseID("id", c.Param("id"))
	if err != nil {
		s.fail(c, err)
		return
	}
	u := currentUser(c)
	if err := s.db.DeleteToken(c.Request.Context(), u.ID, id); err != nil {
		s.fail(c, fmt.Errorf("delete token %d of %s: %w", id, u.Name, err))
		return
	}
	c.Status(http.StatusNoContent)
}

// parseID reads a numeric path or query parameter, with an EINVALID error naming it.
func parseID(field, s string) (int64, error) {
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id < 0 {
		return 0, store.Errorf(store.EINVALID, "%s: %q is not a number", field, clip(s, 40))
	}
	return id, nil
}
