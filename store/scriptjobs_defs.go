package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/jmoiron/sqlx"
)

// This file stores the definitions of jobs: scripts with their versions, and jobs with their
// trigger tokens. Execution accounts are in execaccounts.go, uploaded files and host labels in
// jobfiles.go.

// TriggerTokenPrefix starts every job trigger token.
const TriggerTokenPrefix = "ferrytrig_"

// SaveScript creates a script or, when one of that name exists, adds a new version of it
// (its older versions are kept). It returns the script at its new version. Audited.
func (db *DB) SaveScript(ctx context.Context, s *Script) (*Script, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	if s.Params == nil {
		s.Params = []ScriptParam{}
	}
	err := db.Transact(ctx, func(tx *sqlx.Tx) error {
		now := db.now()
		var id int64
		err := tx.GetContext(ctx, &id, db.q(`SELECT id FROM scripts WHERE project_id = ? AND name = ?`), s.ProjectID, s.Name)
		if errors.Is(err, sql.ErrNoRows) {
			err = tx.GetContext(ctx, &id, db.q(`INSERT INTO scripts (project_id, name, latest, created_at, updated_at)
				VALUES (?, ?, 0, ?, ?) RETURNING id`), s.ProjectID, s.Name, now, now)
			if isUniqueViolation(err) {
				return Errorf(ECONFLICT, "script %s was created at the same time; save again", s.Name)
			}
		}
		if err != nil {
			return err
		}
		var version int
		if err := tx.GetContext(ctx, &version, db.q(`UPDATE scripts SET latest = latest + 1, updated_at = ? WHERE id = ? RETURNING latest`), now, id); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, db.q(`INSERT INTO script_versions (script_id, version, language, body, params, created_by, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?)`), id, version, s.Language, s.Body, jsonText(s.Params), truncate(ActorFrom(ctx).Name, 200), now)
		if err != nil {
			return err
		}
		return db.audit(ctx, tx, "script.save", fmt.Sprintf("project/%d/script/%s", s.ProjectID, s.Name), fmt.Sprintf("version %d", version))
	})
	if err != nil {
		return nil, err
	}
	return db.GetScript(ctx, s.ProjectID, s.Name, 0)
}

const scriptSelect = `SELECT s.id, s.project_id, s.name, v.version, v.language, v.body, v.params, v.created_by,
	s.created_at, v.created_at AS updated_at FROM scripts s JOIN script_versions v ON v.script_id = s.id`

type scriptRow struct {
	Script
	ParamsJSON string `db:"params"`
}

func (r *scriptRow) open() (*Script, error) {
	s := r.Script
	if err := json.Unmarshal([]byte(r.ParamsJSON), &s.Params); err != nil {
		return nil, fmt.Errorf("script %s params: %w", s.Name, err)
	}
	s.CreatedAt, s.UpdatedAt = s.CreatedAt.UTC(), s.UpdatedAt.UTC()
	return &s, nil
}

// GetScript returns a script at version (0: its latest), or ENOTFOUND.
func (db *DB) GetScript(ctx context.Context, projectID int64, name string, version int) (*Script, error) {
	return db.getScript(ctx, db.db, projectID, name, version)
}

func (db *DB) getScript(ctx context.Context, q queryer, projectID int64, name string, version int) (*Script, error) {
	var row scriptRow
	var err error
	if version == 0 {
		err = q.GetContext(ctx, &row, db.q(scriptSelect+` WHERE s.project_id = ? AND s.name = ? AND v.version = s.latest`), projectID, name)
	} else {
		err = q.GetContext(ctx, &row, db.q(scriptSelect+` WHERE s.project_id = ? AND s.name = ? AND v.version = ?`), projectID, name, version)
	}
	if err != nil {
		what := "script " + truncate(name, 80)
		if version > 0 {
			what += fmt.Sprintf(" version %d", version)
		}
		return nil, formatError(err, what)
	}
	return row.open()
}

// ListScripts returns a project's scripts at their latest versions, by name.
func (db *DB) ListScripts(ctx context.Context, projectID int64) ([]*Script, error) {
	return db.listScripts(ctx, scriptSelect+` WHERE s.project_id = ? AND v.version = s.latest ORDER BY s.name`, projectID)
}

// ListScriptVersions returns every version of a script, newest first; ENOTFOUND for an
// unknown script.
func (db *DB) ListScriptVersions(ctx context.Context, projectID int64, name string) ([]*Script, error) {
	out, err := db.listScripts(ctx, scriptSelect+` WHERE s.project_id = ? AND s.name = ? ORDER BY v.version DESC`, projectID, name)
	if err == nil && len(out) == 0 {
		return nil, Errorf(ENOTFOUND, "script %q not found", truncate(name, 80))
	}
	return out, err
}

