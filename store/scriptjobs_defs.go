package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/jmoiron/sqlx"
	"golang.org/x/crypto/ssh"
)

// This file stores the definitions of jobs: execution accounts, scripts with their versions,
// jobs, uploaded files and host labels.

// TriggerTokenPrefix starts every job trigger token.
const TriggerTokenPrefix = "ferrytrig_"

// CreateExecAccount stores a project's execution account with its key (sealed). EINVALID for a
// bad name, user or key; ECONFLICT when the project has an account of that name. Audited.
func (db *DB) CreateExecAccount(ctx context.Context, a *ExecAccount) error {
	if err := checkAccount(a); err != nil {
		return err
	}
	return db.Transact(ctx, func(tx *sqlx.Tx) error {
		a.CreatedAt, a.UpdatedAt = db.now(), db.now()
		err := tx.GetContext(ctx, &a.ID, db.q(`INSERT INTO exec_accounts (project_id, name, username, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?) RETURNING id`), a.ProjectID, a.Name, a.User, a.CreatedAt, a.UpdatedAt)
		if isUniqueViolation(err) {
			return Errorf(ECONFLICT, "name: the project has an account named %q already", a.Name)
		}
		if err != nil {
			return err
		}
		if _, err := db.sealInto(ctx, tx, "exec_accounts", "private_key_enc", a.ID, a.PrivateKey); err != nil {
			return err
		}
		a.HasKey = a.PrivateKey != ""
		return db.audit(ctx, tx, "account.create", fmt.Sprintf("project/%d/account/%s", a.ProjectID, a.Name), a.User)
	})
}

func checkAccount(a *ExecAccount) error {
	if err := a.Validate(); err != nil {
		return err
	}
	if a.PrivateKey == "" {
		return Errorf(EINVALID, "private_key: required; the key that logs in as %s", a.User)
	}
	if _, err := ssh.ParsePrivateKey([]byte(a.PrivateKey)); err != nil {
		return Errorf(EINVALID, "private_key: not a PEM or OpenSSH private key without a passphrase")
	}
	return nil
}

// UpdateExecAccount replaces an account's user and, when key is not "", its key. ENOTFOUND
// for an unknown account. Audited.
func (db *DB) UpdateExecAccount(ctx context.Context, projectID int64, name, user, key string) (*ExecAccount, error) {
	err := db.Transact(ctx, func(tx *sqlx.Tx) error {
		a, err := db.getExecAccount(ctx, tx, `project_id = ? AND name = ?`, projectID, name)
		if err != nil {
			return err
		}
		a.User = user
		if key != "" {
			a.PrivateKey = key
		}
		if err := checkAccount(a); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, db.q(`UPDATE exec_accounts SET username = ?, updated_at = ? WHERE id = ?`), a.User, db.now(), a.ID); err != nil {
			return err
		}
		if _, err := db.sealInto(ctx, tx, "exec_accounts", "private_key_enc", a.ID, a.PrivateKey); err != nil {
			return err
		}
		return db.audit(ctx, tx, "account.update", fmt.Sprintf("project/%d/account/%s", projectID, name), a.User)
	})
	if err != nil {
		return nil, err
	}
	return db.GetExecAccount(ctx, projectID, name)
}

// DeleteExecAccount removes an account. ENOTFOUND for an unknown one. Audited.
func (db *DB) DeleteExecAccount(ctx context.Context, projectID int64, name string) error {
	return db.deleteNamed(ctx, "exec_accounts", "account", projectID, name)
}

func (db *DB) deleteNamed(ctx context.Context, table, noun string, projectID int64, name string) error {
	return db.Transact(ctx, func(tx *sqlx.Tx) error {
		res, err := tx.ExecContext(ctx, db.q(`DELETE FROM `+table+` WHERE project_id = ? AND name = ?`), projectID, name)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return Errorf(ENOTFOUND, "%s %q not found", noun, truncate(name, 80))
		}
		return db.audit(ctx, tx, noun+".delete", fmt.Sprintf("project/%d/%s/%s", projectID, noun, name), "")
	})
}

type accountRow struct {
	ExecAccount
	KeyEnc string `db:"private_key_enc"`
}

// GetExecAccount returns an account with its key opened, or ENOTFOUND.
func (db *DB) GetExecAccount(ctx context.Context, projectID int64, name string) (*ExecAccount, error) {
	return db.getExecAccount(ctx, db.db, `project_id = ? AND name = ?`, projectID, name)
}

// GetExecAccountByID returns an account with its key opened, or ENOTFOUND.
func (db *DB) GetExecAccountByID(ctx context.Context, id int64) (*ExecAccount, error) {
	return db.getExecAccount(ctx, db.db, `id = ?`, id)
}

func (db *DB) getExecAccount(ctx context.Context, q queryer, where string, args ...any) (*ExecAccount, error) {
	var row accountRow
	err := q.GetContext(ctx, &row, db.q(`SELECT id, project_id, name, username, private_key_enc, created_at, updated_at
		FROM exec_accounts WHERE `+where), args...)
	if err != nil {
		return nil, formatError(err, "account")
	}
	return db.openAccount(&row)
}

