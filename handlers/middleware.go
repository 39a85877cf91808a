package handlers

import (
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/gin-gonic/gin"

	"ferry/store"
)

// MaxBodyBytes is the largest request body ferry reads.
const MaxBodyBytes = 1 << 20

// errBodyTooLarge is the answer to a body over MaxBodyBytes.
var errBodyTooLarge = store.Errorf(store.ETOOLARGE, "request body too large (limit 1 MiB)")

// recoverPanic turns a panic in a handler into a logged 500, so one bad request cannot take
// the server down.
func (s *Server) recoverPanic(c *gin.Context) {
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			err := fmt.Errorf("panic: %v\n%s", p, debug.Stack())
			if c.Writer.Written() {
				s.log.Error("request failed after its answer began", "method", c.Request.Method, "path", c.Request.URL.Path, "err", err)
			} else {
				s.fail(c, err) // logs err
			}
			c.Abort()
		}
	}()
	c.Next()
}

// logRequest logs every request at debug level, and server errors at error level.
func (s *Server) logRequest(c *gin.Context) {
	start := time.Now()
	c.Next()
	level := slog.LevelDebug
	if c.Writer.Status() >= 500 {
		level = slog.LevelWarn
	}
	s.log.Log(c.Request.Context(), level, "request", "method", c.Request.Method,
		"path", c.Request.URL.Path, "status", c.Writer.Status(),
		"duration", time.Since(start), "remote", c.ClientIP())
}

// securityHeaders keeps pages from being framed, sniffed or given scripts from elsewhere.
func securityHeaders(c *gin.Context) {
	h := c.Writer.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'self'; object-src 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("X-Content-Type-Options", "nosniff")
	c.Next()
}

// limitBody refuses bodies that say they are too large, and caps every body at MaxBodyBytes
// for those that lie about their length or do not give it.
func limitBody(c *gin.Context) {
	limit := bodyLimit(c.Request) // a raw job file upload may be larger (jobfiles.go)
	if c.Request.ContentLength > limit && limit == MaxBodyBytes {
		c.Header("Connection", "close")
		failAPIOrPage(c, errBodyTooLarge)
		return
	}
	if c.Request.Body != nil {
		c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, limit)
	}
	c.Next()
}
