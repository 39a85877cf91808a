package store

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jmoiron/sqlx"
)

// DefaultKeepVersions is how many versions of a project are kept unless it says otherwise.
const DefaultKeepVersions = 20

// ProjectFilter selects projects.
type ProjectFilter struct {
	// MemberID, when not 0, keeps only the projects this user is a member of.
	MemberID int64
}

// ProjectUpdate holds the fields of a project to change; nil fields stay as they are.
type ProjectUpdate struct {
	Name, GitLabPath, CloneURL, WebhookSecret, GitLabToken, TagTemplate *string
	Trigger                                                             *Trigger
	KeepVersions                                                        *int

	// CloneCredentials replaces the clone URL's credentials ("" removes them). A CloneURL
	// that carries credentials sets them too; one on another host drops the old ones.
	CloneCredentials *string
	// WebhookSigningToken sets (or with "" removes) GitLab's webhook signing token.
	WebhookSigningToken *string
}

type projectRow struct {
	Project
	WebhookSecretEnc string `db:"webhook_secret_enc"`
	GitLabTokenEnc   string `db:"gitlab_token_enc"`
	TriggerRules     string `db:"trigger_rules"`

	CloneCredentialsEnc    string `db:"clone_credentials_enc"`
	WebhookSigningTokenEnc string `db:"webhook_signing_token_enc"`
}

const projectColumns = `id, name, gitlab_path, clone_url, webhook_secret_enc, gitlab_token_enc, trigger_rules,
	keep_versions, tag_template, created_at, updated_at, clone_credentials_enc, webhook_signing_token_enc`

// CreateProject stores p and fills its ID and times. A zero KeepVersions becomes 20.
func (db *DB) CreateProject(ctx context.Context, p *Project) error {
	if p.KeepVersions == 0 {
		p.KeepVersions = DefaultKeepVersions
	}
	normalizeTrigger(&p.Trigger)
	// Credentials written into the clone URL are kept apart from it, encrypted.
	clean, creds := SplitCloneURL(p.CloneURL)
	if p.CloneURL = clean; p.CloneCredentials == "" {
		p.CloneCredentials = creds
	}
	if err := p.Validate(); err != nil {
		return err
	}
	row, err := db.sealProject(p)
	if err != nil {
		return err
	}
	return db.Transact(ctx, func(tx *sqlx.Tx) error {
		p.CreatedAt, p.UpdatedAt = db.now(), db.now()
		err := tx.GetContext(ctx, &p.ID, db.q(`INSERT INTO projects (name, gitlab_path, clone_url, webhook_secret_enc,
			gitlab_token_enc, trigger_rules, keep_versions, tag_template, created_at, updated_at, clone_credentials_enc)
			VALUES (?, ?, ?, '', '', ?, ?, ?, ?, ?, '') RETURNING id`),
			p.Name, p.GitLabPath, p.CloneURL, row.TriggerRules,
			p.KeepVersions, p.TagTemplate, p.CreatedAt, p.UpdatedAt)
		if err != nil {
			return db.projectConflict(ctx, tx, err, p)
		}
		// Secrets are sealed for the row's id, which the INSERT just gave.
		for column, plain := range map[string]string{"webhook_secret_enc": p.WebhookSecret,
			"gitlab_token_enc": p.GitLabToken, "clone_credentials_enc": p.CloneCredentials} {
			if _, err := db.sealInto(ctx, tx, "projects", column, p.ID, plain); err != nil {
				return err
			}
		}
		if err := db.storeSigningToken(ctx, tx, p); err != nil {
			return err
		}
		return db.audit(ctx, tx, "project.create", "project/"+p.Name, p.GitLabPath)
	})
}

// projectConflict says which unique field of p is taken. It reads the violated constraint from
// the error itself: on PostgreSQL the transaction is aborted after the violation, so no further
// query could ask.
func (db *DB) projectConflict(ctx context.Context, tx *sqlx.Tx, err error, p *Project) error {
	if !isUniqueViolation(err) {
		return formatError(err, "project "+p.Name)
	}
	if uniqueColumn(err) == "name" {
		return Errorf(ECONFLICT, "name: a project named %q already exists", p.Name)
	}
	return Errorf(ECONFLICT, "gitlab_path: project %q already uses GitLab path %q", p.Name, p.GitLabPath)
}

func normalizeTrigger(t *Trigger) {
	if t.Branches == nil {
		t.Branches = []string{}
	}
	if t.Deploy == nil {
		t.Deploy = map[string]string{}
	}
}

