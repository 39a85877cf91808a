package handlers

import "github.com/gin-gonic/gin"

// registerVersions registers this resource's routes (placeholder until its issue lands).
func (s *Server) registerVersions(r *gin.RouterGroup) {}
