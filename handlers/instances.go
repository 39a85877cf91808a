package handlers

import "github.com/gin-gonic/gin"

// registerInstances registers this resource's routes (placeholder until its issue lands).
func (s *Server) registerInstances(r *gin.RouterGroup) {}
