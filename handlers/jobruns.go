package handlers

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"ferry/store"
)

// Runs of jobs: started by a person, by another system with the job's trigger token, or by a
// schedule. Members may ask; the store checks the rights of whoever the run acts for on the
// environments it reaches (protected ones need the production right).
func (s *Server) registerJobRuns(r *gin.RouterGroup) {
	s.finders["job"] = func(ctx context.Context, db *store.DB, id int64) (int64, string, error) {
		j, err := db.GetScriptJobByID(ctx, id)
		if err != nil {
			return 0, "", err
		}
		return j.ProjectID, "", nil
	}
	s.finders["run"] = func(ctx context.Context, db *store.DB, id int64) (int64, string, error) {
		run, err := db.GetJobRun(ctx, id)
		if err != nil {
			return 0, "", err
		}
		return run.ProjectID, "", nil
	}
	r.GET("/jobs/:job", s.need(projectRead), s.getScriptJob)
	r.POST("/jobs/:job/trigger-token", s.need(projectBuild), s.newTriggerToken)
	r.POST("/jobs/:job/runs", s.need(projectBuild), s.startJobRun)
	r.GET("/jobs/:job/runs", s.need(projectRead), s.listJobRuns)
	r.POST("/jobs/:job/trigger", s.need(public), s.triggerJob)
	r.GET("/runs/:run", s.need(projectRead), s.getJobRun)
	r.GET("/runs/:run/log", s.need(projectRead), s.jobRunLog)
	r.GET("/runs/:run/log/stream", s.need(projectRead), s.streamJobRunLog)
	r.POST("/runs/:run/cancel", s.need(projectBuild), s.changeJobRun(func(db *store.DB) func(context.Context, int64) (*store.JobRun, error) { return db.CancelJobRun }))
	r.POST("/runs/:run/continue", s.need(projectBuild), s.changeJobRun(func(db *store.DB) func(context.Context, int64) (*store.JobRun, error) { return db.ContinueJobRun }))
	r.POST("/runs/:run/approve", s.need(projectBuild), s.decideJobRun(true))
	r.POST("/runs/:run/reject", s.need(projectBuild), s.decideJobRun(false))
	r.POST("/runs/:run/retry", s.need(projectBuild), s.changeJobRun(func(db *store.DB) func(context.Context, int64) (*store.JobRun, error) { return db.RetryJobRun }))
}

// runInput is the body of POST /jobs/:job/runs and /trigger.
type runInput struct {
	Params map[string]string `json:"params"`
	Hosts  []string          `json:"hosts"`
}

func idParam(c *gin.Context, name string) int64 {
	id, _ := strconv.ParseInt(c.Param(name), 10, 64) // need checked it
	return id
}

// bindRunInput reads a run's parameters; no body at all means none.
func (s *Server) bindRunInput(c *gin.Context, in *runInput) bool {
	if c.Request.ContentLength == 0 && len(c.Request.TransferEncoding) == 0 {
		return true
	}
	return s.bindJSON(c, in)
}

func (s *Server) startJobRun(c *gin.Context) {
	var in runInput
	if !s.bindRunInput(c, &in) {
		return
	}
	u := currentUser(c)
	s.createJobRun(c, idParam(c, "job"), in, u.ID, "api by "+u.Name)
}

func (s *Server) createJobRun(c *gin.Context, jobID int64, in runInput, asUser int64, by string) {
	r, err := s.db.CreateJobRun(c.Request.Context(), store.NewJobRun{JobID: jobID, Params: in.Params, Hosts: in.Hosts,
		TriggeredBy: by, AsUserID: asUser})
	if err != nil {
		s.fail(c, fmt.Errorf("run job %d: %w", jobID, err))
		return
	}
	if s.jobRunner != nil {
		s.jobRunner.Wake()
	}
	c.JSON(http.StatusCreated, r)
}

// triggerJob starts a run for another system: the X-Ferry-Trigger-Token header must hold the
// job's own trigger token; the run acts with the rights of whoever made the token.
func (s *Server) triggerJob(c *gin.Context) {
	id, err := strconv.ParseInt(c.Param("job"), 10, 64)
	if err != nil || id <= 0 {
		s.fail(c, store.Errorf(store.EUNAUTHORIZED, "the trigger token is not valid for this job"))
		return
	}
	secret := c.GetHeader("X-Ferry-Trigger-Token")
	ctx := c.Request.Context()
	j, by, err := s.db.JobByTriggerToken(ctx, id, secret)
	if err != nil {
		s.fail(c, err)
		return
	}
	var in runInput
	if !s.bindRunInput(c, &in) {
		return
	}
	actor := store.Actor{UserID: by, Name: "trigger token of job " + j.Name, RemoteAddr: c.ClientIP()}
	c.Request = c.Request.WithContext(store.WithActor(ctx, actor))
	s.createJobRun(c, j.ID, in, by, "trigger token from "+c.ClientIP())
}

