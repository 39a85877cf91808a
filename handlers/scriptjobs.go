package handlers

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"ferry/store"
)

// Jobs in BlueKing's sense: execution accounts and scripts (administrators manage them), jobs of
// steps and their schedules (members manage them; a run checks the rights of whoever it acts
// for), uploaded files for distribute steps and host labels for targets.
func (s *Server) registerScriptJobs(r *gin.RouterGroup) {
	r.GET("/projects/:project/accounts", s.need(projectRead), s.listAccounts)
	r.POST("/projects/:project/accounts", s.need(projectAdmin), s.createAccount)
	r.DELETE("/projects/:project/accounts/:account", s.need(projectAdmin), s.deleteAccount)
	r.GET("/projects/:project/scripts", s.need(projectRead), s.listScripts)
	r.POST("/projects/:project/scripts", s.need(projectAdmin), s.saveScript)
	r.GET("/projects/:project/scripts/:script", s.need(projectRead), s.getScript)
	r.GET("/projects/:project/scripts/:script/versions", s.need(projectRead), s.listScriptVersions)
	r.GET("/projects/:project/files", s.need(projectRead), s.listJobFiles)
	r.POST("/projects/:project/files", s.need(projectAdmin), s.uploadJobFile)
	r.GET("/projects/:project/jobs", s.need(projectRead), s.listScriptJobs)
	r.POST("/projects/:project/jobs", s.need(projectBuild), s.saveScriptJob)
	r.GET("/projects/:project/schedules", s.need(projectRead), s.listSchedules)
	r.POST("/projects/:project/schedules", s.need(projectBuild), s.createSchedule)
	r.PATCH("/projects/:project/schedules/:schedule", s.need(projectBuild), s.updateSchedule)
	r.DELETE("/projects/:project/schedules/:schedule", s.need(projectBuild), s.deleteSchedule)
	r.PUT("/hosts/:host/labels", s.need(adminOnly), s.setHostLabels)
}

type accountInput struct {
	Name       string `json:"name"`
	User       string `json:"user"`
	PrivateKey string `json:"private_key"`
	// GenerateKey asks ferry for a new ed25519 key pair instead of a pasted key; the answer's
	// public_key goes into the account's authorized_keys on the hosts.
	GenerateKey bool `json:"generate_key"`
}

// accountView is an account as the API answers a create or update: never the private key, but
// the public half of it for authorized_keys.
type accountView struct {
	*store.ExecAccount
	PublicKey string `json:"public_key,omitempty"`
}

func (s *Server) listAccounts(c *gin.Context) {
	list, err := s.db.ListExecAccounts(c.Request.Context(), projectOf(c).ID)
	s.answer(c, http.StatusOK, list, err)
}

// createAccount creates an account, or replaces the user and key of the one of that name (an
// empty key keeps the stored one).
func (s *Server) createAccount(c *gin.Context) {
	var in accountInput
	if !s.bindJSON(c, &in) {
		return
	}
	if in.GenerateKey {
		if in.PrivateKey != "" {
			s.fail(c, store.Errorf(store.EINVALID, "private_key: paste a key or let ferry generate one, not both"))
			return
		}
		key, err := generateKeyPair(in.Name)
		if err != nil {
			s.fail(c, err)
			return
		}
		in.PrivateKey = key
	}
	p := projectOf(c)
	ctx := c.Request.Context()
	if _, err := s.db.GetExecAccount(ctx, p.ID, in.Name); err == nil {
		a, err := s.db.UpdateExecAccount(ctx, p.ID, in.Name, in.User, in.PrivateKey)
		s.answerAccount(c, http.StatusOK, a, err)
		return
	}
	a := &store.ExecAccount{ProjectID: p.ID, Name: in.Name, User: in.User, PrivateKey: in.PrivateKey}
	err := s.db.CreateExecAccount(ctx, a)
	s.answerAccount(c, http.StatusCreated, a, err)
}

func (s *Server) answerAccount(c *gin.Context, status int, a *store.ExecAccount, err error) {
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(status, accountView{ExecAccount: a, PublicKey: publicKeyOf(a.PrivateKey, a.Name)})
}

