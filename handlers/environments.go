package handlers

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/gin-gonic/gin"

	"ferry/store"
)

func (s *Server) registerEnvironments(r gin.IRouter) {
	r.GET("/projects/:project/environments", s.need(projectRead), s.listEnvironments)
	r.POST("/projects/:project/environments", s.need(projectAdmin), s.createEnvironment)
	r.GET("/projects/:project/environments/:env", s.need(projectRead), s.getEnvironment)
	r.PATCH("/projects/:project/environments/:env", s.need(projectAdmin), s.updateEnvironment)
	r.DELETE("/projects/:project/environments/:env", s.need(projectAdmin), s.deleteEnvironment)
}

// environmentInput is the body of an environment create or update; absent fields are nil.
type environmentInput struct {
	Name      *string        `json:"name"`
	Hosts     *[]string      `json:"hosts"`
	Protected *bool          `json:"protected"`
	Strategy  *strategyInput `json:"strategy"`
	// Change control (see store/gates.go).
	ApprovalsRequired *int            `json:"approvals_required"`
	Freezes           *[]store.Freeze `json:"freezes"`
}

// strategyInput is a rollout strategy as the API takes it: batch may be a number or a string.
type strategyInput struct {
	Kind              string     `json:"kind"`
	Batch             batchValue `json:"batch"`
	Concurrency       int        `json:"concurrency"`
	ContinueOnFailure bool       `json:"continue_on_failure"`
}

func (in *strategyInput) strategy() store.Strategy {
	return store.Strategy{Kind: in.Kind, Batch: string(in.Batch), Concurrency: in.Concurrency, ContinueOnFailure: in.ContinueOnFailure}
}

// batchValue is a batch size given as 2, "2" or "25%".
type batchValue string

// UnmarshalJSON takes a number or a string.
func (b *batchValue) UnmarshalJSON(data []byte) error {
	var n json.Number
	if err := json.Unmarshal(data, &n); err == nil {
		*b = batchValue(n.String())
		return nil
	}
	var s string
	if err := json.Unmarshal(data, &s); err == nil {
		*b = batchValue(s)
		return nil
	}
	if string(data) == "null" {
		*b = ""
		return nil
	}
	return store.Errorf(store.EINVALID, `strategy.batch: want a host count such as 2 or a percentage such as "25%%"`)
}

// environmentView is an environment as the API shows it, with its hosts as [] when none.
func environmentView(e *store.Environment) *store.Environment {
	if e.Hosts == nil {
		e.Hosts = []string{}
	}
	return e
}

func (s *Server) listEnvironments(c *gin.Context) {
	p := projectOf(c)
	envs, err := s.db.ListEnvironments(c.Request.Context(), p.ID)
	if err != nil {
		s.fail(c, fmt.Errorf("list environments of %s: %w", p.Name, err))
		return
	}
	out := make([]*store.Environment, 0, len(envs))
	for _, e := range envs {
		out = append(out, environmentView(e))
	}
	c.JSON(http.StatusOK, out)
}

func (s *Server) createEnvironment(c *gin.Context) {
	var in environmentInput
	if !s.bindJSON(c, &in) {
		return
	}
	p := projectOf(c)
	e := &store.Environment{ProjectID: p.ID, Hosts: []string{}}
	set(&e.Name, in.Name)
	set(&e.Hosts, in.Hosts)
	set(&e.Protected, in.Protected)
	if in.Strategy != nil {
		e.Strategy = in.Strategy.strategy()
	}
	set(&e.ApprovalsRequired, in.ApprovalsRequired)
	set(&e.Freezes, in.Freezes)
	if err := s.db.CreateEnvironment(c.Request.Context(), e); err != nil {
		s.fail(c, fmt.Errorf("create environment %q of %s: %w", e.Name, p.Name, err))
		return
	}
	c.JSON(http.StatusCreated, environmentView(e))
}

func (s *Server) getEnvironment(c *gin.Context) {
	p := projectOf(c)
	e, err := s.db.GetEnvironment(c.Request.Context(), p.ID, c.Param("env"))
	if err != nil {
		s.fail(c, fmt.Errorf("get environment %q of %s: %w", c.Param("env"), p.Name, err))
		return
	}
	c.JSON(http.StatusOK, environmentView(e))
}

func (s *Server) updateEnvironment(c *gin.Context) {
	var in environmentInput
	if !s.bindJSON(c, &in) {
		return
	}
	p := projectOf(c)
	upd := store.EnvironmentUpdate{Name: in.Name, Hosts: in.Hosts, Protected: in.Protected,
		ApprovalsRequired: in.ApprovalsRequired, Freezes: in.Freezes}
	if in.Strategy != nil {
		st := in.Strategy.strategy()
		upd.Strategy = &st
	}
	e, err := s.db.UpdateEnvironment(c.Request.Context(), p.ID, c.Param("env"), upd)
	if err != nil {
		s.fail(c, fmt.Errorf("update environment %q of %s: %w", c.Param("env"), p.Name, err))
		return
	}
	c.JSON(http.StatusOK, environmentView(e))
}

func (s *Server) deleteEnvironment(c *gin.Context) {
	p := projectOf(c)
	if err := s.db.DeleteEnvironment(c.Request.Context(), p.ID, c.Param("env")); err != nil {
		s.fail(c, fmt.Errorf("delete environment %q of %s: %w", c.Param("env"), p.Name, err))
		return
	}
	c.Status(http.StatusNoContent)
}