func (s *Server) listJobRuns(c *gin.Context) {
	limit, _, err := pageQuery(c, 500)
	if err != nil {
		s.fail(c, err)
		return
	}
	list, err := s.db.ListJobRuns(c.Request.Context(), projectOf(c).ID, idParam(c, "job"), limit)
	s.answer(c, http.StatusOK, list, err)
}

func (s *Server) getJobRun(c *gin.Context) {
	r, err := s.db.GetJobRun(c.Request.Context(), idParam(c, "run"))
	s.answer(c, http.StatusOK, r, err)
}

// jobRunLogPage is what GET /runs/:run/log answers.
type jobRunLogPage struct {
	Lines  []store.RunLogLine `json:"lines"`
	Status string             `json:"status"`
	Next   int64              `json:"next"`
}

// jobRunLog returns log lines in order: ?after=SEQ, ?step=N, ?host=NAME, ?limit=.
func (s *Server) jobRunLog(c *gin.Context) {
	ctx := c.Request.Context()
	id := idParam(c, "run")
	var after int64
	var step int
	var err error
	if v := c.Query("after"); v != "" {
		if after, err = parseID("after", v); err != nil {
			s.fail(c, err)
			return
		}
	}
	if v := c.Query("step"); v != "" {
		if step, err = strconv.Atoi(v); err != nil || step < 1 {
			s.fail(c, store.Errorf(store.EINVALID, "step: %q is not a step number (from 1)", clip(v, 20)))
			return
		}
	}
	limit, _, err := pageQuery(c, 5000)
	if err != nil {
		s.fail(c, err)
		return
	}
	r, err := s.db.GetJobRun(ctx, id)
	if err != nil {
		s.fail(c, err)
		return
	}
	lines, err := s.db.ReadRunLog(ctx, id, after, step, c.Query("host"), limit)
	if err != nil {
		s.fail(c, err)
		return
	}
	page := jobRunLogPage{Lines: lines, Status: r.Status, Next: after}
	if n := len(lines); n > 0 {
		page.Next = lines[n-1].Seq
	}
	c.JSON(http.StatusOK, page)
}

// streamJobRunLog streams a run's log over WebSocket as the build and deployment streams do;
// ?step=N&host=NAME keeps one host's lines of one step. A line's host is "STEP/HOST".
func (s *Server) streamJobRunLog(c *gin.Context) {
	id := idParam(c, "run")
	host := c.Query("host")
	var keep func(string) bool
	switch step, _ := strconv.Atoi(c.Query("step")); {
	case strings.Contains(host, "/"): // the page's stream names "STEP/HOST"
		keep = func(h string) bool { return h == host }
	case step > 0 && host != "":
		want := store.RunLogHost(step, host)
		keep = func(h string) bool { return h == want }
	case step > 0: // the step's own lines and its hosts'
		prefix := store.RunLogHost(step, "")
		keep = func(h string) bool { return strings.HasPrefix(h, prefix) }
	case host != "": // this host's lines of every step
		keep = func(h string) bool { _, name := store.SplitRunLogHost(h); return h != "" && name == host }
	}
	st := &logStream{kind: store.JobRunLog, id: id, keep: keep, status: func(ctx context.Context) (string, bool, error) {
		r, err := s.db.GetJobRun(ctx, id)
		if err != nil {
			return "", false, err
		}
		return r.Status, r.Ended(), nil
	}}
	s.serveLogStream(c, st)
}

// changeJobRun answers cancel, continue and retry, after checking that the user may run the
// job on the run's hosts (a member without the production right may not touch a run on a
// protected environment).
func (s *Server) changeJobRun(op func(db *store.DB) func(context.Context, int64) (*store.JobRun, error)) gin.HandlerFunc {
	return func(c *gin.Context) {
		ctx := c.Request.Context()
		id := idParam(c, "run")
		if err := s.db.MayChangeRun(ctx, id, currentUser(c).ID); err != nil {
			s.fail(c, err)
			return
		}
		r, err := op(s.db)(ctx, id)
		if err != nil {
			what := c.FullPath()[strings.LastIndexByte(c.FullPath(), '/')+1:]
			s.fail(c, fmt.Errorf("%s run %d: %w", what, id, err))
			return
		}
		if s.jobRunner != nil && r.Status == store.RunQueued {
			s.jobRunner.Wake()
		}
		c.JSON(http.StatusOK, r)
	}
}

// decideJobRun approves or rejects a run awaiting approval: {"comment": "..."} (optional).
func (s *Server) decideJobRun(approve bool) gin.HandlerFunc {
	return func(c *gin.Context) {
		var in struct {
			Comment string `json:"comment"`
		}
		if c.Request.ContentLength != 0 && !s.bindJSON(c, &in) {
			return
		}
		id := idParam(c, "run")
		r, err := s.db.DecideJobRun(c.Request.Context(), id, currentUser(c).ID, approve, in.Comment)
		if err != nil {
			s.fail(c, fmt.Errorf("decide on run %d: %w", id, err))
			return
		}
		if s.jobRunner != nil && r.Status == store.RunQueued {
			s.jobRunner.Wake()
		}
		c.JSON(http.StatusOK, r)
	}
}
