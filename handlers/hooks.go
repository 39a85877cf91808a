package handlers

import "github.com/gin-gonic/gin"

// registerHooks registers this resource's routes (placeholder until its issue lands).
func (s *Server) registerHooks(r *gin.Engine) {}

// GitLab is what the webhook needs of the build package (placeholder).
type GitLab interface{}
