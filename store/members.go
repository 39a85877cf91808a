package store

import (
	"context"

	"github.com/jmoiron/sqlx"
)

// SetMember makes the user called userName a member of the project, with or without the
// production right, and returns the membership.
func (db *DB) SetMember(ctx context.Context, projectID int64, userName string, production bool) (*Member, error) {
	var m *Member
	err := db.Transact(ctx, func(tx *sqlx.Tx) error {
		p, err := db.getProject(ctx, tx, `id = ?`, projectID, "project")
		if err != nil {
			return err
		}
		u, err := getUser(ctx, tx, db, `name = ?`, userName)
		if IsNotFound(err) {
			return Errorf(EINVALID, "user: no user named %q", truncate(userName, 80))
		}
		if err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, db.q(`UPDATE project_members SET production = ? WHERE project_id = ? AND user_id = ?`), production, projectID, u.ID)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			if _, err := tx.ExecContext(ctx, db.q(`INSERT INTO project_members (project_id, user_id, production) VALUES (?, ?, ?)`), projectID, u.ID, production); err != nil {
				return formatError(err, "member "+userName)
			}
		}
		m = &Member{ProjectID: projectID, UserID: u.ID, UserName: u.Name, Production: production}
		detail := "member"
		if production {
			detail = "member with production right"
		}
		return db.audit(ctx, tx, "member.set", "project/"+p.Name, u.Name+" is "+detail)
	})
	return m, err
}

// RemoveMember ends the user's membership of the project.
func (db *DB) RemoveMember(ctx context.Context, projectID int64, userName string) error {
	return db.Transact(ctx, func(tx *sqlx.Tx) error {
		p, err := db.getProject(ctx, tx, `id = ?`, projectID, "project")
		if err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, db.q(`DELETE FROM project_members WHERE project_id = ? AND user_id = (SELECT id FROM users WHERE name = ?)`), projectID, userName)
		if err := mustAffect(res, err, "member "+userName); err != nil {
			return err
		}
		return db.audit(ctx, tx, "member.remove", "project/"+p.Name, userName)
	})
}

const memberQuery = `SELECT m.project_id, m.user_id, u.name AS user_name, m.production
	FROM project_members m JOIN users u ON u.id = m.user_id`

// ListMembers returns the members of the project by user name.
func (db *DB) ListMembers(ctx context.Context, projectID int64) ([]*Member, error) {
	members := []*Member{}
	err := db.db.SelectContext(ctx, &members, db.q(memberQuery+` WHERE m.project_id = ? ORDER BY u.name`), projectID)
	return members, err
}

// GetMember returns the user's membership of the project, or ENOTFOUND when not a member.
func (db *DB) GetMember(ctx context.Context, projectID, userID int64) (*Member, error) {
	var m Member
	err := db.db.GetContext(ctx, &m, db.q(memberQuery+` WHERE m.project_id = ? AND m.user_id = ?`), projectID, userID)
	if err != nil {
		return nil, formatError(err, "member")
	}
	return &m, nil
}
