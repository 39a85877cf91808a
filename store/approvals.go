package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
)

// Decisions on a deployment that awaits approval.
const (
	DecisionApproved = "approved"
	DecisionRejected = "rejected"
)

// Approval is one person's decision on a deployment.
type Approval struct {
	UserID   int64     `db:"user_id" json:"-"`
	User     string    `db:"user_name" json:"user"`
	Decision string    `db:"decision" json:"decision"`
	Comment  string    `db:"comment" json:"comment"`
	At       time.Time `db:"at" json:"at"`
}

func (db *DB) loadApprovals(ctx context.Context, q queryer, d *Deployment) error {
	d.Approvals = []*Approval{}
	if err := q.SelectContext(ctx, &d.Approvals, db.q(`SELECT user_id, user_name, decision, comment, at FROM deployment_approvals
		WHERE deployment_id = ? ORDER BY id`), d.ID); err != nil {
		return fmt.Errorf("deployment %d approvals: %w", d.ID, err)
	}
	for _, a := range d.Approvals {
		a.At = a.At.UTC()
	}
	return nil
}

// ApproveDeployment records the approval of the person behind ctx, with a comment, and once
// enough people approved moves the deployment on (queued, or scheduled while its time has not
// come or its environment is frozen; deployment.approved in the outbox). EFORBIDDEN for the
// requester and for someone without the right to deploy there; ECONFLICT when the person
// already decided or the deployment no longer awaits approval. Audited.
func (db *DB) ApproveDeployment(ctx context.Context, id int64, comment string) (*Deployment, error) {
	return db.decideDeployment(ctx, id, DecisionApproved, comment)
}

// RejectDeployment records a rejection with a comment and ends the deployment as rejected
// (deployment.rejected in the outbox); who may, and the errors, as for ApproveDeployment.
func (db *DB) RejectDeployment(ctx context.Context, id int64, comment string) (*Deployment, error) {
	return db.decideDeployment(ctx, id, DecisionRejected, comment)
}

func (db *DB) decideDeployment(ctx context.Context, id int64, decision, comment string) (*Deployment, error) {
	a := ActorFrom(ctx)
	if !hasActor(ctx) || a.UserID == 0 {
		return nil, Errorf(EFORBIDDEN, "only a person may approve or reject a deployment")
	}
	comment = strings.TrimSpace(comment)
	if len(comment) > 2000 {
		return nil, Errorf(EINVALID, "comment: at most 2000 characters")
	}
	err := db.Transact(ctx, func(tx *sqlx.Tx) error {
		if db.dialect == Postgres {
			// Two people deciding at once take turns, so that the second sees the first's
			// approval when it counts them (SQLite's writers take turns anyway).
			if _, err := tx.ExecContext(ctx, db.q(`SELECT id FROM deployments WHERE id = ? FOR UPDATE`), id); err != nil {
				return err
			}
		}
		d, err := db.getDeployment(ctx, tx, id)
		if err != nil {
			return err
		}
		if err := db.mayDecide(ctx, tx, d, a); err != nil {
			return err
		}
		now, err := db.clock(ctx, tx)
		if err != nil {
			return err
		}
		if d.ApprovalExpiresAt != nil && !now.Before(*d.ApprovalExpiresAt) {
			return Errorf(ECONFLICT, "deployment %d can no longer be approved: the time to approve ran out at %s", id, d.ApprovalExpiresAt.Format(time.RFC3339))
		}
		_, err = tx.ExecContext(ctx, db.q(`INSERT INTO deployment_approvals (deployment_id, user_id, user_name, decision, comment, at)
			VALUES (?, ?, ?, ?, ?, ?)`), id, a.UserID, a.Name, decision, comment, db.now())
		if isUniqueViolation(err) {
			return Errorf(ECONFLICT, "you have already decided on deployment %d", id)
		}
		if err != nil {
			return err
		}
		d.Approvals = append(d.Approvals, &Approval{UserID: a.UserID, User: a.Name, Decision: decision, Comment: comment})
		return db.applyDecision(ctx, tx, d, a, decision, comment, now)
	})
	if err != nil {
		return nil, err
	}
	return db.GetDeployment(ctx, id)
}

