package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"
)

// This file holds how a run runs and ends: claim, lease, step and host updates, pause,
// finish, cancel, continue, retry and the reaping of runs whose worker died. Every write of a
// worker names its lease token and is refused with ECONFLICT once the lease was lost.

// ClaimJobRun takes the oldest queued run under owner's lease, or returns nil when there is none.
func (db *DB) ClaimJobRun(ctx context.Context, owner string, ttl time.Duration) (*JobRun, error) {
	id, err := db.claim(ctx, runQueue(), owner, ttl, func(*sqlx.Tx, int64, int) error { return nil })
	if err != nil || id == 0 {
		return nil, err
	}
	return db.GetJobRun(ctx, id)
}

// RenewJobRun extends owner's lease and reports whether a cancel was asked for; ECONFLICT when
// owner no longer holds it.
func (db *DB) RenewJobRun(ctx context.Context, id int64, owner string, ttl time.Duration) (cancel bool, err error) {
	return db.renew(ctx, runQueue(), id, owner, ttl)
}

// StartRunStep marks step position of a run running and its unfinished hosts waiting.
func (db *DB) StartRunStep(ctx context.Context, runID int64, owner string, position int) error {
	return db.Transact(ctx, func(tx *sqlx.Tx) error {
		if _, err := db.holdLease(ctx, tx, runQueue(), runID, owner); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, db.q(`UPDATE job_run_steps SET status = ?, error = '', started_at = ?, finished_at = NULL
			WHERE run_id = ? AND position = ?`), StepRunning, db.now(), runID, position); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, db.q(`UPDATE job_run_hosts SET status = ?, error = '', exit_code = NULL, started_at = NULL, finished_at = NULL
			WHERE run_id = ? AND position = ? AND status <> ?`), HostWaiting, runID, position, HostSucceeded)
		return err
	})
}

// RunHostUpdate changes one host of a step; nil fields stay.
type RunHostUpdate struct {
	Status   string
	ExitCode *int
	Error    string
	Started  bool
	Finished bool
}

// UpdateRunHost records how a host of a step is doing. ECONFLICT when owner lost the lease.
func (db *DB) UpdateRunHost(ctx context.Context, runID int64, owner string, position int, hostID int64, u RunHostUpdate) error {
	if !hostStepStatuses[u.Status] {
		return Errorf(EINVALID, "status: %q is not a host status", u.Status)
	}
	return db.Transact(ctx, func(tx *sqlx.Tx) error {
		if _, err := db.holdLease(ctx, tx, runQueue(), runID, owner); err != nil {
			return err
		}
		set, args := `status = ?, error = ?, exit_code = ?`, []any{u.Status, truncate(u.Error, 4000), u.ExitCode}
		if u.Started {
			set += `, started_at = ?`
			args = append(args, db.now())
		}
		if u.Finished {
			set += `, finished_at = ?`
			args = append(args, db.now())
		}
		args = append(args, runID, position, hostID)
		_, err := tx.ExecContext(ctx, db.q(`UPDATE job_run_hosts SET `+set+` WHERE run_id = ? AND position = ? AND host_id = ?`), args...)
		return err
	})
}

// FinishRunStep ends step position with status (a StepX) and moves the run's next step past it,
// so a worker taking the run over does not run it again.
func (db *DB) FinishRunStep(ctx context.Context, runID int64, owner string, position int, status, errText string) error {
	return db.Transact(ctx, func(tx *sqlx.Tx) error {
		if _, err := db.holdLease(ctx, tx, runQueue(), runID, owner); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, db.q(`UPDATE job_run_steps SET status = ?, error = ?, finished_at = ? WHERE run_id = ? AND position = ?`),
			status, truncate(errText, 4000), db.now(), runID, position); err != nil {
			return err
		}
		// Hosts a stopped step never started are skipped.
		if _, err := tx.ExecContext(ctx, db.q(`UPDATE job_run_hosts SET status = ? WHERE run_id = ? AND position = ? AND status = ?`),
			HostSkipped, runID, position, HostWaiting); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, db.q(`UPDATE job_runs SET next_step = ? WHERE id = ?`), position, runID)
		return err
	})
}

// PauseJobRun stops a run at its pause step position: the step waits for Continue (or a
// cancel), the run is waiting and no worker holds it.
func (db *DB) PauseJobRun(ctx context.Context, runID int64, owner string, position int) error {
	return db.Transact(ctx, func(tx *sqlx.Tx) error {
		if _, err := db.holdLease(ctx, tx, runQueue(), runID, owner); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, db.q(`UPDATE job_run_steps SET status = ?, started_at = ? WHERE run_id = ? AND position = ?`),
			StepPaused, db.now(), runID, position); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, db.q(`UPDATE job_runs SET status = ?, next_step = ?, lease_owner = '', lease_until = NULL WHERE id = ?`),
			RunWaiting, position-1, runID)
		return err
	})
}

