package handlers

import "github.com/gin-gonic/gin"

// registerStreams registers this resource's routes (placeholder until its issue lands).
func (s *Server) registerStreams(r *gin.RouterGroup) {}