// mayDecide checks that d awaits approval, that a did not ask for it or decide on it already,
// and that a may deploy there: an administrator, or a member of the project (with the
// production right when the environment is protected).
func (db *DB) mayDecide(ctx context.Context, q queryer, d *Deployment, a Actor) error {
	if d.Status != DeploymentAwaitingApproval {
		return Errorf(ECONFLICT, "deployment %d does not await approval: it is %s", d.ID, d.Status)
	}
	if d.RequestedByID != nil && *d.RequestedByID == a.UserID {
		return Errorf(EFORBIDDEN, "you asked for deployment %d, so someone else must approve or reject it (four-eyes rule)", d.ID)
	}
	for _, ap := range d.Approvals {
		if ap.UserID == a.UserID {
			return Errorf(ECONFLICT, "you already %s deployment %d at %s", ap.Decision, d.ID, ap.At.Format(time.RFC3339))
		}
	}
	var admin bool
	if err := q.GetContext(ctx, &admin, db.q(`SELECT admin FROM users WHERE id = ?`), a.UserID); err != nil {
		return formatError(err, "user "+a.Name)
	}
	if admin {
		return nil
	}
	var production bool
	err := q.GetContext(ctx, &production, db.q(`SELECT production FROM project_members WHERE project_id = ? AND user_id = ?`), d.ProjectID, a.UserID)
	if errors.Is(err, sql.ErrNoRows) {
		return Errorf(EFORBIDDEN, "you are not a member of project %s, so you may not decide on its deployments", d.Project)
	}
	if err != nil {
		return err
	}
	eg, _, err := db.envGates(ctx, q, d.EnvironmentID)
	if err != nil {
		return err
	}
	if eg.Protected && !production {
		return Errorf(EFORBIDDEN, "approving a deployment to protected environment %s needs the production right on project %s", d.Environment, d.Project)
	}
	return nil
}

// applyDecision ends d on a rejection, or moves it on when this approval was the last needed.
func (db *DB) applyDecision(ctx context.Context, tx *sqlx.Tx, d *Deployment, a Actor, decision, comment string, now time.Time) error {
	text := fmt.Sprintf("%s by %s", decision, a.Name)
	if comment != "" {
		text += ": " + comment
	}
	target := envTarget(d.Project, d.Environment)
	if err := db.audit(ctx, tx, "deployment."+strings.TrimSuffix(decision, "d"), target, fmt.Sprintf("deployment %d: %s", d.ID, text)); err != nil {
		return err
	}
	if decision == DecisionRejected {
		ended, err := db.endAwaiting(ctx, tx, d, text, OutboxDeploymentRejected)
		if err == nil && !ended {
			err = Errorf(ECONFLICT, "deployment %d no longer awaits approval", d.ID)
		}
		return err
	}
	if err := db.addLogLine(ctx, tx, JobDeployment, d.ID, "", text+" ("+approvalCount(d)+")"); err != nil {
		return err
	}
	if n := countApproved(d); n < d.ApprovalsRequired {
		return nil
	}
	if refusal, err := db.requesterRefusal(ctx, tx, d); err != nil || refusal != "" {
		if err != nil {
			return err
		}
		ended, err := db.endAwaiting(ctx, tx, d, refusal, OutboxDeploymentRejected)
		if err == nil && !ended {
			err = Errorf(ECONFLICT, "deployment %d no longer awaits approval", d.ID)
		}
		return err
	}
	next, frozenBy, err := db.afterApproval(ctx, tx, d, now)
	if err != nil {
		return err
	}
	res, err := tx.ExecContext(ctx, db.q(`UPDATE deployments SET status = ?, frozen_by = ? WHERE id = ? AND status = ?`),
		next, frozenBy, d.ID, DeploymentAwaitingApproval)
	if n, err := affected(res, err); n != 1 {
		if err == nil {
			err = Errorf(ECONFLICT, "deployment %d no longer awaits approval", d.ID)
		}
		return err
	}
	line := "approved: " + next
	if frozenBy != "" {
		line += "; waiting: the environment is frozen: " + frozenBy
	}
	if err := db.addLogLine(ctx, tx, JobDeployment, d.ID, "", line); err != nil {
		return err
	}
	return db.addOutbox(ctx, tx, OutboxDeploymentApproved, d.ProjectID, JobDeployment, d.ID)
}