func (s *Server) deleteAccount(c *gin.Context) {
	err := s.db.DeleteExecAccount(c.Request.Context(), projectOf(c).ID, c.Param("account"))
	s.answer(c, http.StatusNoContent, nil, err)
}

type scriptInput struct {
	Name     string              `json:"name"`
	Language string              `json:"language"`
	Body     string              `json:"body"`
	Params   []store.ScriptParam `json:"params"`
}

func (s *Server) listScripts(c *gin.Context) {
	list, err := s.db.ListScripts(c.Request.Context(), projectOf(c).ID)
	s.answer(c, http.StatusOK, list, err)
}

// saveScript creates a script or saves a new version of it.
func (s *Server) saveScript(c *gin.Context) {
	var in scriptInput
	if !s.bindJSON(c, &in) {
		return
	}
	sc, err := s.db.SaveScript(c.Request.Context(), &store.Script{ProjectID: projectOf(c).ID, Name: in.Name, Language: in.Language, Body: in.Body, Params: in.Params})
	status := http.StatusCreated
	if err == nil && sc.Version > 1 {
		status = http.StatusOK
	}
	s.answer(c, status, sc, err)
}

func (s *Server) getScript(c *gin.Context) {
	version := 0
	if v := c.Query("version"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			s.fail(c, store.Errorf(store.EINVALID, "version: %q is not a version number", clip(v, 20)))
			return
		}
		version = n
	}
	sc, err := s.db.GetScript(c.Request.Context(), projectOf(c).ID, c.Param("script"), version)
	s.answer(c, http.StatusOK, sc, err)
}

func (s *Server) listScriptVersions(c *gin.Context) {
	list, err := s.db.ListScriptVersions(c.Request.Context(), projectOf(c).ID, c.Param("script"))
	s.answer(c, http.StatusOK, list, err)
}

type fileInput struct {
	Name string `json:"name"`
	// Content is the file, base64-encoded (standard encoding).
	Content string `json:"content"`
}

func (s *Server) listJobFiles(c *gin.Context) {
	list, err := s.db.ListJobFiles(c.Request.Context(), projectOf(c).ID)
	s.answer(c, http.StatusOK, list, err)
}

func (s *Server) uploadJobFile(c *gin.Context) {
	var in fileInput
	if !s.bindJSON(c, &in) {
		return
	}
	content, err := base64.StdEncoding.DecodeString(in.Content)
	if err != nil {
		s.fail(c, store.Errorf(store.EINVALID, "content: not base64 (standard encoding)"))
		return
	}
	f, err := s.db.SaveJobFile(c.Request.Context(), projectOf(c).ID, in.Name, content)
	s.answer(c, http.StatusCreated, f, err)
}

type scriptJobInput struct {
	Name        string              `json:"name"`
	Description string              `json:"description"`
	Params      []store.ScriptParam `json:"params"`
	Steps       []store.JobStepDef  `json:"steps"`
}

func (s *Server) listScriptJobs(c *gin.Context) {
	list, err := s.db.ListScriptJobs(c.Request.Context(), projectOf(c).ID)
	s.answer(c, http.StatusOK, list, err)
}

// saveScriptJob creates a job or replaces the steps and parameters of the one of that name.
func (s *Server) saveScriptJob(c *gin.Context) {
	var in scriptJobInput
	if !s.bindJSON(c, &in) {
		return
	}
	ctx := c.Request.Context()
	p := projectOf(c)
	_, existed := s.db.GetScriptJob(ctx, p.ID, in.Name)
	j, err := s.db.SaveScriptJob(ctx, &store.ScriptJob{ProjectID: p.ID, Name: in.Name, Description: in.Description, Params: in.Params, Steps: in.Steps})
	status := http.StatusCreated
	if existed == nil {
		status = http.StatusOK
	}
	s.answer(c, status, j, err)
}

func (s *Server) getScriptJob(c *gin.Context) {
	j, err := s.db.GetScriptJobByID(c.Request.Context(), idParam(c, "job"))
	s.answer(c, http.StatusOK, j, err)
}

