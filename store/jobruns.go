package store

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
)

// Job runs are a job queue like builds and deployments (queue.go): claimed with a lease in
// job_runs, one run per group where the group is the run itself (runs of one job may run side
// by side). A run executes its steps from next_step on; a pause step ends the claim (status
// waiting) until someone continues the run, which queues it again after the pause.

func runQueue() jobQueue { return jobQueue{JobRunLog, "job_runs", "id", RunQueued} }

const runColumns = `r.id, r.job_id, r.project_id, p.name AS project, r.job_name, r.status, r.params, r.plan, r.next_step,
	r.triggered_by, r.schedule_id, r.error, r.queued_at, r.started_at, r.finished_at, r.attempts, r.cancel_requested,
	r.approvals_required, r.requested_by_id, r.approval_expires_at`

const runFrom = ` FROM job_runs r JOIN projects p ON p.id = r.project_id`

type runRow struct {
	JobRun
	ParamsJSON string `db:"params"`
	PlanJSON   string `db:"plan"`
}

func (row *runRow) open() (*JobRun, error) {
	r := row.JobRun
	if err := json.Unmarshal([]byte(row.ParamsJSON), &r.Params); err != nil {
		return nil, fmt.Errorf("run %d params: %w", r.ID, err)
	}
	if err := json.Unmarshal([]byte(row.PlanJSON), &r.Plan); err != nil {
		return nil, fmt.Errorf("run %d plan: %w", r.ID, err)
	}
	r.QueuedAt = r.QueuedAt.UTC()
	utc(r.StartedAt)
	utc(r.FinishedAt)
	utc(r.ApprovalExpiresAt)
	r.Steps = []*JobRunStep{}
	r.Approvals = []*RunApproval{}
	return &r, nil
}

// runTarget is a host a step reaches.
type runTarget struct {
	ID   int64  `db:"id"`
	Name string `db:"name"`
}

// CreateJobRun queues a run of a job: it resolves every step (script body at its version,
// hosts, environment values, version or file) so that later edits do not change the run, and
// checks the environments the run reaches (frozen or approval-required ones are refused;
// nr.Check decides the rest). EINVALID for unknown or bad parameters, hosts, scripts or
// versions. Audited when a person asked.
func (db *DB) CreateJobRun(ctx context.Context, nr NewJobRun) (*JobRun, error) {
	var id int64
	err := db.Transact(ctx, func(tx *sqlx.Tx) error {
		var err error
		id, err = db.createJobRun(ctx, tx, nr)
		return err
	})
	if err != nil {
		return nil, err
	}
	return db.GetJobRun(ctx, id)
}

func (db *DB) createJobRun(ctx context.Context, tx *sqlx.Tx, nr NewJobRun) (int64, error) {
	j, err := db.getScriptJob(ctx, tx, `j.id = ?`, nr.JobID)
	if err != nil {
		return 0, err
	}
	params, err := runParams(j, nr.Params)
	if err != nil {
		return 0, err
	}
	plan, hosts, err := db.resolvePlan(ctx, tx, j, params, nr.Hosts)
	if err != nil {
		return 0, err
	}
	approvals, err := db.checkRunEnvironments(ctx, tx, j, hosts, nr.AsUserID)
	if err != nil {
		return 0, err
	}
	status := RunQueued
	if approvals > 0 {
		status = RunAwaitingApproval
	}
	var id int64
	err = tx.GetContext(ctx, &id, db.q(`INSERT INTO job_runs (job_id, project_id, job_name, status, params, plan, triggered_by,
		schedule_id, queued_at, approvals_required, requested_by_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`),
		j.ID, j.ProjectID, j.Name, status, jsonText(params), jsonText(plan), truncate(nr.TriggeredBy, 200), nr.ScheduleID, db.now(),
		approvals, nr.AsUserID)
	if err != nil {
		return 0, fmt.Errorf("queue a run of job %s: %w", j.Name, err)
	}
	if status == RunAwaitingApproval {
		if err := db.awaitRunApproval(ctx, tx, j.ProjectID, id); err != nil {
			return 0, err
		}
	}
	for i, st := range plan {
		if _, err := tx.ExecContext(ctx, db.q(`INSERT INTO job_run_steps (run_id, position, name, kind, status) VALUES (?, ?, ?, ?, ?)`),
			id, i+1, st.Name, st.Kind, StepWaiting); err != nil {
			return 0, err
		}
		for k, h := range hosts[i] {
			if _, err := tx.ExecContext(ctx, db.q(`INSERT INTO job_run_hosts (run_id, position, host_id, host_name, host_order, status)
				VALUES (?, ?, ?, ?, ?, ?)`), id, i+1, h.ID, h.Name, k, HostWaiting); err != nil {
				return 0, err
			}
		}
	}
	if !hasActor(ctx) {
		return id, nil
	}
	return id, db.audit(ctx, tx, "run.create", fmt.Sprintf("project/%s/job/%s", j.Project, j.Name), fmt.Sprintf("run %d", id))
}

// runParams merges the values asked for over the job's defaults, refusing unknown names.
func runParams(j *ScriptJob, values map[string]string) (map[string]string, error) {
	out := map[string]string{}
	for _, p := range j.Params {
		out[p.Name] = p.Default
	}
	for k, v := range values {
		if _, ok := out[k]; !ok {
			names := make([]string, 0, len(j.Params))
			for _, p := range j.Params {
				names = append(names, p.Name)
			}
			return nil, Errorf(EINVALID, "params: job %s has no parameter %q (its parameters: %s)", j.Name, truncate(k, 80), strings.Join(names, ", "))
		}
		if err := validParamValue("params."+k, v); err != nil {
			return nil, err
		}
		out[k] = v
	}
	return out, nil
}

