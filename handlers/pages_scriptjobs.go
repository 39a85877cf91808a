package handlers

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"ferry/store"
)

// The pages of jobs in BlueKing's sense: a project's scripts (with an editor), jobs with their
// steps, schedules and recent runs; and one run, laid out like a deployment (per step, a row
// per host with its status and log).

func (s *Server) registerScriptJobPages(r gin.IRouter) {
	r.GET("/projects/:project/jobs", s.need(projectRead), s.scriptJobsPage)
	r.GET("/runs/:run", s.need(projectRead), s.jobRunPage)
}

// scriptJobsData is the data of scriptjobs.html.
type scriptJobsData struct {
	Project   *store.Project
	Admin     bool
	Accounts  []*store.ExecAccount
	Scripts   []*store.Script
	Jobs      []*store.ScriptJob
	Schedules []*store.JobSchedule
	Runs      []*store.JobRun
	// Environments and Files are offered in the job editor's step targets and distribute steps.
	Environments []*store.Environment
	Files        []*store.JobFile
	// Edit is the script ?script= names, shown in the editor; saving makes NextVersion.
	Edit        *store.Script
	NextVersion int
	// PublicKeys are the authorized_keys lines of the accounts' keys, by account, for administrators.
	PublicKeys map[string]string
}

func (s *Server) scriptJobsPage(c *gin.Context) {
	ctx, p := c.Request.Context(), projectOf(c)
	d := scriptJobsData{Project: p, Admin: currentUser(c).Admin}
	var err error
	load := []func() error{
		func() (err error) { d.Accounts, err = s.db.ListExecAccounts(ctx, p.ID); return },
		func() (err error) { d.Scripts, err = s.db.ListScripts(ctx, p.ID); return },
		func() (err error) { d.Jobs, err = s.db.ListScriptJobs(ctx, p.ID); return },
		func() (err error) { d.Schedules, err = s.db.ListJobSchedules(ctx, p.ID); return },
		func() (err error) { d.Runs, err = s.db.ListJobRuns(ctx, p.ID, 0, 20); return },
		func() (err error) { d.Environments, err = s.db.ListEnvironments(ctx, p.ID); return },
		func() (err error) { d.Files, err = s.db.ListJobFiles(ctx, p.ID); return },
	}
	for _, f := range load {
		if err = f(); err != nil {
			s.fail(c, fmt.Errorf("the jobs page of %s: %w", p.Name, err))
			return
		}
	}
	if d.Admin {
		if d.PublicKeys, err = s.accountPublicKeys(ctx, p.ID, d.Accounts); err != nil {
			s.fail(c, err)
			return
		}
	}
	if name := c.Query("script"); name != "" {
		if d.Edit, err = s.db.GetScript(ctx, p.ID, name, 0); err != nil && !store.IsNotFound(err) {
			s.fail(c, err)
			return
		}
		if d.Edit != nil {
			d.NextVersion = d.Edit.Version + 1
		}
	}
	s.render(c, http.StatusOK, "scriptjobs.html", "projects", d)
}

// jobRunData is the data of jobrun.html.
type jobRunData struct {
	Project *store.Project
	Run     *store.JobRun
	Active  bool
	// Host is the "STEP/HOST" whose log alone is shown, when asked for.
	Host string
	jobLog
}

func (s *Server) jobRunPage(c *gin.Context) {
	ctx, p := c.Request.Context(), projectOf(c)
	r, err := s.db.GetJobRun(ctx, idParam(c, "run"))
	if err != nil {
		s.fail(c, err)
		return
	}
	d := jobRunData{Project: p, Run: r, Active: !r.Ended()}
	if h := c.Query("host"); strings.Contains(h, "/") {
		d.Host = h
	}
	if d.jobLog, err = s.pageRunLog(ctx, r.ID, d.Host); err != nil {
		s.fail(c, err)
		return
	}
	s.render(c, http.StatusOK, "jobrun.html", "projects", d)
}

// pageRunLog reads the start of a run's log (of one "STEP/HOST" when host is not "").
func (s *Server) pageRunLog(ctx context.Context, id int64, host string) (jobLog, error) {
	step, name := store.SplitRunLogHost(host)
	lines, err := s.db.ReadRunLog(ctx, id, 0, step, name, pageLogLines+1)
	if err != nil {
		return jobLog{}, err
	}
	l := jobLog{}
	for _, line := range lines {
		l.Lines = append(l.Lines, store.LogLine{Seq: line.Seq, At: line.At, Stream: line.Stream, Host: store.RunLogHost(line.Step, line.Host), Text: line.Text})
	}
	if len(l.Lines) > pageLogLines {
		l.Lines, l.More = l.Lines[:pageLogLines], true
	}
	if len(l.Lines) > 0 {
		l.After = l.Lines[len(l.Lines)-1].Seq
	}
	return l, nil
}

// accountPublicKeys opens each account's key for the public half an administrator puts in
// authorized_keys.
func (s *Server) accountPublicKeys(ctx context.Context, projectID int64, accounts []*store.ExecAccount) (map[string]string, error) {
	out := make(map[string]string, len(accounts))
	for _, a := range accounts {
		full, err := s.db.GetExecAccount(ctx, projectID, a.Name)
		if err != nil {
			return nil, fmt.Errorf("account %s: %w", a.Name, err)
		}
		out[a.Name] = publicKeyOf(full.PrivateKey, a.Name)
	}
	return out, nil
}
