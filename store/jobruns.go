package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
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
	r.triggered_by, r.schedule_id, r.error, r.queued_at, r.started_at, r.finished_at, r.attempts, r.cancel_requested`

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
	r.Steps = []*JobRunStep{}
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
	if err := db.checkRunEnvironments(ctx, tx, j, hosts, nr.AsUserID); err != nil {
		return 0, err
	}
	var id int64
	err = tx.GetContext(ctx, &id, db.q(`INSERT INTO job_runs (job_id, project_id, job_name, status, params, plan, triggered_by,
		schedule_id, queued_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`), j.ID, j.ProjectID, j.Name, RunQueued,
		jsonText(params), jsonText(plan), truncate(nr.TriggeredBy, 200), nr.ScheduleID, db.now())
	if err != nil {
		return 0, fmt.Errorf("queue a run of job %s: %w", j.Name, err)
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

// resolvePlan resolves the steps of j and their hosts, limited to only when it is not empty.
func (db *DB) resolvePlan(ctx context.Context, tx *sqlx.Tx, j *ScriptJob, params map[string]string, only []string) ([]RunStepPlan, [][]runTarget, error) {
	plan := make([]RunStepPlan, len(j.Steps))
	hosts := make([][]runTarget, len(j.Steps))
	used := map[string]bool{}
	for i, s := range j.Steps {
		field := fmt.Sprintf("steps[%d] (%s)", i, s.Name)
		p, err := db.resolveStep(ctx, tx, j, s, params)
		if err != nil {
			return nil, nil, refError(field, err)
		}
		plan[i] = p
		if s.Kind == StepPause {
			continue
		}
		if hosts[i], err = db.stepTargets(ctx, tx, j.ProjectID, s.Target); err != nil {
			return nil, nil, refError(field+".target", err)
		}
		if len(only) > 0 {
			hosts[i] = keepHosts(hosts[i], only, used)
			if len(hosts[i]) == 0 {
				return nil, nil, Errorf(EINVALID, "hosts: step %q reaches none of %s", s.Name, strings.Join(only, ", "))
			}
		}
	}
	for _, h := range only {
		if !used[h] {
			return nil, nil, Errorf(EINVALID, "hosts: no step of job %s reaches %q", j.Name, truncate(h, 80))
		}
	}
	return plan, hosts, nil
}

func keepHosts(all []runTarget, only []string, used map[string]bool) []runTarget {
	var out []runTarget
	for _, h := range all {
		for _, name := range only {
			if h.Name == name {
				out = append(out, h)
				used[name] = true
			}
		}
	}
	return out
}

func (db *DB) resolveStep(ctx context.Context, tx *sqlx.Tx, j *ScriptJob, s JobStepDef, params map[string]string) (RunStepPlan, error) {
	p := RunStepPlan{Name: s.Name, Kind: s.Kind, Timeout: s.Timeout, Batch: s.Batch, OnFailure: s.OnFailure, Path: s.Path}
	if p.Timeout == 0 {
		p.Timeout = Duration(DefaultStepTime)
	}
	if p.OnFailure == "" {
		p.OnFailure = OnFailureStop
	}
	if s.Kind == StepPause {
		return p, nil
	}
	a, err := db.getExecAccount(ctx, tx, `project_id = ? AND name = ?`, j.ProjectID, s.Account)
	if err != nil {
		return p, err
	}
	p.AccountID, p.Account = a.ID, a.Name
	env := map[string]string{}
	switch {
	case s.Kind == StepScript:
		sc, err := db.getScript(ctx, tx, j.ProjectID, s.Script, s.ScriptVersion)
		if err != nil {
			return p, err
		}
		p.Script, p.ScriptVersion, p.Language, p.Body = sc.Name, sc.Version, sc.Language, sc.Body
		for _, sp := range sc.Params {
			env[sp.Name] = sp.Default
		}
	case s.File != "":
		var f JobFile
		if err := tx.GetContext(ctx, &f, db.q(`SELECT id, name FROM job_files WHERE project_id = ? AND name = ?`), j.ProjectID, s.File); err != nil {
			return p, formatError(err, "file "+truncate(s.File, 80))
		}
		p.FileID, p.File = f.ID, f.Name
	default:
		name := s.Version
		if strings.HasPrefix(name, "$") {
			name = params[name[1:]]
		}
		var v struct {
			ID   int64  `db:"id"`
			Name string `db:"name"`
		}
		if err := tx.GetContext(ctx, &v, db.q(`SELECT id, name FROM versions WHERE project_id = ? AND name = ? AND deleted_at IS NULL`),
			j.ProjectID, name); err != nil {
			return p, formatError(err, fmt.Sprintf("kept version %q of %s", truncate(name, 80), j.Project))
		}
		p.VersionID, p.Version = v.ID, v.Name
	}
	for k, v := range params {
		env[k] = v
	}
	for k, v := range s.Params {
		env[k] = v
	}
	p.Env = env
	return p, nil
}

// stepTargets returns the hosts a target names, in the environment's order or by name. Hosts
// named by list or label must belong to an environment of the project.
func (db *DB) stepTargets(ctx context.Context, tx *sqlx.Tx, projectID int64, t JobTarget) ([]runTarget, error) {
	var out []runTarget
	inProject := `EXISTS (SELECT 1 FROM environment_hosts eh JOIN environments e ON e.id = eh.environment_id
		WHERE eh.host_id = h.id AND e.project_id = ?)`
	switch {
	case t.Environment != "":
		err := tx.SelectContext(ctx, &out, db.q(`SELECT h.id, h.name FROM environment_hosts eh JOIN hosts h ON h.id = eh.host_id
			JOIN environments e ON e.id = eh.environment_id WHERE e.project_id = ? AND e.name = ? ORDER BY eh.position`), projectID, t.Environment)
		if err != nil {
			return nil, err
		}
		if len(out) == 0 {
			return nil, Errorf(EINVALID, "environment %s has no hosts (or does not exist)", truncate(t.Environment, 80))
		}
	case t.Label != "":
		if err := tx.SelectContext(ctx, &out, db.q(`SELECT h.id, h.name FROM hosts h JOIN host_labels l ON l.host_id = h.id
			WHERE l.label = ? AND `+inProject+` ORDER BY h.name`), t.Label, projectID); err != nil {
			return nil, err
		}
		if len(out) == 0 {
			return nil, Errorf(EINVALID, "no host of the project's environments has the label %q", truncate(t.Label, 80))
		}
	default:
		for _, name := range t.Hosts {
			var h runTarget
			err := tx.GetContext(ctx, &h, db.q(`SELECT h.id, h.name FROM hosts h WHERE h.name = ? AND `+inProject), name, projectID)
			if err != nil {
				return nil, refError("hosts", formatError(err, fmt.Sprintf("host %q in an environment of the project", truncate(name, 80))))
			}
			out = append(out, h)
		}
	}
	return out, nil
}

// runEnvironments returns the environments of the project holding the hosts, and the
// protected environments of any project holding them, by name.
func (db *DB) runEnvironments(ctx context.Context, tx *sqlx.Tx, j *ScriptJob, hosts [][]runTarget) ([]RunEnvironment, error) {
	ids := map[int64]bool{}
	for _, hs := range hosts {
		for _, h := range hs {
			ids[h.ID] = true
		}
	}
	seen := map[string]bool{}
	var envs []RunEnvironment
	for id := range ids {
		var list []RunEnvironment
		// A host's environments in this project, and protected environments of any project.
		if err := tx.SelectContext(ctx, &list, db.q(`SELECT e.name, e.protected, e.approvals_required, e.freezes FROM environments e
			JOIN environment_hosts eh ON eh.environment_id = e.id WHERE eh.host_id = ? AND (e.project_id = ? OR e.protected)`), id, j.ProjectID); err != nil {
			return nil, err
		}
		for _, e := range list {
			if !seen[e.Name] {
				seen[e.Name] = true
				envs = append(envs, e)
			}
		}
	}
	sort.Slice(envs, func(a, b int) bool { return envs[a].Name < envs[b].Name })
	return envs, nil
}

// checkRunEnvironments refuses a run reaching an environment that is frozen or needs
// approvals, or a protected one when userID lacks the production right.
func (db *DB) checkRunEnvironments(ctx context.Context, tx *sqlx.Tx, j *ScriptJob, hosts [][]runTarget, userID int64) error {
	envs, err := db.runEnvironments(ctx, tx, j, hosts)
	if err != nil {
		return err
	}
	now := db.now()
	for _, e := range envs {
		if e.ApprovalsRequired > 0 {
			return Errorf(ECONFLICT, "environment %s needs %d approvals before a change, and job runs cannot be approved yet: run this job elsewhere or deploy a version instead", e.Name, e.ApprovalsRequired)
		}
		var fs []Freeze
		if err := json.Unmarshal([]byte(e.FreezesJSON), &fs); err != nil {
			return fmt.Errorf("environment %s freezes: %w", e.Name, err)
		}
		if w := FrozenAt(fs, now); w != nil {
			return Errorf(ECONFLICT, "environment %s is frozen: %s; run the job after it ends", e.Name, w)
		}
	}
	return db.checkRunRights(ctx, tx, userID, j, envs)
}

// checkRunRights says whether user may run job j on envs: EFORBIDDEN naming why not.
func (db *DB) checkRunRights(ctx context.Context, tx *sqlx.Tx, userID int64, j *ScriptJob, envs []RunEnvironment) error {
	var u struct {
		Name  string `db:"name"`
		Admin bool   `db:"admin"`
	}
	if err := tx.GetContext(ctx, &u, db.q(`SELECT name, admin FROM users WHERE id = ?`), userID); errors.Is(err, sql.ErrNoRows) {
		return Errorf(EFORBIDDEN, "the user this run would act for (id %d) no longer exists", userID)
	} else if err != nil {
		return err
	}
	if u.Admin {
		return nil
	}
	var production bool
	err := tx.GetContext(ctx, &production, db.q(`SELECT production FROM project_members WHERE project_id = ? AND user_id = ?`), j.ProjectID, userID)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	if err != nil {
		return Errorf(EFORBIDDEN, "%s is not a member of project %s, so may not run its jobs", u.Name, j.Project)
	}
	for _, e := range envs {
		if e.Protected && !production {
			return Errorf(EFORBIDDEN, "job %s reaches the protected environment %s: running it there needs the production right on %s, which %s does not have", j.Name, e.Name, j.Project, u.Name)
		}
	}
	return nil
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

// MayChangeRun says whether user may cancel, continue or retry run id: the same rights as
// running its job on the run's hosts now (EFORBIDDEN naming why not).
func (db *DB) MayChangeRun(ctx context.Context, id, userID int64) error {
	return db.Transact(ctx, func(tx *sqlx.Tx) error {
		r, err := db.getJobRun(ctx, tx, id)
		if err != nil {
			return err
		}
		var hosts [][]runTarget
		for _, s := range r.Steps {
			var hs []runTarget
			for _, h := range s.Hosts {
				hs = append(hs, runTarget{ID: h.HostID, Name: h.Host})
			}
			hosts = append(hosts, hs)
		}
		j := &ScriptJob{ID: r.JobID, ProjectID: r.ProjectID, Project: r.Project, Name: r.Job}
		envs, err := db.runEnvironments(ctx, tx, j, hosts)
		if err != nil {
			return err
		}
		return db.checkRunRights(ctx, tx, userID, j, envs)
	})
}