func (db *DB) listScripts(ctx context.Context, query string, args ...any) ([]*Script, error) {
	var rows []*scriptRow
	if err := db.db.SelectContext(ctx, &rows, db.q(query), args...); err != nil {
		return nil, fmt.Errorf("list scripts: %w", err)
	}
	out := make([]*Script, 0, len(rows))
	for _, r := range rows {
		s, err := r.open()
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// DeleteScript removes a script with all its versions. Audited.
func (db *DB) DeleteScript(ctx context.Context, projectID int64, name string) error {
	return db.deleteNamed(ctx, "scripts", "script", projectID, name)
}

// SaveScriptJob creates a job, or replaces the parameters and steps of the job of that name
// (its trigger token is kept). Each step's script and account must exist. Audited.
func (db *DB) SaveScriptJob(ctx context.Context, j *ScriptJob) (*ScriptJob, error) {
	if err := j.Validate(); err != nil {
		return nil, err
	}
	if j.Params == nil {
		j.Params = []ScriptParam{}
	}
	err := db.Transact(ctx, func(tx *sqlx.Tx) error {
		if err := db.checkStepRefs(ctx, tx, j); err != nil {
			return err
		}
		now := db.now()
		res, err := tx.ExecContext(ctx, db.q(`UPDATE script_jobs SET description = ?, params = ?, steps = ?, updated_at = ?
			WHERE project_id = ? AND name = ?`), j.Description, jsonText(j.Params), jsonText(j.Steps), now, j.ProjectID, j.Name)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			_, err = tx.ExecContext(ctx, db.q(`INSERT INTO script_jobs (project_id, name, description, params, steps, created_at, updated_at)
				VALUES (?, ?, ?, ?, ?, ?, ?)`), j.ProjectID, j.Name, j.Description, jsonText(j.Params), jsonText(j.Steps), now, now)
			if isUniqueViolation(err) {
				return Errorf(ECONFLICT, "job %s was created at the same time; save again", j.Name)
			}
			if err != nil {
				return err
			}
		}
		return db.audit(ctx, tx, "job.save", fmt.Sprintf("project/%d/job/%s", j.ProjectID, j.Name), fmt.Sprintf("%d steps", len(j.Steps)))
	})
	if err != nil {
		return nil, err
	}
	return db.GetScriptJob(ctx, j.ProjectID, j.Name)
}

// checkStepRefs checks that the scripts (at their versions), accounts, versions, files and
// environments the steps name exist.
func (db *DB) checkStepRefs(ctx context.Context, tx *sqlx.Tx, j *ScriptJob) error {
	params := map[string]bool{}
	for _, p := range j.Params {
		params[p.Name] = true
	}
	for i, s := range j.Steps {
		field := fmt.Sprintf("steps[%d]", i)
		if s.Kind == StepPause {
			continue
		}
		if _, err := db.getExecAccount(ctx, tx, `project_id = ? AND name = ?`, j.ProjectID, s.Account); err != nil {
			return refError(field+".account", err)
		}
		if s.Target.Environment != "" {
			var id int64
			if err := tx.GetContext(ctx, &id, db.q(`SELECT id FROM environments WHERE project_id = ? AND name = ?`), j.ProjectID, s.Target.Environment); err != nil {
				return refError(field+".target.environment", formatError(err, "environment "+truncate(s.Target.Environment, 80)))
			}
		}
		var err error
		switch {
		case s.Kind == StepScript:
			_, err = db.getScript(ctx, tx, j.ProjectID, s.Script, s.ScriptVersion)
			err = refError(field+".script", err)
		case s.File != "":
			var id int64
			err = refError(field+".file", formatError(tx.GetContext(ctx, &id, db.q(`SELECT id FROM job_files WHERE project_id = ? AND name = ?`), j.ProjectID, s.File), "file "+truncate(s.File, 80)))
		case strings.HasPrefix(s.Version, "$"):
			if !params[s.Version[1:]] {
				err = Errorf(EINVALID, "%s.version: %s names no parameter of the job", field, truncate(s.Version, 80))
			}
		default:
			var id int64
			err = refError(field+".version", formatError(tx.GetContext(ctx, &id, db.q(`SELECT id FROM versions WHERE project_id = ? AND name = ? AND deleted_at IS NULL`), j.ProjectID, s.Version), "version "+truncate(s.Version, 80)))
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func refError(field string, err error) error {
	if IsNotFound(err) {
		return Errorf(EINVALID, "%s: %s", field, ErrorMessage(err))
	}
	return err
}

const jobSelect = `SELECT j.id, j.project_id, p.name AS project, j.name, j.description, j.params, j.steps,
	j.trigger_token_prefix, j.created_at, j.updated_at FROM script_jobs j JOIN projects p ON p.id = j.project_id`

type scriptJobRow struct {
	ScriptJob
	ParamsJSON string `db:"params"`
	StepsJSON  string `db:"steps"`
}

func (r *scriptJobRow) open() (*ScriptJob, error) {
	j := r.ScriptJob
	if err := json.Unmarshal([]byte(r.ParamsJSON), &j.Params); err != nil {
		return nil, fmt.Errorf("job %s params: %w", j.Name, err)
	}
	if err := json.Unmarshal([]byte(r.StepsJSON), &j.Steps); err != nil {
		return nil, fmt.Errorf("job %s steps: %w", j.Name, err)
	}
	j.CreatedAt, j.UpdatedAt = j.CreatedAt.UTC(), j.UpdatedAt.UTC()
	return &j, nil
}

// GetScriptJob returns a project's job by name, or ENOTFOUND.
func (db *DB) GetScriptJob(ctx context.Context, projectID int64, name string) (*ScriptJob, error) {
	return db.getScriptJob(ctx, db.db, `j.project_id = ? AND j.name = ?`, projectID, name)
}

// GetScriptJobByID returns a job by id, or ENOTFOUND.
func (db *DB) GetScriptJobByID(ctx context.Context, id int64) (*ScriptJob, error) {
	return db.getScriptJob(ctx, db.db, `j.id = ?`, id)
}

func (db *DB) getScriptJob(ctx context.Context, q queryer, where string, args ...any) (*ScriptJob, error) {
	var row scriptJobRow
	if err := q.GetContext(ctx, &row, db.q(jobSelect+` WHERE `+where), args...); err != nil {
		return nil, formatError(err, "job")
	}
	return row.open()
}

// ListScriptJobs returns a project's jobs by name.
func (db *DB) ListScriptJobs(ctx context.Context, projectID int64) ([]*ScriptJob, error) {
	var rows []*scriptJobRow
	if err := db.db.SelectContext(ctx, &rows, db.q(jobSelect+` WHERE j.project_id = ? ORDER BY j.name`), projectID); err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	out := make([]*ScriptJob, 0, len(rows))
	for _, r := range rows {
		j, err := r.open()
		if err != nil {
			return nil, err
		}
		out = append(out, j)
	}
	return out, nil
}

// DeleteScriptJob removes a job with its runs and schedules. Audited.
func (db *DB) DeleteScriptJob(ctx context.Context, projectID int64, name string) error {
	return db.deleteNamed(ctx, "script_jobs", "job", projectID, name)
}

// NewTriggerToken gives job id a new trigger token (replacing the old one) and returns it;
// it is shown this once: only its hash is stored. Audited.
// The token runs the job with the rights of the user behind ctx (see NewJobRun.AsUserID).
func (db *DB) NewTriggerToken(ctx context.Context, jobID int64) (string, error) {
	by := ActorFrom(ctx).UserID
	if by == 0 {
		return "", Errorf(EFORBIDDEN, "a trigger token is made by a person, whose rights it uses")
	}
	secret := TriggerTokenPrefix + RandomSecret(30)
	err := db.Transact(ctx, func(tx *sqlx.Tx) error {
		res, err := tx.ExecContext(ctx, db.q(`UPDATE script_jobs SET trigger_token_hash = ?, trigger_token_prefix = ?, trigger_token_by = ? WHERE id = ?`),
			hashSecret(secret), secret[:len(TriggerTokenPrefix)+6], by, jobID)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return Errorf(ENOTFOUND, "job %d not found", jobID)
		}
		return db.audit(ctx, tx, "job.trigger_token", fmt.Sprintf("job/%d", jobID), secret[:len(TriggerTokenPrefix)+6]+"…")
	})
	return secret, err
}

// JobByTriggerToken returns the job whose trigger token is secret and is jobID, and the id of
// the user who made the token; EUNAUTHORIZED for any other token (another job's too), in
// words that do not say which.
func (db *DB) JobByTriggerToken(ctx context.Context, jobID int64, secret string) (*ScriptJob, int64, error) {
	bad := Errorf(EUNAUTHORIZED, "the trigger token is not valid for this job")
	if !strings.HasPrefix(secret, TriggerTokenPrefix) || len(secret) > 200 {
		return nil, 0, bad
	}
	var by *int64
	err := db.db.GetContext(ctx, &by, db.q(`SELECT trigger_token_by FROM script_jobs WHERE id = ? AND trigger_token_hash = ?
		AND trigger_token_hash <> ''`), jobID, hashSecret(secret))
	if err != nil || by == nil {
		return nil, 0, bad
	}
	j, err := db.GetScriptJobByID(ctx, jobID)
	return j, *by, err
}
