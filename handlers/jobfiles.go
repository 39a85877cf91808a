package handlers

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"ferry/store"
)

// Job files up to the store's limit (64 MiB), uploaded as the raw request body rather than
// base64 in JSON, which the 1 MiB limit of other requests caps at about 750 KiB:
//
//	curl -T app.tar.gz -H "Authorization: Bearer $T" .../api/v1/projects/orders/files/app.tar.gz

func (s *Server) registerJobFileUpload(r gin.IRouter) {
	r.PUT("/projects/:project/files/:file", s.need(projectAdmin), s.putJobFile)
}

// errFileTooLarge is the 413 of an upload over the store's limit.
var errFileTooLarge = store.Errorf(store.ETOOLARGE, "file: at most %d MiB (MaxJobFileBytes)", store.MaxJobFileBytes>>20)

// isJobFileUpload reports whether r is a raw file upload (PUT /api/v1/projects/P/files/NAME),
// whose body may be up to the store's file limit instead of MaxBodyBytes.
func isJobFileUpload(r *http.Request) bool {
	if r.Method != http.MethodPut {
		return false
	}
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	return len(parts) == 6 && parts[0] == "api" && parts[1] == "v1" && parts[2] == "projects" && parts[4] == "files"
}

// bodyLimit is how many bytes r's body may have.
func bodyLimit(r *http.Request) int64 {
	if isJobFileUpload(r) {
		return store.MaxJobFileBytes
	}
	return MaxBodyBytes
}

// putJobFile stores the request body as the file named in the path. A body over the limit is
// refused before it is read when it says its length, and as soon as it passes the limit when
// it does not; the body is read once into a buffer of its announced size (the store keeps a
// file as one value, so one copy is held while it is saved).
func (s *Server) putJobFile(c *gin.Context) {
	if c.Request.ContentLength > store.MaxJobFileBytes {
		c.Header("Connection", "close")
		s.fail(c, errFileTooLarge)
		return
	}
	var buf bytes.Buffer
	if n := c.Request.ContentLength; n > 0 {
		buf.Grow(int(n))
	}
	if _, err := io.Copy(&buf, c.Request.Body); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			c.Header("Connection", "close")
			s.fail(c, errFileTooLarge)
			return
		}
		s.fail(c, store.Errorf(store.EINVALID, "file: the upload broke off: %v", err))
		return
	}
	name := c.Param("file")
	f, err := s.db.SaveJobFile(c.Request.Context(), projectOf(c).ID, name, buf.Bytes())
	if err != nil {
		s.fail(c, fmt.Errorf("save the file %q: %w", clip(name, 80), err))
		return
	}
	c.JSON(http.StatusCreated, f)
}
