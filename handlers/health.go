package handlers

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
)

func (s *Server) registerHealth(r gin.IRouter) {
	r.GET("/healthz", s.need(public), s.healthz)
	r.GET("/readyz", s.need(public), s.readyz)
}

// healthz answers 200 as long as the process serves HTTP.
func (s *Server) healthz(c *gin.Context) {
	c.String(http.StatusOK, "ok\n")
}

// readyz answers 200 when the database answers and has every migration, else 503 with why.
func (s *Server) readyz(c *gin.Context) {
	if reason := s.notReady(c.Request.Context()); reason != "" {
		s.log.Warn("not ready", "reason", reason)
		c.String(http.StatusServiceUnavailable, "not ready: %s\n", reason)
		return
	}
	c.String(http.StatusOK, "ok\n")
}

// notReady returns why the server cannot serve requests, or "".
func (s *Server) notReady(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := s.db.Ping(ctx); err != nil {
		return fmt.Sprintf("the database does not answer: %v", err)
	}
	n, err := s.db.Pending(ctx)
	if err != nil {
		return fmt.Sprintf("cannot read the applied migrations (has \"ferry migrate\" run?): %v", err)
	}
	if n > 0 {
		return fmt.Sprintf("%d database migrations are not applied; run \"ferry migrate\"", n)
	}
	return ""
}
