package handlers

import (
	"fmt"
	"net/http"

	"github.com/gin-gonic/gin"

	"ferry/store"
)

func (s *Server) registerAudit(r gin.IRouter) {
	r.GET("/audit", s.need(adminOnly), s.listAudit)
}

// listAudit returns audit entries newest first: ?limit= (default 100, at most 1000),
// ?before= an entry id for the next page, ?target= such as project/orders.
func (s *Server) listAudit(c *gin.Context) {
	f := store.AuditFilter{Target: c.Query("target")}
	if v := c.Query("limit"); v != "" {
		n, err := parseID("limit", v)
		if err != nil || n < 1 || n > 1000 {
			s.fail(c, store.Errorf(store.EINVALID, "limit: %q is not a number between 1 and 1000", clip(v, 40)))
			return
		}
		f.Limit = int(n)
	}
	if v := c.Query("before"); v != "" {
		id, err := parseID("before", v)
		if err != nil {
			s.fail(c, err)
			return
		}
		f.BeforeID = id
	}
	entries, err := s.db.ListAudit(c.Request.Context(), f)
	if err != nil {
		s.fail(c, fmt.Errorf("list audit entries: %w", err))
		return
	}
	c.JSON(http.StatusOK, entries)
}