func (db *DB) sealProject(p *Project) (*projectRow, error) {
	row := &projectRow{Project: *p}
	var err error
	if row.WebhookSecretEnc, err = db.cipher.Seal(p.WebhookSecret, SecretPlace("projects", "webhook_secret_enc", p.ID)); err != nil {
		return nil, err
	}
	if row.GitLabTokenEnc, err = db.cipher.Seal(p.GitLabToken, SecretPlace("projects", "gitlab_token_enc", p.ID)); err != nil {
		return nil, err
	}
	if row.CloneCredentialsEnc, err = db.cipher.Seal(p.CloneCredentials, SecretPlace("projects", "clone_credentials_enc", p.ID)); err != nil {
		return nil, err
	}
	rules, err := json.Marshal(p.Trigger)
	if err != nil {
		return nil, err
	}
	row.TriggerRules = string(rules)
	return row, nil
}

func (db *DB) openProject(row *projectRow) (*Project, error) {
	p := row.Project
	var err error
	if p.WebhookSecret, err = db.cipher.Open(row.WebhookSecretEnc, SecretPlace("projects", "webhook_secret_enc", p.ID)); err != nil {
		return nil, fmt.Errorf("project %s webhook secret: %w", p.Name, err)
	}
	if p.GitLabToken, err = db.cipher.Open(row.GitLabTokenEnc, SecretPlace("projects", "gitlab_token_enc", p.ID)); err != nil {
		return nil, fmt.Errorf("project %s GitLab token: %w", p.Name, err)
	}
	if p.CloneCredentials, err = db.cipher.Open(row.CloneCredentialsEnc, SecretPlace("projects", "clone_credentials_enc", p.ID)); err != nil {
		return nil, fmt.Errorf("project %s clone credentials: %w", p.Name, err)
	}
	if err := json.Unmarshal([]byte(row.TriggerRules), &p.Trigger); err != nil {
		return nil, fmt.Errorf("project %s trigger rules: %w", p.Name, err)
	}
	normalizeTrigger(&p.Trigger)
	if p.WebhookSigningToken, err = db.openSigningToken(row); err != nil {
		return nil, err
	}
	p.CreatedAt, p.UpdatedAt = p.CreatedAt.UTC(), p.UpdatedAt.UTC()
	return &p, nil
}

// GetProject returns the project called name, with its secrets decrypted, or ENOTFOUND.
func (db *DB) GetProject(ctx context.Context, name string) (*Project, error) {
	return db.getProject(ctx, db.db, `name = ?`, name, "project "+name)
}

// GetProjectByID returns the project with id, or ENOTFOUND.
func (db *DB) GetProjectByID(ctx context.Context, id int64) (*Project, error) {
	return db.getProject(ctx, db.db, `id = ?`, id, "project")
}

// GetProjectByGitLabPath returns the project whose GitLab path is path, or ENOTFOUND.
func (db *DB) GetProjectByGitLabPath(ctx context.Context, path string) (*Project, error) {
	// Every webhook asks this first: a prepared statement (prepared.go).
	st, err := db.stmt(ctx, db.db, nil, `SELECT `+projectColumns+` FROM projects WHERE gitlab_path = ?`)
	if err != nil {
		return nil, err
	}
	var row projectRow
	if err := st.GetContext(ctx, &row, path); err != nil {
		return nil, formatError(err, "project with GitLab path "+path)
	}
	return db.openProject(&row)
}

func (db *DB) getProject(ctx context.Context, q queryer, where string, arg any, what string) (*Project, error) {
	var row projectRow
	if err := q.GetContext(ctx, &row, db.q(`SELECT `+projectColumns+` FROM projects WHERE `+where), arg); err != nil {
		return nil, formatError(err, what)
	}
	return db.openProject(&row)
}

