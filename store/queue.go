package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"
)

// The builds and deployments tables are the job queue. A worker claims the oldest waiting job
// whose lock group (the project for builds, the environment for deployments) has no running job,
// and holds it under a lease: lease_owner names the worker, lease_until says until when. The
// worker renews the lease while it works; a job whose lease ran out is reaped: requeued while it
// has attempts left, failed with WorkerLost after that. A partial unique index on each table
// (builds_one_running, deployments_one_running) backs the one-running-per-group rule.

// WorkerLost is the error of a job whose worker stopped before it ended the job.
const WorkerLost = "worker lost: the ferry process running it stopped and its lease ran out"

// jobQueue describes one table that is a job queue.
type jobQueue struct {
	kind    string // JobBuild or JobDeployment, also the noun in messages
	table   string
	group   string // one running job per value of this column
	waiting string // the status of a job waiting to be claimed
}

func buildQueue() jobQueue { return jobQueue{JobBuild, "builds", "project_id", BuildPending} }

func deploymentQueue() jobQueue {
	return jobQueue{JobDeployment, "deployments", "environment_id", DeploymentQueued}
}

// claimTries is how often a claim that lost a race is retried before reporting nothing to claim.
const claimTries = 3

// claim takes the oldest claimable job of q under owner's lease and returns its id, or 0 when
// there is none. then runs in the claiming transaction with the job's id and attempt count.
func (db *DB) claim(ctx context.Context, q jobQueue, owner string, ttl time.Duration, then func(tx *sqlx.Tx, id int64, attempts int) error) (int64, error) {
	if owner == "" || ttl <= 0 {
		return 0, Errorf(EINVALID, "claim %s: a worker name and a positive lease time are required", q.kind)
	}
	for try := 0; try < claimTries; try++ {
		var id int64
		err := db.Transact(ctx, func(tx *sqlx.Tx) error {
			var attempts int
			var err error
			id, attempts, err = db.claimIn(ctx, tx, q, owner, ttl)
			if err != nil || id == 0 {
				return err
			}
			return then(tx, id, attempts)
		})
		if isUniqueViolation(err) {
			// Another worker started a job of the same group between our read and our write.
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("claim %s: %w", q.kind, err)
		}
		return id, nil
	}
	return 0, nil
}

func (db *DB) claimIn(ctx context.Context, tx *sqlx.Tx, q jobQueue, owner string, ttl time.Duration) (id int64, attempts int, err error) {
	// Index probes on (group, status, id) for both NOT EXISTS; the scan in id order stops at the
	// first job that is the oldest waiting one of a group with nothing running.
	query := fmt.Sprintf(`SELECT j.id FROM %[1]s j WHERE j.status = ?
		AND NOT EXISTS (SELECT 1 FROM %[1]s o WHERE o.%[2]s = j.%[2]s AND o.status = ? AND o.id < j.id)
		AND NOT EXISTS (SELECT 1 FROM %[1]s r WHERE r.%[2]s = j.%[2]s AND r.status = 'running')
		ORDER BY j.id LIMIT 1`, q.table, q.group)
	if db.dialect == Postgres {
		// Only the oldest waiting job of a group is a candidate, so a locked one makes the
		// claimer skip its whole group: jobs of one group start in queue order.
		query += ` FOR UPDATE OF j SKIP LOCKED`
	}
	err = tx.GetContext(ctx, &id, db.q(query), q.waiting, q.waiting)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, err
	}
	now, err := db.clock(ctx, tx) // the database's clock is the only one leases are read by
	if err != nil {
		return 0, 0, err
	}
	err = tx.GetContext(ctx, &attempts, db.q(`UPDATE `+q.table+` SET status = 'running', lease_owner = ?, lease_until = ?,
		started_at = ?, attempts = attempts + 1 WHERE id = ? AND status = ? RETURNING attempts`),
		owner, now.Add(ttl), now, id, q.waiting)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, 0, nil
	}
	return id, attempts, err
}

