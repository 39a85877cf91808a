package store

import (
	"context"
	"fmt"
	"strings"

	"github.com/jmoiron/sqlx"
)

// Change control of job runs: a run reaching an environment that needs approvals starts as
// awaiting_approval and is queued once enough people other than the one it acts for approved
// it; one rejection ends it (canceled, saying who rejected it and why).

// DecideJobRun records user's decision (approve or not) on a run awaiting approval, with an
// optional comment, and queues the run once enough people approved it, or ends it at the first
// rejection. EFORBIDDEN for the person the run acts for, or one without the right to run it
// there; ECONFLICT when it does not await approval or user decided already. Audited.
func (db *DB) DecideJobRun(ctx context.Context, id, userID int64, approve bool, comment string) (*JobRun, error) {
	comment = truncate(strings.TrimSpace(comment), 1000)
	action := "run.reject"
	if approve {
		action = "run.approve"
	}
	return db.changeRun(ctx, id, action, func(tx *sqlx.Tx, r *JobRun) error {
		if r.Status != RunAwaitingApproval {
			return Errorf(ECONFLICT, "run %d does not await approval (it is %s)", id, r.Status)
		}
		if r.RequestedByID != nil && *r.RequestedByID == userID {
			return Errorf(EFORBIDDEN, "the run acts for you: someone else must approve or reject it")
		}
		if err := db.mayChangeRun(ctx, tx, id, userID); err != nil {
			return err
		}
		for _, a := range r.Approvals {
			if a.UserID == userID {
				return Errorf(ECONFLICT, "you %s run %d already", a.Decision, id)
			}
		}
		return db.recordRunDecision(ctx, tx, r, userID, approve, comment)
	})
}

func (db *DB) recordRunDecision(ctx context.Context, tx *sqlx.Tx, r *JobRun, userID int64, approve bool, comment string) error {
	var name string
	if err := tx.GetContext(ctx, &name, db.q(`SELECT name FROM users WHERE id = ?`), userID); err != nil {
		return formatError(err, "user")
	}
	decision := "rejected"
	if approve {
		decision = "approved"
	}
	_, err := tx.ExecContext(ctx, db.q(`INSERT INTO job_run_approvals (run_id, user_id, user_name, decision, comment, at)
		VALUES (?, ?, ?, ?, ?, ?)`), r.ID, userID, name, decision, comment, db.now())
	if isUniqueViolation(err) {
		return Errorf(ECONFLICT, "you decided on run %d already", r.ID)
	}
	if err != nil {
		return err
	}
	line := fmt.Sprintf("%s by %s", decision, name)
	if comment != "" {
		line += ": " + comment
	}
	if !approve {
		if err := db.endJobRun(ctx, tx, r.ID, RunCanceled, line); err != nil {
			return err
		}
		if err := db.addOutbox(ctx, tx, OutboxRunRejected, r.ProjectID, JobRunLog, r.ID); err != nil {
			return err
		}
		return db.addLogLine(ctx, tx, JobRunLog, r.ID, "", line)
	}
	approved := 1
	for _, a := range r.Approvals {
		if a.Decision == "approved" {
			approved++
		}
	}
	line += fmt.Sprintf(" (%d of %d)", approved, r.ApprovalsRequired)
	if approved >= r.ApprovalsRequired {
		if _, err := tx.ExecContext(ctx, db.q(`UPDATE job_runs SET status = ? WHERE id = ? AND status = ?`), RunQueued, r.ID, RunAwaitingApproval); err != nil {
			return err
		}
		line += ": queued"
	}
	return db.addLogLine(ctx, tx, JobRunLog, r.ID, "", line)
}
