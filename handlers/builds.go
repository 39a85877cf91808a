package handlers

import "github.com/gin-gonic/gin"

// registerBuilds registers this resource's routes (placeholder until its issue lands).
func (s *Server) registerBuilds(r *gin.RouterGroup) {}