// renew extends owner's lease on a running job and reports whether a cancel was asked for.
func (db *DB) renew(ctx context.Context, q jobQueue, id int64, owner string, ttl time.Duration) (bool, error) {
	var cancel bool
	now, err := db.clock(ctx, db.db)
	if err != nil {
		return false, err
	}
	err = db.db.GetContext(ctx, &cancel, db.q(`UPDATE `+q.table+` SET lease_until = ?
		WHERE id = ? AND status = 'running' AND lease_owner = ? RETURNING cancel_requested`), now.Add(ttl), id, owner)
	if errors.Is(err, sql.ErrNoRows) {
		return false, db.lostLease(ctx, db.db, q, id, owner)
	}
	return cancel, err
}

// holdLease checks, inside tx, that owner still holds the running job, and locks its row on
// PostgreSQL. It returns the job's project id.
func (db *DB) holdLease(ctx context.Context, tx *sqlx.Tx, q jobQueue, id int64, owner string) (projectID int64, err error) {
	query := `SELECT project_id FROM ` + q.table + ` WHERE id = ? AND status = 'running' AND lease_owner = ?`
	if db.dialect == Postgres {
		query += ` FOR UPDATE`
	}
	err = tx.GetContext(ctx, &projectID, db.q(query), id, owner)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, db.lostLease(ctx, tx, q, id, owner)
	}
	return projectID, err
}

// lostLease says why owner does not hold job id: it does not exist, it ended, or another
// claim holds it.
func (db *DB) lostLease(ctx context.Context, qr queryer, q jobQueue, id int64, owner string) error {
	if err := db.leaseHeld(ctx, qr, q, id, owner); err != nil {
		return err
	}
	// Held after all: the write that missed it raced with nothing we know of.
	return Errorf(ECONFLICT, "%s %d: worker %s could not write it; try again", q.kind, id, owner)
}

// reapedJob is a running job whose lease ran out.
type reapedJob struct {
	ID        int64 `db:"id"`
	ProjectID int64 `db:"project_id"`
	Attempts  int   `db:"attempts"`
	Cancel    bool  `db:"cancel_requested"`
}

// Outcomes of reaping one job.
const (
	reapRequeued = "requeued"
	reapFailed   = "failed"
	reapCanceled = "canceled" // a cancel was asked for before the worker died
)