// FinishJobRun ends a run held by owner with status success, failed or canceled; steps and
// hosts not finished end as skipped (canceled when the run was).
func (db *DB) FinishJobRun(ctx context.Context, id int64, owner, status, errText string) (*JobRun, error) {
	if status != RunSuccess && status != RunFailed && status != RunCanceled {
		return nil, Errorf(EINVALID, "status: %q is not how a run ends", status)
	}
	err := db.Transact(ctx, func(tx *sqlx.Tx) error {
		if _, err := db.holdLease(ctx, tx, runQueue(), id, owner); err != nil {
			return err
		}
		return db.endJobRun(ctx, tx, id, status, errText)
	})
	if err != nil {
		return nil, err
	}
	return db.GetJobRun(ctx, id)
}

func (db *DB) endJobRun(ctx context.Context, tx *sqlx.Tx, id int64, status, errText string) error {
	now := db.now()
	if _, err := tx.ExecContext(ctx, db.q(`UPDATE job_runs SET status = ?, error = ?, finished_at = ?, lease_owner = '', lease_until = NULL
		WHERE id = ?`), status, truncate(errText, 4000), now, id); err != nil {
		return err
	}
	left, running := StepSkipped, StepCanceled
	if status == RunCanceled {
		left = StepCanceled
	}
	for _, st := range []struct{ from, to string }{{StepWaiting, left}, {StepPaused, left}, {StepRunning, running}} {
		if _, err := tx.ExecContext(ctx, db.q(`UPDATE job_run_steps SET status = ?, finished_at = ? WHERE run_id = ? AND status = ?`),
			st.to, now, id, st.from); err != nil {
			return err
		}
	}
	hostLeft := HostSkipped
	if status == RunCanceled {
		hostLeft = HostCanceled
	}
	if _, err := tx.ExecContext(ctx, db.q(`UPDATE job_run_hosts SET status = ? WHERE run_id = ? AND status = ?`), hostLeft, id, HostWaiting); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, db.q(`UPDATE job_run_hosts SET status = ?, finished_at = ? WHERE run_id = ? AND status = ?`),
		HostCanceled, now, id, HostRunning)
	return err
}

// CancelJobRun ends a queued or waiting run at once, or asks a running one to stop (its worker
// ends it). ECONFLICT for a run that has ended. Audited.
func (db *DB) CancelJobRun(ctx context.Context, id int64) (*JobRun, error) {
	return db.changeRun(ctx, id, "run.cancel", func(tx *sqlx.Tx, r *JobRun) error {
		switch r.Status {
		case RunQueued, RunWaiting, RunAwaitingApproval:
			if err := db.endJobRun(ctx, tx, id, RunCanceled, "canceled by "+ActorFrom(ctx).Name); err != nil {
				return err
			}
			return db.addLogLine(ctx, tx, JobRunLog, id, "", "canceled by "+ActorFrom(ctx).Name)
		case RunRunning:
			_, err := tx.ExecContext(ctx, db.q(`UPDATE job_runs SET cancel_requested = TRUE WHERE id = ?`), id)
			return err
		}
		return Errorf(ECONFLICT, "run %d has already ended (%s)", id, r.Status)
	})
}

// ContinueJobRun lets a run waiting at a pause step go on: the pause step succeeds and the run
// is queued for the steps after it. ECONFLICT when it is not waiting. Audited.
func (db *DB) ContinueJobRun(ctx context.Context, id int64) (*JobRun, error) {
	return db.changeRun(ctx, id, "run.continue", func(tx *sqlx.Tx, r *JobRun) error {
		if r.Status != RunWaiting {
			return Errorf(ECONFLICT, "run %d is not waiting at a pause (it is %s)", id, r.Status)
		}
		pos := r.NextStep + 1
		if _, err := tx.ExecContext(ctx, db.q(`UPDATE job_run_steps SET status = ?, finished_at = ? WHERE run_id = ? AND position = ?`),
			StepSucceeded, db.now(), id, pos); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, db.q(`UPDATE job_runs SET status = ?, next_step = ? WHERE id = ? AND status = ?`), RunQueued, pos, id, RunWaiting)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return Errorf(ECONFLICT, "run %d changed meanwhile; look again", id)
		}
		return db.addLogLine(ctx, tx, JobRunLog, id, RunLogHost(pos, ""), "continued by "+ActorFrom(ctx).Name)
	})
}

