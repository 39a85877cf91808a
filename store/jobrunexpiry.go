package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"
)

// Runs awaiting approval are announced to the people who may approve them and end, as
// deployments do, when nobody approved them within the approval expiry (FERRY_APPROVAL_EXPIRY).

// Outbox events of job runs: a run waits for approval (mailed to its approvers), or was
// rejected — by a person, or because nobody approved it in time.
const (
	OutboxRunAwaitingApproval = "run.awaiting_approval"
	OutboxRunRejected         = "run.rejected"
)

// awaitRunApproval starts the approval wait of run id (just created or retried): it expires
// after the approval expiry, and its approvers are told.
func (db *DB) awaitRunApproval(ctx context.Context, tx *sqlx.Tx, projectID, id int64) error {
	expires := db.now().Add(db.approvalExpiry())
	if _, err := tx.ExecContext(ctx, db.q(`UPDATE job_runs SET approval_expires_at = ? WHERE id = ?`), expires, id); err != nil {
		return fmt.Errorf("run %d approval expiry: %w", id, err)
	}
	return db.addOutbox(ctx, tx, OutboxRunAwaitingApproval, projectID, JobRunLog, id)
}

// expireRunApprovals ends runs still awaiting approval at their expiry as canceled, saying
// why, with run.rejected in the outbox. Each run moves once, with several processes too.
func (db *DB) expireRunApprovals(ctx context.Context, now time.Time) (int, error) {
	var ids []int64
	if err := db.db.SelectContext(ctx, &ids, db.q(`SELECT id FROM job_runs WHERE status = ? AND approval_expires_at <= ? ORDER BY id`),
		RunAwaitingApproval, now); err != nil {
		return 0, fmt.Errorf("list runs whose approval expired: %w", err)
	}
	n := 0
	for _, id := range ids {
		err := db.Transact(ctx, func(tx *sqlx.Tx) error {
			r, err := db.getJobRun(ctx, tx, id)
			if err != nil || r.Status != RunAwaitingApproval || r.ApprovalExpiresAt == nil {
				return err
			}
			approved := 0
			for _, a := range r.Approvals {
				if a.Decision == "approved" {
					approved++
				}
			}
			reason := fmt.Sprintf("expired: only %d of %d approvals when the time to approve ran out at %s",
				approved, r.ApprovalsRequired, r.ApprovalExpiresAt.Format(time.RFC3339))
			res, err := tx.ExecContext(ctx, db.q(`UPDATE job_runs SET status = ? WHERE id = ? AND status = ?`), RunCanceled, id, RunAwaitingApproval)
			if k, err := affected(res, err); k != 1 {
				return err
			}
			if err := db.endJobRun(ctx, tx, id, RunCanceled, reason); err != nil {
				return err
			}
			if err := db.addLogLine(ctx, tx, JobRunLog, id, "", reason); err != nil {
				return err
			}
			n++
			if err := db.addOutbox(ctx, tx, OutboxRunRejected, r.ProjectID, JobRunLog, id); err != nil {
				return err
			}
			return db.audit(ctx, tx, "run.expire", fmt.Sprintf("project/%d/run/%d", r.ProjectID, id), reason)
		})
		if err != nil {
			return n, fmt.Errorf("expire run %d: %w", id, err)
		}
	}
	return n, nil
}

// RunApproverEmails returns the mail addresses of the people who may still decide on run id:
// administrators and members with the right to run it where it goes, except the person it
// acts for and those who decided already; sorted by name. ENOTFOUND for no such run.
func (db *DB) RunApproverEmails(ctx context.Context, id int64) ([]string, error) {
	var out []string
	err := db.Transact(ctx, func(tx *sqlx.Tx) error {
		r, err := db.getJobRun(ctx, tx, id)
		if err != nil {
			return err
		}
		var requester int64
		if r.RequestedByID != nil {
			requester = *r.RequestedByID
		}
		var users []struct {
			ID    int64  `db:"id"`
			Email string `db:"email"`
		}
		if err := tx.SelectContext(ctx, &users, db.q(`SELECT id, email FROM users WHERE id <> ? AND email <> ''
			AND id NOT IN (SELECT user_id FROM job_run_approvals WHERE run_id = ?)
			AND (admin = TRUE OR id IN (SELECT user_id FROM project_members WHERE project_id = ?))
			ORDER BY name`), requester, id, r.ProjectID); err != nil {
			return fmt.Errorf("list the approvers of run %d: %w", id, err)
		}
		for _, u := range users {
			err := db.mayChangeRun(ctx, tx, id, u.ID)
			if err == nil {
				out = append(out, u.Email)
			} else if ErrorCode(err) != EFORBIDDEN {
				return err
			}
		}
		return nil
	})
	return out, err
}
