package handlers

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strings"

	"github.com/gin-gonic/gin"

	"ferry/store"
)

func (s *Server) registerBuilds(r *gin.RouterGroup) {
	s.finders["build"] = func(ctx context.Context, db *store.DB, id int64) (int64, string, error) {
		b, err := db.GetBuild(ctx, id)
		if err != nil {
			return 0, "", err
		}
		return b.ProjectID, "", nil
	}
	r.GET("/projects/:project/events", s.need(projectRead), s.listEvents)
	r.GET("/projects/:project/builds", s.need(projectRead), s.listBuilds)
	r.POST("/projects/:project/builds", s.need(projectBuild), s.createBuild)
	r.GET("/builds/:build", s.need(projectRead), s.getBuild)
	r.POST("/builds/:build/cancel", s.need(projectBuild), s.cancelBuild)
	r.GET("/builds/:build/log", s.need(projectRead), s.buildLog)
}

// listEvents lists the project's webhook events, newest first, with what ferry decided.
func (s *Server) listEvents(c *gin.Context) {
	limit, err := buildsLimit(c, 50, 500)
	if err != nil {
		s.fail(c, err)
		return
	}
	events, err := s.db.ListEvents(c.Request.Context(), projectOf(c).ID, limit)
	if err != nil {
		s.fail(c, fmt.Errorf("list events: %w", err))
		return
	}
	c.JSON(http.StatusOK, emptyIfNil(events))
}

var buildStatuses = map[string]bool{
	store.BuildPending: true, store.BuildRunning: true, store.BuildSuccess: true, store.BuildFailed: true,
	store.BuildTimeout: true, store.BuildCanceled: true, store.BuildDuplicate: true,
}

// listBuilds lists the project's builds newest first: ?status=a,b ?before=<id> ?limit=.
func (s *Server) listBuilds(c *gin.Context) {
	f := store.BuildFilter{ProjectID: projectOf(c).ID}
	var err error
	if f.Limit, err = buildsLimit(c, 50, 500); err != nil {
		s.fail(c, err)
		return
	}
	if v := c.Query("before"); v != "" {
		if f.BeforeID, err = parseID("before", v); err != nil {
			s.fail(c, err)
			return
		}
	}
	for _, st := range strings.FieldsFunc(c.Query("status"), func(r rune) bool { return r == ',' }) {
		if !buildStatuses[st] {
			s.fail(c, store.Errorf(store.EINVALID, "status: %q is not one of pending, running, success, failed, timeout, canceled, duplicate", clip(st, 40)))
			return
		}
		f.Status = append(f.Status, st)
	}
	builds, err := s.db.ListBuilds(c.Request.Context(), f)
	if err != nil {
		s.fail(c, fmt.Errorf("list builds: %w", err))
		return
	}
	c.JSON(http.StatusOK, emptyIfNil(builds))
}

// buildInput asks for a build of a branch or tag (resolved to its commit now) or of a commit.
// With both, ref only names the commit's branch.
type buildInput struct {
	Ref string `json:"ref"`
	SHA string `json:"sha"`
}

var (
	refRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._/+-]*$`)
)

func (in *buildInput) validate() error {
	in.SHA = strings.ToLower(strings.TrimSpace(in.SHA))
	switch {
	case in.Ref == "" && in.SHA == "":
		return store.Errorf(store.EINVALID, "give ref (a branch or tag) or sha (a full commit id)")
	case in.SHA != "" && store.CheckCommitID(in.SHA) != nil:
		return store.Errorf(store.EINVALID, "sha: %s", store.ErrorMessage(store.CheckCommitID(in.SHA)))
	case in.Ref != "" && (len(in.Ref) > 255 || !refRE.MatchString(in.Ref) || strings.Contains(in.Ref, "..")):
		return store.Errorf(store.EINVALID, "ref: %q is not a branch or tag name", clip(in.Ref, 80))
	}
	return nil
}

// createBuild queues a build by hand.
func (s *Server) createBuild(c *gin.Context) {
	var in buildInput
	if !s.bindJSON(c, &in) {
		return
	}
	if err := in.validate(); err != nil {
		s.fail(c, err)
		return
	}
	p := projectOf(c)
	nb := store.NewBuild{ProjectID: p.ID, Ref: in.Ref, Branch: in.Ref, SHA: in.SHA, TriggeredBy: "api by " + currentUser(c).Name}
	if in.SHA == "" {
		if s.gitlab == nil {
			s.fail(c, store.Errorf(store.EINVALID, "this ferry cannot look up refs; give sha"))
			return
		}
		sha, isTag, err := s.gitlab.ResolveRef(c.Request.Context(), p, in.Ref)
		if err != nil {
			s.fail(c, err)
			return
		}
		nb.SHA = sha
		if isTag {
			nb.Branch, nb.Tag = "", in.Ref
		}
	}
	b, err := s.db.CreateBuild(c.Request.Context(), nb)
	if err != nil {
		s.fail(c, fmt.Errorf("queue build of %s: %w", p.Name, err))
		return
	}
	if s.gitlab != nil {
		s.gitlab.Wake()
	}
	c.JSON(http.StatusCreated, b)
}

func (s *Server) getBuild(c *gin.Context) {
	b, err := s.db.GetBuild(c.Request.Context(), buildID(c))
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, b)
}

// cancelBuild cancels a pending build at once and asks a running one to stop; its worker
// ends the script's whole process tree within seconds.
func (s *Server) cancelBuild(c *gin.Context) {
	b, err := s.db.CancelBuild(c.Request.Context(), buildID(c))
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, b)
}

// logAnswer is a page of a job's log: lines after ?after=, the job's status, and the seq to
// ask after next.
type logAnswer struct {
	Lines  []store.LogLine `json:"lines"`
	Status string          `json:"status"`
	Next   int64           `json:"next"`
}

// buildLog returns the build's log lines with seq > ?after= (at most ?limit=, default 1000).
func (s *Server) buildLog(c *gin.Context) {
	var after int64
	if v := c.Query("after"); v != "" {
		var err error
		if after, err = parseID("after", v); err != nil {
			s.fail(c, err)
			return
		}
	}
	limit, err := buildsLimit(c, 1000, 5000)
	if err != nil {
		s.fail(c, err)
		return
	}
	ctx := c.Request.Context()
	b, err := s.db.GetBuild(ctx, buildID(c))
	if err != nil {
		s.fail(c, err)
		return
	}
	lines, err := s.db.ReadLog(ctx, store.JobBuild, b.ID, after, "", limit)
	if err != nil {
		s.fail(c, fmt.Errorf("read log of build %d: %w", b.ID, err))
		return
	}
	next := after
	if len(lines) > 0 {
		next = lines[len(lines)-1].Seq
	}
	c.JSON(http.StatusOK, logAnswer{Lines: emptyIfNil(lines), Status: b.Status, Next: next})
}

// buildID returns the route's :build, which need has checked already.
func buildID(c *gin.Context) int64 {
	id, _ := parseID("build", c.Param("build"))
	return id
}

// buildsLimit reads ?limit=, between 1 and max; def when absent.
func buildsLimit(c *gin.Context, def, max int) (int, error) {
	v := c.Query("limit")
	if v == "" {
		return def, nil
	}
	n, err := parseID("limit", v)
	if err != nil || n < 1 || n > int64(max) {
		return 0, store.Errorf(store.EINVALID, "limit: %q is not a number between 1 and %d", clip(v, 40), max)
	}
	return int(n), nil
}

// emptyIfNil makes an empty list show as [] rather than null.
func emptyIfNil[T any](list []T) []T {
	if list == nil {
		return []T{}
	}
	return list
}
