package handlers

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"ferry/store"
)

func (s *Server) registerVersions(r *gin.RouterGroup) {
	s.finders["version"] = func(ctx context.Context, db *store.DB, id int64) (int64, string, error) {
		v, err := db.GetVersion(ctx, id)
		if err != nil {
			return 0, "", err
		}
		return v.ProjectID, "", nil
	}
	r.GET("/projects/:project/versions", s.need(projectRead), s.listVersions)
	r.GET("/versions/:version/artifact", s.need(projectRead), s.downloadArtifact)
}

// listVersions lists the project's kept versions newest first; ?deleted=true adds the ones
// retention removed.
func (s *Server) listVersions(c *gin.Context) {
	withDeleted := c.Query("deleted") == "true"
	versions, err := s.db.ListVersions(c.Request.Context(), projectOf(c).ID, withDeleted)
	if err != nil {
		s.fail(c, fmt.Errorf("list versions: %w", err))
		return
	}
	c.JSON(http.StatusOK, emptyIfNil(versions))
}

// downloadArtifact streams a version's artifact with its length and sha256, as a .tar.gz
// (application/gzip) or a plain .tar (application/x-tar) as its first bytes say: builds gzip
// only what shrinks. A version removed by retention is 410 Gone.
func (s *Server) downloadArtifact(c *gin.Context) {
	id, _ := parseID("version", c.Param("version"))
	v, err := s.db.GetVersion(c.Request.Context(), id)
	if err != nil {
		s.fail(c, err)
		return
	}
	if v.DeletedAt != nil {
		s.gone(c, fmt.Sprintf("version %s was removed by retention on %s (the project keeps its newest %d versions)", v.Name, v.DeletedAt.UTC().Format("2006-01-02 15:04 MST"), projectOf(c).KeepVersions))
		return
	}
	src, err := s.openArtifact(c.Request.Context(), v)
	if store.IsNotFound(err) {
		s.gone(c, fmt.Sprintf("the artifact of version %s is missing from this ferry's artifact store", v.Name))
		return
	}
	if err != nil {
		s.fail(c, fmt.Errorf("open artifact of version %s: %w", v.Name, err))
		return
	}
	defer src.Close()
	body := bufio.NewReaderSize(src, 64<<10)
	magic, _ := body.Peek(2) // fewer bytes: not gzip; the copy below reports a short artifact
	contentType, ext := "application/x-tar", ".tar"
	if len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		contentType, ext = "application/gzip", ".tar.gz"
	}
	h := c.Writer.Header()
	h.Set("Content-Type", contentType)
	h.Set("Content-Length", strconv.FormatInt(v.Size, 10))
	h.Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s-%s%s"`, v.Project, v.Name, ext))
	h.Set("X-Checksum-Sha256", v.SHA256)
	// The server's write timeout suits pages, not a large artifact on a slow link: allow
	// an hour (at least 64 KiB/s for the largest artifacts).
	_ = http.NewResponseController(c.Writer).SetWriteDeadline(time.Now().Add(max(time.Hour, time.Duration(v.Size/(64<<10))*time.Second)))
	c.Status(http.StatusOK)
	if _, err := io.CopyN(c.Writer, body, v.Size); err != nil {
		s.log.Warn("send artifact", "version", v.Name, "err", err)
	}
}

// openArtifact opens the version's artifact file when this machine has it, else streams it
// from the database (PostgreSQL), one chunk at a time. ENOTFOUND when neither has it.
func (s *Server) openArtifact(ctx context.Context, v *store.Version) (io.ReadCloser, error) {
	f, err := os.Open(v.Path)
	if err == nil {
		return f, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if v.ArtifactID == nil {
		return nil, store.Errorf(store.ENOTFOUND, "the artifact of version %s is missing", v.Name)
	}
	return s.db.OpenArtifact(ctx, v)
}

// gone answers 410 with the reason in words: the thing existed and will not come back.
func (s *Server) gone(c *gin.Context, msg string) {
	c.AbortWithStatusJSON(http.StatusGone, gin.H{"error": msg})
}