// RetryJobRun queues a failed run again from its first failed step, on the hosts of that step
// (and of the steps after it) that did not succeed; hosts that succeeded are not run again. A
// run that needed approvals awaits them again. EINVALID for a run that did not fail. Audited.
func (db *DB) RetryJobRun(ctx context.Context, id int64) (*JobRun, error) {
	return db.changeRun(ctx, id, "run.retry", func(tx *sqlx.Tx, r *JobRun) error {
		if r.Status != RunFailed {
			return Errorf(EINVALID, "run %d did not fail (it is %s); only a failed run is retried", id, r.Status)
		}
		from := 0
		for _, s := range r.Steps {
			if s.Status == StepFailed || s.Status == StepCanceled || (s.Status == StepSkipped && from == 0) {
				from = s.Position
				break
			}
		}
		if from == 0 {
			return Errorf(EINVALID, "run %d has no failed step to retry", id)
		}
		if _, err := tx.ExecContext(ctx, db.q(`UPDATE job_run_steps SET status = ?, error = '', started_at = NULL, finished_at = NULL
			WHERE run_id = ? AND position >= ?`), StepWaiting, id, from); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, db.q(`UPDATE job_run_hosts SET status = ?, error = '', exit_code = NULL, started_at = NULL,
			finished_at = NULL WHERE run_id = ? AND position >= ? AND status <> ?`), HostWaiting, id, from, HostSucceeded); err != nil {
			return err
		}
		// A run that needed approvals needs them again to run again.
		status := RunQueued
		if r.ApprovalsRequired > 0 {
			status = RunAwaitingApproval
			if _, err := tx.ExecContext(ctx, db.q(`DELETE FROM job_run_approvals WHERE run_id = ?`), id); err != nil {
				return err
			}
			if err := db.awaitRunApproval(ctx, tx, r.ProjectID, id); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, db.q(`UPDATE job_runs SET status = ?, next_step = ?, error = '', finished_at = NULL,
			attempts = 0, cancel_requested = FALSE WHERE id = ?`), status, from-1, id); err != nil {
			return err
		}
		return db.addLogLine(ctx, tx, JobRunLog, id, "", fmt.Sprintf("retried from step %d by %s", from, ActorFrom(ctx).Name))
	})
}

// changeRun runs change on run id in a transaction, audits it and returns the run as it is now.
func (db *DB) changeRun(ctx context.Context, id int64, action string, change func(tx *sqlx.Tx, r *JobRun) error) (*JobRun, error) {
	err := db.Transact(ctx, func(tx *sqlx.Tx) error {
		r, err := db.getJobRun(ctx, tx, id)
		if err != nil {
			return err
		}
		if err := change(tx, r); err != nil {
			return err
		}
		if !hasActor(ctx) {
			return nil
		}
		return db.audit(ctx, tx, action, fmt.Sprintf("project/%s/job/%s", r.Project, r.Job), fmt.Sprintf("run %d, was %s", id, r.Status))
	})
	if err != nil {
		return nil, err
	}
	return db.GetJobRun(ctx, id)
}

// ReapJobRuns ends or requeues the runs whose worker died (as ReapDeployments does): a
// requeued run's running step and hosts go back to waiting and run again from that step.
func (db *DB) ReapJobRuns(ctx context.Context, maxAttempts int) (requeued, failed int, err error) {
	return db.reap(ctx, runQueue(), maxAttempts, db.jobRunHandedBack(ctx, WorkerLost))
}

// ReleaseJobRun hands a running run that lease still holds back to the queue (a process
// stopping cleanly calls it): its running step and hosts wait again and run again from that
// step; with a cancel asked for it ends canceled. nil when lease no longer holds it (it
// finished, or waits at a pause).
func (db *DB) ReleaseJobRun(ctx context.Context, id int64, lease string) error {
	return db.release(ctx, runQueue(), id, lease, db.jobRunHandedBack(ctx, "the ferry process running it stopped"))
}

// jobRunHandedBack updates the steps and hosts of a run reaped or released.
func (db *DB) jobRunHandedBack(ctx context.Context, why string) func(tx *sqlx.Tx, j reapedJob, outcome string) error {
	return func(tx *sqlx.Tx, j reapedJob, outcome string) error {
		switch outcome {
		case reapRequeued:
			if _, err := tx.ExecContext(ctx, db.q(`UPDATE job_run_steps SET status = ? WHERE run_id = ? AND status = ?`),
				StepWaiting, j.ID, StepRunning); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, db.q(`UPDATE job_run_hosts SET status = ?, started_at = NULL WHERE run_id = ? AND status = ?`),
				HostWaiting, j.ID, HostRunning)
			return err
		case reapCanceled:
			return db.endJobRun(ctx, tx, j.ID, RunCanceled, "canceled: "+why)
		default:
			return db.endJobRun(ctx, tx, j.ID, RunFailed, why)
		}
	}
}
