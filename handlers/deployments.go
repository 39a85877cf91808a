package handlers

import "github.com/gin-gonic/gin"

// registerDeployments registers this resource's routes (placeholder until its issue lands).
func (s *Server) registerDeployments(r *gin.RouterGroup) {}