// ListProjects returns the projects matching f, by name.
func (db *DB) ListProjects(ctx context.Context, f ProjectFilter) ([]*Project, error) {
	query := `SELECT ` + projectColumns + ` FROM projects ORDER BY name`
	var args []any
	if f.MemberID != 0 {
		query = `SELECT ` + projectColumns + ` FROM projects WHERE id IN (SELECT project_id FROM project_members WHERE user_id = ?) ORDER BY name`
		args = append(args, f.MemberID)
	}
	var rows []*projectRow
	if err := db.db.SelectContext(ctx, &rows, db.q(query), args...); err != nil {
		return nil, err
	}
	out := make([]*Project, 0, len(rows))
	for _, r := range rows {
		p, err := db.openProject(r)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// UpdateProject changes the given fields of the project called name and returns it as it is now.
func (db *DB) UpdateProject(ctx context.Context, name string, upd ProjectUpdate) (*Project, error) {
	var out *Project
	err := db.Transact(ctx, func(tx *sqlx.Tx) error {
		p, err := db.getProject(ctx, tx, `name = ?`, name, "project "+name)
		if err != nil {
			return err
		}
		applyProjectUpdate(p, upd)
		normalizeTrigger(&p.Trigger)
		if err := p.Validate(); err != nil {
			return err
		}
		row, err := db.sealProject(p)
		if err != nil {
			return err
		}
		p.UpdatedAt = db.now()
		_, err = tx.ExecContext(ctx, db.q(`UPDATE projects SET name = ?, gitlab_path = ?, clone_url = ?, webhook_secret_enc = ?,
			gitlab_token_enc = ?, trigger_rules = ?, keep_versions = ?, tag_template = ?, updated_at = ?,
			clone_credentials_enc = ? WHERE id = ?`),
			p.Name, p.GitLabPath, p.CloneURL, row.WebhookSecretEnc, row.GitLabTokenEnc, row.TriggerRules,
			p.KeepVersions, p.TagTemplate, p.UpdatedAt, row.CloneCredentialsEnc, p.ID)
		if err != nil {
			return db.projectConflict(ctx, tx, err, p)
		}
		if upd.WebhookSigningToken != nil {
			if err := db.storeSigningToken(ctx, tx, p); err != nil {
				return err
			}
		}
		out = p
		return db.audit(ctx, tx, "project.update", "project/"+p.Name, projectChanges(name, upd))
	})
	return out, err
}

func applyProjectUpdate(p *Project, upd ProjectUpdate) {
	set := func(dst *string, src *string) {
		if src != nil {
			*dst = *src
		}
	}
	set(&p.Name, upd.Name)
	set(&p.GitLabPath, upd.GitLabPath)
	if upd.CloneURL != nil {
		setCloneURL(p, *upd.CloneURL)
	}
	set(&p.CloneCredentials, upd.CloneCredentials)
	set(&p.WebhookSecret, upd.WebhookSecret)
	set(&p.GitLabToken, upd.GitLabToken)
	set(&p.TagTemplate, upd.TagTemplate)
	set(&p.WebhookSigningToken, upd.WebhookSigningToken)
	if upd.Trigger != nil {
		p.Trigger = *upd.Trigger
	}
	if upd.KeepVersions != nil {
		p.KeepVersions = *upd.KeepVersions
	}
}

func projectChanges(oldName string, upd ProjectUpdate) string {
	s := changedFields(upd.Name != nil, "name", upd.GitLabPath != nil, "gitlab_path", upd.CloneURL != nil, "clone_url",
		upd.WebhookSecret != nil, "webhook_secret", upd.GitLabToken != nil, "gitlab_token", upd.TagTemplate != nil, "tag_template",
		upd.Trigger != nil, "trigger", upd.KeepVersions != nil, "keep_versions", upd.CloneCredentials != nil, "clone_credentials",
		upd.WebhookSigningToken != nil, "webhook_signing_token")
	if upd.Name != nil && *upd.Name != oldName {
		s += " (was " + oldName + ")"
	}
	return s
}

// DeleteProject removes the project called name with its environments and memberships.
func (db *DB) DeleteProject(ctx context.Context, name string) error {
	return db.Transact(ctx, func(tx *sqlx.Tx) error {
		res, err := tx.ExecContext(ctx, db.q(`DELETE FROM projects WHERE name = ?`), name)
		if err := mustAffect(res, err, "project "+name); err != nil {
			return err
		}
		return db.audit(ctx, tx, "project.delete", "project/"+name, "")
	})
}

// ProjectsGeneration returns a number that changes whenever a project or a project membership
// changes, in any process (database triggers bump it in the changing transaction). A list of
// projects read at one generation is current for as long as the generation stays the same.
func (db *DB) ProjectsGeneration(ctx context.Context) (int64, error) {
	var n int64
	if err := db.db.GetContext(ctx, &n, `SELECT n FROM generations WHERE name = 'projects'`); err != nil {
		return 0, fmt.Errorf("read the projects generation: %w", err)
	}
	return n, nil
}