// afterApproval says where an approved deployment goes: scheduled while its time has not come
// or its environment is frozen (frozenBy naming the window), else queued.
func (db *DB) afterApproval(ctx context.Context, tx *sqlx.Tx, d *Deployment, now time.Time) (status, frozenBy string, err error) {
	if d.ScheduledAt != nil && d.ScheduledAt.After(now) {
		return DeploymentScheduled, "", nil
	}
	if d.OverrideReason != "" {
		return DeploymentQueued, "", nil
	}
	_, freezes, err := db.envGates(ctx, tx, d.EnvironmentID)
	if err != nil {
		return "", "", err
	}
	if w := FrozenAt(freezes, now); w != nil {
		return DeploymentScheduled, w.String(), nil
	}
	return DeploymentQueued, "", nil
}

func countApproved(d *Deployment) int {
	n := 0
	for _, a := range d.Approvals {
		if a.Decision == DecisionApproved {
			n++
		}
	}
	return n
}

// mayApproveWhere is the SQL condition (on d, the deployment, and e, its environment) that user
// ? may decide on d: not its requester, not decided yet, an administrator or a member with the
// right to deploy to e. It takes the user id four times.
const mayApproveWhere = `(d.requested_by_id IS NULL OR d.requested_by_id <> ?)
	AND NOT EXISTS (SELECT 1 FROM deployment_approvals a WHERE a.deployment_id = d.id AND a.user_id = ?)
	AND (EXISTS (SELECT 1 FROM users u WHERE u.id = ? AND u.admin = TRUE)
		OR EXISTS (SELECT 1 FROM project_members m WHERE m.project_id = d.project_id AND m.user_id = ?
			AND (m.production = TRUE OR e.protected = FALSE)))`

// ListApprovals returns the deployments, across projects, that await the approval of user
// userID and that the user may decide on, oldest first.
func (db *DB) ListApprovals(ctx context.Context, userID int64) ([]*Deployment, error) {
	var rows []*deploymentRow
	err := db.db.SelectContext(ctx, &rows, db.q(`SELECT `+deploymentColumns+deploymentFrom+` WHERE d.status = ? AND `+mayApproveWhere+`
		ORDER BY d.id LIMIT 500`), DeploymentAwaitingApproval, userID, userID, userID, userID)
	if err != nil {
		return nil, fmt.Errorf("list approvals: %w", err)
	}
	out := make([]*Deployment, 0, len(rows))
	for _, r := range rows {
		d, err := r.open()
		if err != nil {
			return nil, err
		}
		if err := db.loadApprovals(ctx, db.db, d); err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

// ApproverEmails returns the mail addresses of the people who may still decide on deployment
// id (see ListApprovers), sorted by name; ENOTFOUND for no such deployment.
func (db *DB) ApproverEmails(ctx context.Context, id int64) ([]string, error) {
	d, err := db.GetDeployment(ctx, id)
	if err != nil {
		return nil, err
	}
	var requester int64
	if d.RequestedByID != nil {
		requester = *d.RequestedByID
	}
	users, err := db.ListApprovers(ctx, d.EnvironmentID, d.ID, requester)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, u := range users {
		if u.Email != "" {
			out = append(out, u.Email)
		}
	}
	return out, nil
}

// ListApprovers returns the people who may approve deployments to an environment, by name:
// administrators and members with the right to deploy there, except exceptUserID (the
// requester; 0 for none). For a deployment (deploymentID not 0), people who decided on it
// already are left out too.
func (db *DB) ListApprovers(ctx context.Context, envID, deploymentID, exceptUserID int64) ([]*User, error) {
	users := []*User{}
	err := db.db.SelectContext(ctx, &users, db.q(`SELECT `+userColumns+` FROM users WHERE id <> ?
		AND id NOT IN (SELECT user_id FROM deployment_approvals WHERE deployment_id = ?)
		AND (admin = TRUE OR id IN (SELECT m.user_id FROM project_members m JOIN environments e ON e.project_id = m.project_id
			WHERE e.id = ? AND (m.production = TRUE OR e.protected = FALSE)))
		ORDER BY name`), exceptUserID, deploymentID, envID)
	if err != nil {
		return nil, fmt.Errorf("list approvers: %w", err)
	}
	for _, u := range users {
		u.PasswordHash = ""
	}
	return users, nil
}
