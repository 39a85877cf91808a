package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/jmoiron/sqlx"
)

// How a new run is resolved and checked: its steps with their scripts, hosts and environment
// values, the environments it reaches, and the rights of whoever it acts for.

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

// checkRunEnvironments refuses a run reaching an environment that is frozen, or a protected
// one when userID lacks the production right, and returns how many approvals the run needs:
// the most any environment it reaches asks for.
func (db *DB) checkRunEnvironments(ctx context.Context, tx *sqlx.Tx, j *ScriptJob, hosts [][]runTarget, userID int64) (int, error) {
	envs, err := db.runEnvironments(ctx, tx, j, hosts)
	if err != nil {
		return 0, err
	}
	now := db.now()
	approvals := 0
	for _, e := range envs {
		approvals = max(approvals, e.ApprovalsRequired)
		var fs []Freeze
		if err := json.Unmarshal([]byte(e.FreezesJSON), &fs); err != nil {
			return 0, fmt.Errorf("environment %s freezes: %w", e.Name, err)
		}
		if w := FrozenAt(fs, now); w != nil {
			return 0, Errorf(ECONFLICT, "environment %s is frozen: %s; run the job after it ends", e.Name, w)
		}
	}
	return approvals, db.checkRunRights(ctx, tx, userID, j, envs)
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

// MayChangeRun says whether user may cancel, continue, retry, approve or reject run id: the
// same rights as running its job on the run's hosts now (EFORBIDDEN naming why not).
func (db *DB) MayChangeRun(ctx context.Context, id, userID int64) error {
	return db.Transact(ctx, func(tx *sqlx.Tx) error {
		return db.mayChangeRun(ctx, tx, id, userID)
	})
}

func (db *DB) mayChangeRun(ctx context.Context, tx *sqlx.Tx, id, userID int64) error {
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
}