// newTriggerToken makes the job's trigger token (replacing the old one); it runs the job with
// the rights of the person who made it, and is shown this once.
func (s *Server) newTriggerToken(c *gin.Context) {
	ctx := c.Request.Context()
	j, err := s.db.GetScriptJobByID(ctx, idParam(c, "job"))
	if err != nil {
		s.fail(c, err)
		return
	}
	secret, err := s.db.NewTriggerToken(ctx, j.ID)
	s.answer(c, http.StatusCreated, gin.H{"job_id": j.ID, "token": secret,
		"trigger_url": fmt.Sprintf("%s/api/v1/jobs/%d/trigger", s.baseURL, j.ID)}, err)
}

type scheduleInput struct {
	Job      string            `json:"job"`
	Cron     string            `json:"cron"`
	TimeZone string            `json:"time_zone"`
	Params   map[string]string `json:"params"`
	Enabled  *bool             `json:"enabled"`
}

func (s *Server) listSchedules(c *gin.Context) {
	list, err := s.db.ListJobSchedules(c.Request.Context(), projectOf(c).ID)
	s.answer(c, http.StatusOK, list, err)
}

// createSchedule schedules a job; its runs act with the rights of the person who made it.
func (s *Server) createSchedule(c *gin.Context) {
	var in scheduleInput
	if !s.bindJSON(c, &in) {
		return
	}
	ctx := c.Request.Context()
	p := projectOf(c)
	j, err := s.db.GetScriptJob(ctx, p.ID, in.Job)
	if store.IsNotFound(err) {
		s.fail(c, store.Errorf(store.EINVALID, "job: project %s has no job named %q", p.Name, clip(in.Job, 80)))
		return
	}
	if err != nil {
		s.fail(c, err)
		return
	}
	if in.TimeZone == "" {
		in.TimeZone = "UTC"
	}
	sc, err := s.db.CreateJobSchedule(ctx, &store.JobSchedule{ProjectID: p.ID, JobID: j.ID, Cron: in.Cron, TimeZone: in.TimeZone,
		Params: in.Params, Enabled: in.Enabled == nil || *in.Enabled})
	s.answer(c, http.StatusCreated, sc, err)
}

func scheduleID(c *gin.Context) (int64, error) {
	id, err := strconv.ParseInt(c.Param("schedule"), 10, 64)
	if err != nil || id <= 0 {
		return 0, store.Errorf(store.ENOTFOUND, "schedule %q not found", clip(c.Param("schedule"), 40))
	}
	return id, nil
}

// updateSchedule pauses or resumes a schedule: {"enabled": false}.
func (s *Server) updateSchedule(c *gin.Context) {
	var in scheduleInput
	if !s.bindJSON(c, &in) {
		return
	}
	id, err := scheduleID(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	if in.Enabled == nil {
		s.fail(c, store.Errorf(store.EINVALID, "enabled: required (true resumes the schedule, false pauses it)"))
		return
	}
	sc, err := s.db.SetJobScheduleEnabled(c.Request.Context(), projectOf(c).ID, id, *in.Enabled)
	s.answer(c, http.StatusOK, sc, err)
}

func (s *Server) deleteSchedule(c *gin.Context) {
	id, err := scheduleID(c)
	if err == nil {
		err = s.db.DeleteJobSchedule(c.Request.Context(), projectOf(c).ID, id)
	}
	s.answer(c, http.StatusNoContent, nil, err)
}

func (s *Server) setHostLabels(c *gin.Context) {
	var in struct {
		Labels []string `json:"labels"`
	}
	if !s.bindJSON(c, &in) {
		return
	}
	labels, err := s.db.SetHostLabels(c.Request.Context(), c.Param("host"), in.Labels)
	s.answer(c, http.StatusOK, gin.H{"host": c.Param("host"), "labels": labels}, err)
}

// answer renders v with status, or the error.
func (s *Server) answer(c *gin.Context, status int, v any, err error) {
	switch {
	case err != nil:
		s.fail(c, err)
	case status == http.StatusNoContent:
		c.Status(status)
	default:
		c.JSON(status, v)
	}
}
