package handlers

import (
	"net/http"

	"github.com/gin-gonic/gin"

	"ferry/docs"
)

// registerOpenAPI serves the API description the binary was built with. It describes the API,
// not any data, so it needs no login (tools fetch it before they have a token).
func (s *Server) registerOpenAPI(r gin.IRouter) {
	r.GET("/openapi.yaml", s.need(public), func(c *gin.Context) {
		c.Data(http.StatusOK, "application/yaml; charset=utf-8", docs.OpenAPI)
	})
}