func (db *DB) openAccount(row *accountRow) (*ExecAccount, error) {
	a := row.ExecAccount
	var err error
	if a.PrivateKey, err = db.cipher.Open(row.KeyEnc, SecretPlace("exec_accounts", "private_key_enc", a.ID)); err != nil {
		return nil, fmt.Errorf("account %s key: %w", a.Name, err)
	}
	a.HasKey = a.PrivateKey != ""
	a.CreatedAt, a.UpdatedAt = a.CreatedAt.UTC(), a.UpdatedAt.UTC()
	return &a, nil
}

// ListExecAccounts returns a project's accounts by name (keys not opened).
func (db *DB) ListExecAccounts(ctx context.Context, projectID int64) ([]*ExecAccount, error) {
	var rows []*accountRow
	if err := db.db.SelectContext(ctx, &rows, db.q(`SELECT id, project_id, name, username, private_key_enc, created_at, updated_at
		FROM exec_accounts WHERE project_id = ? ORDER BY name`), projectID); err != nil {
		return nil, fmt.Errorf("list accounts: %w", err)
	}
	out := make([]*ExecAccount, 0, len(rows))
	for _, r := range rows {
		a := r.ExecAccount
		a.HasKey = r.KeyEnc != ""
		a.CreatedAt, a.UpdatedAt = a.CreatedAt.UTC(), a.UpdatedAt.UTC()
		out = append(out, &a)
	}
	return out, nil
}

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

// SaveJobFile stores an uploaded file (replacing one of the same name). ETOOLARGE past
// MaxJobFileBytes. Audited.
func (db *DB) SaveJobFile(ctx context.Context, projectID int64, name string, content []byte) (*JobFile, error) {
	if err := ValidateName("name", name); err != nil {
		return nil, err
	}
	if len(content) > MaxJobFileBytes {
		return nil, Errorf(ETOOLARGE, "file: at most %d MiB", MaxJobFileBytes>>20)
	}
	sum := sha256.Sum256(content)
	f := &JobFile{ProjectID: projectID, Name: name, SHA256: hex.EncodeToString(sum[:]), Size: int64(len(content)), CreatedAt: db.now()}
	err := db.Transact(ctx, func(tx *sqlx.Tx) error {
		if _, err := tx.ExecContext(ctx, db.q(`DELETE FROM job_files WHERE project_id = ? AND name = ?`), projectID, name); err != nil {
			return err
		}
		if err := tx.GetContext(ctx, &f.ID, db.q(`INSERT INTO job_files (project_id, name, sha256, size, content, created_at)
			VALUES (?, ?, ?, ?, ?, ?) RETURNING id`), projectID, name, f.SHA256, f.Size, content, f.CreatedAt); err != nil {
			return err
		}
		return db.audit(ctx, tx, "file.save", fmt.Sprintf("project/%d/file/%s", projectID, name), f.SHA256)
	})
	if err != nil {
		return nil, err
	}
	return f, nil
}

// ListJobFiles returns a project's uploaded files (without content) by name.
func (db *DB) ListJobFiles(ctx context.Context, projectID int64) ([]*JobFile, error) {
	out := []*JobFile{}
	err := db.db.SelectContext(ctx, &out, db.q(`SELECT id, project_id, name, sha256, size, created_at FROM job_files
		WHERE project_id = ? ORDER BY name`), projectID)
	return out, err
}

// ReadJobFile returns an uploaded file and its content, or ENOTFOUND.
func (db *DB) ReadJobFile(ctx context.Context, id int64) (*JobFile, []byte, error) {
	var row struct {
		JobFile
		Content []byte `db:"content"`
	}
	err := db.db.GetContext(ctx, &row, db.q(`SELECT id, project_id, name, sha256, size, created_at, content FROM job_files WHERE id = ?`), id)
	if err != nil {
		return nil, nil, formatError(err, fmt.Sprintf("file %d", id))
	}
	return &row.JobFile, row.Content, nil
}

// SetHostLabels replaces the labels of a host (each a name, see ValidateName). Audited.
func (db *DB) SetHostLabels(ctx context.Context, host string, labels []string) ([]string, error) {
	labels = dedupe(labels)
	for _, l := range labels {
		if err := ValidateName("labels", l); err != nil {
			return nil, err
		}
	}
	err := db.Transact(ctx, func(tx *sqlx.Tx) error {
		var id int64
		if err := tx.GetContext(ctx, &id, db.q(`SELECT id FROM hosts WHERE name = ?`), host); err != nil {
			return formatError(err, "host "+truncate(host, 80))
		}
		if _, err := tx.ExecContext(ctx, db.q(`DELETE FROM host_labels WHERE host_id = ?`), id); err != nil {
			return err
		}
		for _, l := range labels {
			if _, err := tx.ExecContext(ctx, db.q(`INSERT INTO host_labels (host_id, label) VALUES (?, ?)`), id, l); err != nil {
				return err
			}
		}
		return db.audit(ctx, tx, "host.labels", "host/"+host, strings.Join(labels, ", "))
	})
	return labels, err
}

// HostLabels returns the labels of a host, sorted.
func (db *DB) HostLabels(ctx context.Context, host string) ([]string, error) {
	out := []string{}
	err := db.db.SelectContext(ctx, &out, db.q(`SELECT l.label FROM host_labels l JOIN hosts h ON h.id = l.host_id
		WHERE h.name = ? ORDER BY l.label`), host)
	return out, err
}

func dedupe(in []string) []string {
	seen := map[string]bool{}
	out := []string{}
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}