// reap ends or requeues the running jobs of q whose lease ran out, in one transaction. A job
// goes back to waiting (lease and started_at cleared; attempts kept) while attempts <
// maxAttempts; otherwise it fails with WorkerLost, or ends canceled when a cancel had been asked
// for. Each gets a log line saying what happened; then runs for each in the same transaction.
func (db *DB) reap(ctx context.Context, q jobQueue, maxAttempts int, then func(tx *sqlx.Tx, j reapedJob, outcome string) error) (requeued, failed int, err error) {
	err = db.Transact(ctx, func(tx *sqlx.Tx) error {
		requeued, failed = 0, 0
		query := `SELECT id, project_id, attempts, cancel_requested FROM ` + q.table +
			` WHERE status = 'running' AND lease_until < ? ORDER BY id`
		if db.dialect == Postgres {
			query += ` FOR UPDATE SKIP LOCKED`
		}
		var jobs []reapedJob
		now, err := db.clock(ctx, tx)
		if err != nil {
			return err
		}
		if err := tx.SelectContext(ctx, &jobs, db.q(query), now); err != nil {
			return err
		}
		for _, j := range jobs {
			outcome, err := db.reapOne(ctx, tx, q, j, maxAttempts, now)
			if err != nil {
				return err
			}
			if outcome == reapRequeued {
				requeued++
			} else {
				failed++
			}
			if err := then(tx, j, outcome); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("reap %ss: %w", q.kind, err)
	}
	return requeued, failed, nil
}

func (db *DB) reapOne(ctx context.Context, tx *sqlx.Tx, q jobQueue, j reapedJob, maxAttempts int, now time.Time) (string, error) {
	var err error
	var outcome, text string
	switch {
	case j.Cancel:
		outcome, text = reapCanceled, "canceled: "+WorkerLost
		_, err = tx.ExecContext(ctx, db.q(`UPDATE `+q.table+` SET status = 'canceled', error = ?, finished_at = ?,
			lease_owner = '', lease_until = NULL WHERE id = ?`), text, now, j.ID)
	case j.Attempts < maxAttempts:
		outcome = reapRequeued
		text = fmt.Sprintf("%s; queued again (attempt %d of %d)", WorkerLost, j.Attempts, maxAttempts)
		_, err = tx.ExecContext(ctx, db.q(`UPDATE `+q.table+` SET status = ?, started_at = NULL,
			lease_owner = '', lease_until = NULL WHERE id = ?`), q.waiting, j.ID)
	default:
		outcome, text = reapFailed, WorkerLost
		_, err = tx.ExecContext(ctx, db.q(`UPDATE `+q.table+` SET status = 'failed', error = ?, finished_at = ?,
			lease_owner = '', lease_until = NULL WHERE id = ?`), WorkerLost, now, j.ID)
	}
	if err != nil {
		return "", err
	}
	return outcome, db.addLogLine(ctx, tx, q.kind, j.ID, "", text)
}

// Released is the log line of a job handed back to the queue by a process that stopped cleanly.
const Released = "handed over: the ferry process running it is stopping; another worker takes it over now"

// release hands job id of q back to the queue, in one transaction, when owner still holds it:
// it waits again for a claim (lease and started_at cleared, attempts kept), or ends canceled
// when a cancel had been asked for. A job owner no longer holds is left alone. then runs in
// the same transaction, as for reap.
func (db *DB) release(ctx context.Context, q jobQueue, id int64, owner string, then func(tx *sqlx.Tx, j reapedJob, outcome string) error) error {
	err := db.Transact(ctx, func(tx *sqlx.Tx) error {
		query := `SELECT id, project_id, attempts, cancel_requested FROM ` + q.table +
			` WHERE id = ? AND status = 'running' AND lease_owner = ?`
		if db.dialect == Postgres {
			query += ` FOR UPDATE`
		}
		var j reapedJob
		if err := tx.GetContext(ctx, &j, db.q(query), id, owner); err != nil {
			return ignoreNoRows(err)
		}
		now, err := db.clock(ctx, tx)
		if err != nil {
			return err
		}
		outcome, text := reapRequeued, Released
		if j.Cancel {
			outcome, text = reapCanceled, "canceled: the ferry process running it stopped"
			_, err = tx.ExecContext(ctx, db.q(`UPDATE `+q.table+` SET status = 'canceled', error = ?, finished_at = ?,
				lease_owner = '', lease_until = NULL WHERE id = ?`), text, now, id)
		} else {
			_, err = tx.ExecContext(ctx, db.q(`UPDATE `+q.table+` SET status = ?, started_at = NULL,
				lease_owner = '', lease_until = NULL WHERE id = ?`), q.waiting, id)
		}
		if err != nil {
			return err
		}
		if err := db.addLogLine(ctx, tx, q.kind, id, "", text); err != nil {
			return err
		}
		return then(tx, j, outcome)
	})
	if err != nil {
		return fmt.Errorf("release %s %d: %w", q.kind, id, err)
	}
	return nil
}

// addLogLine appends one line from ferry itself to a job's log, after its last line.
func (db *DB) addLogLine(ctx context.Context, tx *sqlx.Tx, kind string, jobID int64, host, text string) error {
	_, err := tx.ExecContext(ctx, db.q(`INSERT INTO log_lines (job_kind, job_id, seq, at, stream, host, text)
		VALUES (?, ?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM log_lines WHERE job_kind = ? AND job_id = ?), ?, 'ferry', ?, ?)`),
		kind, jobID, kind, jobID, db.now(), host, text)
	if err != nil {
		return fmt.Errorf("write %s %d log: %w", kind, jobID, err)
	}
	return nil
}

// addOutbox records, inside the transaction of the change, that event happened to a job.
func (db *DB) addOutbox(ctx context.Context, tx *sqlx.Tx, event string, projectID int64, kind string, jobID int64) error {
	_, err := tx.ExecContext(ctx, db.q(`INSERT INTO outbox (event, project_id, job_kind, job_id, created_at) VALUES (?, ?, ?, ?, ?)`),
		event, projectID, kind, jobID, db.now())
	if err != nil {
		return fmt.Errorf("write outbox %s: %w", event, err)
	}
	return nil
}

// hasActor reports whether a person (or token) made the request behind ctx; changes made by
// ferry's own workers are not audited.
func hasActor(ctx context.Context) bool {
	_, ok := ctx.Value(actorKey{}).(Actor)
	return ok
}

// utc returns t in UTC, for times read back from either database.
func utc(t *time.Time) {
	if t != nil {
		*t = t.UTC()
	}
}