// GetJobRun returns a run with its steps and their hosts, or ENOTFOUND.
func (db *DB) GetJobRun(ctx context.Context, id int64) (*JobRun, error) {
	return db.getJobRun(ctx, db.db, id)
}

func (db *DB) getJobRun(ctx context.Context, q queryer, id int64) (*JobRun, error) {
	var row runRow
	if err := q.GetContext(ctx, &row, db.q(`SELECT `+runColumns+runFrom+` WHERE r.id = ?`), id); err != nil {
		return nil, formatError(err, fmt.Sprintf("run %d", id))
	}
	r, err := row.open()
	if err != nil {
		return nil, err
	}
	if err := q.SelectContext(ctx, &r.Steps, db.q(`SELECT run_id, position, name, kind, status, error, started_at, finished_at
		FROM job_run_steps WHERE run_id = ? ORDER BY position`), id); err != nil {
		return nil, err
	}
	if err := q.SelectContext(ctx, &r.Approvals, db.q(`SELECT user_id, user_name, decision, comment, at FROM job_run_approvals
		WHERE run_id = ? ORDER BY at, user_name`), id); err != nil {
		return nil, err
	}
	for _, a := range r.Approvals {
		a.At = a.At.UTC()
	}
	var hosts []*JobRunHost
	if err := q.SelectContext(ctx, &hosts, db.q(`SELECT run_id, position, host_id, host_name, host_order, status, exit_code, error,
		started_at, finished_at FROM job_run_hosts WHERE run_id = ? ORDER BY position, host_order`), id); err != nil {
		return nil, err
	}
	byPos := map[int]*JobRunStep{}
	for _, s := range r.Steps {
		utc(s.StartedAt)
		utc(s.FinishedAt)
		s.Hosts = []*JobRunHost{}
		byPos[s.Position] = s
	}
	for _, h := range hosts {
		utc(h.StartedAt)
		utc(h.FinishedAt)
		if h.StartedAt != nil && h.FinishedAt != nil {
			ms := h.FinishedAt.Sub(*h.StartedAt).Milliseconds()
			h.DurationMS = &ms
		}
		if s := byPos[h.Position]; s != nil {
			s.Hosts = append(s.Hosts, h)
		}
	}
	return r, nil
}

// ListJobRuns returns the runs of a job (or of a project when jobID is 0), newest first,
// without steps.
func (db *DB) ListJobRuns(ctx context.Context, projectID, jobID int64, limit int) ([]*JobRun, error) {
	query := `SELECT ` + runColumns + runFrom + ` WHERE r.project_id = ?`
	args := []any{projectID}
	if jobID != 0 {
		query += ` AND r.job_id = ?`
		args = append(args, jobID)
	}
	query += ` ORDER BY r.id DESC LIMIT ?`
	args = append(args, listLimit(limit))
	var rows []*runRow
	if err := db.db.SelectContext(ctx, &rows, db.q(query), args...); err != nil {
		return nil, fmt.Errorf("list runs: %w", err)
	}
	out := make([]*JobRun, 0, len(rows))
	for _, row := range rows {
		r, err := row.open()
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// RunLogLine is a line of a run's log with its step (0 for the run itself) and host split
// out of the stored host field.
type RunLogLine struct {
	Seq    int64     `json:"seq"`
	At     time.Time `json:"at"`
	Stream string    `json:"stream"`
	Step   int       `json:"step"`
	Host   string    `json:"host"`
	Text   string    `json:"text"`
}

// RunLogHost is what a run log line stores as its host: "" for the run, "N/" for step N,
// "N/host" for a host of step N.
func RunLogHost(step int, host string) string {
	if step == 0 {
		return ""
	}
	return fmt.Sprintf("%d/%s", step, host)
}

// SplitRunLogHost undoes RunLogHost.
func SplitRunLogHost(stored string) (step int, host string) {
	n, h, ok := strings.Cut(stored, "/")
	if !ok {
		return 0, stored
	}
	fmt.Sscanf(n, "%d", &step)
	return step, h
}

// ReadRunLog returns up to limit lines of a run's log after seq after; step > 0 keeps that
// step's lines, and host (with step) one host's.
func (db *DB) ReadRunLog(ctx context.Context, runID, after int64, step int, host string, limit int) ([]RunLogLine, error) {
	if limit <= 0 {
		limit = 1000
	}
	query := `SELECT seq, at, stream, host, text FROM log_lines WHERE job_kind = ? AND job_id = ? AND seq > ?`
	args := []any{JobRunLog, runID, after}
	switch {
	case step > 0 && host != "":
		query += ` AND host = ?`
		args = append(args, RunLogHost(step, host))
	case step > 0:
		query += ` AND host LIKE ?`
		args = append(args, fmt.Sprintf("%d/%%", step))
	case host != "":
		query += ` AND host LIKE ?`
		args = append(args, "%/"+host)
	}
	query += ` ORDER BY seq LIMIT ?`
	args = append(args, min(limit, 10_000))
	var lines []LogLine
	if err := db.db.SelectContext(ctx, &lines, db.q(query), args...); err != nil {
		return nil, fmt.Errorf("read run %d log: %w", runID, err)
	}
	out := make([]RunLogLine, 0, len(lines))
	for _, l := range lines {
		st, h := SplitRunLogHost(l.Host)
		out = append(out, RunLogLine{Seq: l.Seq, At: l.At.UTC(), Stream: l.Stream, Step: st, Host: h, Text: l.Text})
	}
	return out, nil
}
