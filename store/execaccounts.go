package store

import (
	"context"
	"fmt"

	"github.com/jmoiron/sqlx"
	"golang.org/x/crypto/ssh"
)

// Execution accounts: the Unix users job steps run as, per project, with keys sealed like
// hosts' keys (see crypto.go).

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
