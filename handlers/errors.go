package handlers

import (
	"bytes"
	"errors"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"ferry/store"
)

// ErrorStatus returns the HTTP status for err: the one place where store error codes become
// statuses. Errors that are not *store.Error are internal faults: 500.
func ErrorStatus(err error) int {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return http.StatusRequestEntityTooLarge
	}
	switch store.ErrorCode(err) {
	case "":
		return http.StatusOK
	case store.EINVALID:
		return http.StatusBadRequest
	case store.EUNAUTHORIZED:
		return http.StatusUnauthorized
	case store.EFORBIDDEN:
		return http.StatusForbidden
	case store.ENOTFOUND:
		return http.StatusNotFound
	case store.ECONFLICT:
		return http.StatusConflict
	case store.ETOOLARGE:
		return http.StatusRequestEntityTooLarge
	default:
		return http.StatusInternalServerError
	}
}

// errorMessage is what the user is told about err: its own words for a *store.Error, a
// generic sentence for internal faults (whose details go to the log only).
func errorMessage(err error) string {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return errBodyTooLarge.Message
	}
	if store.ErrorCode(err) == store.EINTERNAL {
		return "internal error; the server log has the details"
	}
	return store.ErrorMessage(err)
}

// isAPI reports whether the request is for the JSON API (or a webhook, which GitLab sends and
// reads as JSON) rather than a page.
func isAPI(c *gin.Context) bool {
	p := c.Request.URL.Path
	return p == "/api" || strings.HasPrefix(p, "/api/") || strings.HasPrefix(p, "/hooks/")
}

// fail answers the request with err: JSON {"error": …} for the API, an error page otherwise.
// Internal errors are logged with their real text.
func (s *Server) fail(c *gin.Context, err error) {
	status := ErrorStatus(err)
	if status >= 500 {
		s.log.Error("request failed", "method", c.Request.Method, "path", c.Request.URL.Path, "err", err)
	}
	if isAPI(c) {
		c.AbortWithStatusJSON(status, gin.H{"error": errorMessage(err)})
		return
	}
	s.renderError(c, status, errorMessage(err))
}

// failAPIOrPage answers with err as JSON for the API and as plain text elsewhere, for
// middleware that runs before the server's pages are at hand.
func failAPIOrPage(c *gin.Context, err error) {
	status := ErrorStatus(err)
	if isAPI(c) {
		c.AbortWithStatusJSON(status, gin.H{"error": errorMessage(err)})
		return
	}
	c.Data(status, "text/plain; charset=utf-8", []byte(errorMessage(err)+"\n"))
	c.Abort()
}

// renderError renders the error page, falling back to plain text if even that fails.
func (s *Server) renderError(c *gin.Context, status int, message string) {
	data := errorPage{Status: status, StatusText: http.StatusText(status), Message: message}
	var buf bytes.Buffer
	if err := s.execute(&buf, c, "error.html", "", data); err != nil {
		s.log.Error("render error page", "err", err)
		c.Data(status, "text/plain; charset=utf-8", []byte(message+"\n"))
		c.Abort()
		return
	}
	c.Data(status, "text/html; charset=utf-8", buf.Bytes())
	c.Abort()
}

// errorPage is the data of error.html.
type errorPage struct {
	Status     int
	StatusText string
	Message    string
}
