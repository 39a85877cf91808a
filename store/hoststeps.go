package store

import (
	"context"
	"fmt"
	"strings"

	"github.com/jmoiron/sqlx"
)

// This file holds how a deployment runs and ends: host step updates, finish, cancel, retry
// and the reaping of deployments whose worker died.

var hostStepStatuses = map[string]bool{HostWaiting: true, HostRunning: true, HostSucceeded: true, HostFailed: true, HostCanceled: true, HostSkipped: true}

// UpdateHostStep changes one host step of a running deployment whose lease owner holds (the
// token its claim used). EINVALID for an unknown status, ENOTFOUND when the deployment has no
// step for the host, ECONFLICT when it is not running or owner's lease on it was lost.
func (db *DB) UpdateHostStep(ctx context.Context, deploymentID, hostID int64, owner string, u HostStepUpdate) error {
	if u.Status != nil && !hostStepStatuses[*u.Status] {
		return Errorf(EINVALID, "status: %q is not a host step status", *u.Status)
	}
	set, args := hostStepSet(u, db.now())
	if len(set) == 0 {
		return nil
	}
	args = append(args, deploymentID, hostID, DeploymentRunning, owner)
	res, err := db.db.ExecContext(ctx, db.q(`UPDATE host_steps SET `+strings.Join(set, ", ")+`
		WHERE deployment_id = ? AND host_id = ? AND EXISTS (SELECT 1 FROM deployments d
			WHERE d.id = deployment_id AND d.status = ? AND d.lease_owner = ?)`), args...)
	if err != nil {
		return fmt.Errorf("update host step: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil || n > 0 {
		return err
	}
	if err := db.leaseHeld(ctx, db.db, deploymentQueue(), deploymentID, owner); err != nil {
		return err
	}
	return Errorf(ENOTFOUND, "deployment %d has no step for host %d", deploymentID, hostID)
}

func hostStepSet(u HostStepUpdate, now any) (set []string, args []any) {
	add := func(column string, v any) {
		set = append(set, column+" = ?")
		args = append(args, v)
	}
	if u.Status != nil {
		add("status", *u.Status)
	}
	if u.Step != nil {
		add("step", truncate(*u.Step, 200))
	}
	if u.BytesSent != nil {
		add("bytes_sent", *u.BytesSent)
	}
	if u.BytesTotal != nil {
		add("bytes_total", *u.BytesTotal)
	}
	if u.Error != nil {
		add("error", truncate(*u.Error, 4000))
	}
	if u.Started {
		add("started_at", now)
	}
	if u.Finished {
		add("finished_at", now)
	}
	return set, args
}

var deploymentOutbox = map[string]string{
	DeploymentSuccess:  OutboxDeploymentSucceeded,
	DeploymentFailed:   OutboxDeploymentFailed,
	DeploymentCanceled: OutboxDeploymentCanceled,
}

// FinishDeployment ends a running deployment held by owner with status success, failed or
// canceled, ends host steps still waiting (as skipped) or running (as canceled), clears the
// lease and writes the outbox entry, in one transaction. ECONFLICT when owner no longer holds
// the lease.
func (db *DB) FinishDeployment(ctx context.Context, id int64, owner, status, errText string) (*Deployment, error) {
	event, ok := deploymentOutbox[status]
	if !ok {
		return nil, Errorf(EINVALID, "status: %q is not how a deployment ends (success, failed or canceled)", status)
	}
	err := db.Transact(ctx, func(tx *sqlx.Tx) error {
		projectID, err := db.holdLease(ctx, tx, deploymentQueue(), id, owner)
		if err != nil {
			return err
		}
		if err := db.endDeployment(ctx, tx, id, status, errText, HostCanceled); err != nil {
			return err
		}
		return db.addOutbox(ctx, tx, event, projectID, JobDeployment, id)
	})
	if err != nil {
		return nil, err
	}
	return db.GetDeployment(ctx, id)
}

// endDeployment sets a deployment's end status and ends its unfinished host steps: waiting ones
// as skipped (canceled when the deployment was), running ones as running.
func (db *DB) endDeployment(ctx context.Context, tx *sqlx.Tx, id int64, status, errText, running string) error {
	_, err := tx.ExecContext(ctx, db.q(`UPDATE deployments SET status = ?, error = ?, finished_at = ?, lease_owner = '',
		lease_until = NULL WHERE id = ?`), status, truncate(errText, 4000), db.now(), id)
	if err != nil {
		return err
	}
	waiting := HostSkipped
	if status == DeploymentCanceled {
		waiting = HostCanceled
	}
	return db.endHostSteps(ctx, tx, id, waiting, running, "the deployment ended before this host finished")
}

// CancelDeployment cancels a queued deployment at once (deployment.canceled in the outbox) or
// asks a running one to stop (its worker ends it). ECONFLICT for one that has ended. Audited.
func (db *DB) CancelDeployment(ctx context.Context, id int64) (*Deployment, error) {
	err := db.Transact(ctx, func(tx *sqlx.Tx) error {
		d, err := db.getDeployment(ctx, tx, id)
		if err != nil {
			return err
		}
		switch d.Status {
		case DeploymentQueued, DeploymentAwaitingApproval, DeploymentScheduled:
			if err := db.endDeployment(ctx, tx, id, DeploymentCanceled, "", HostCanceled); err != nil {
				return err
			}
			err = db.addOutbox(ctx, tx, OutboxDeploymentCanceled, d.ProjectID, JobDeployment, id)
		case DeploymentRunning:
			_, err = tx.ExecContext(ctx, db.q(`UPDATE deployments SET cancel_requested = TRUE WHERE id = ?`), id)
		default:
			return Errorf(ECONFLICT, "deployment %d has already ended (%s)", id, d.Status)
		}
		if err != nil || !hasActor(ctx) {
			return err
		}
		return db.audit(ctx, tx, "deployment.cancel", envTarget(d.Project, d.Environment), fmt.Sprintf("deployment %d, was %s", id, d.Status))
	})
	if err != nil {
		return nil, err
	}
	return db.GetDeployment(ctx, id)
}

// RetryDeployment queues a new deployment of the same version, environment and strategy to the
// hosts that failed or did not finish (failed, canceled or skipped) in an ended deployment.
// EINVALID when the deployment has not ended or every host succeeded, or when the version was
// removed since. Audited.
func (db *DB) RetryDeployment(ctx context.Context, id int64, triggeredBy string) (*Deployment, error) {
	var newID int64
	err := db.Transact(ctx, func(tx *sqlx.Tx) error {
		d, err := db.getDeployment(ctx, tx, id)
		if err != nil {
			return err
		}
		if d.Status == DeploymentQueued || d.Status == DeploymentRunning || d.Status == DeploymentAwaitingApproval || d.Status == DeploymentScheduled {
			return Errorf(EINVALID, "deployment %d has not ended yet (%s); cancel it or wait", id, d.Status)
		}
		nd := NewDeployment{ProjectID: d.ProjectID, EnvironmentID: d.EnvironmentID, VersionID: d.VersionID,
			TriggeredBy: triggeredBy, BuildID: d.BuildID}
		if d.Strategy != (Strategy{}) {
			nd.Strategy = &d.Strategy
		}
		for _, h := range d.Hosts {
			if h.Status == HostFailed || h.Status == HostCanceled || h.Status == HostSkipped {
				nd.Hosts = append(nd.Hosts, h.HostID)
			}
		}
		if len(nd.Hosts) == 0 {
			return Errorf(EINVALID, "every host of deployment %d succeeded; there is nothing to retry", id)
		}
		created, err := db.createDeployment(ctx, tx, nd)
		if err != nil {
			return err
		}
		newID = created.ID
		return nil
	})
	if err != nil {
		return nil, err
	}
	return db.GetDeployment(ctx, newID)
}

// ReapDeployments does for deployments what ReapBuilds does for builds. A requeued deployment's
// running host steps go back to waiting; a failed one's waiting steps are skipped and running
// ones fail with WorkerLost, and deployment.failed (or .canceled) goes to the outbox.
func (db *DB) ReapDeployments(ctx context.Context, maxAttempts int) (requeued, failed int, err error) {
	return db.reap(ctx, deploymentQueue(), maxAttempts, db.deploymentEnded(ctx, WorkerLost))
}

// ReleaseDeployment hands a running deployment that lease still holds back to the queue, as
// ReleaseBuild does: its running host steps wait again (the next worker starts from what they
// recorded), or, with a cancel asked for, it ends canceled. nil when lease no longer holds it.
func (db *DB) ReleaseDeployment(ctx context.Context, id int64, lease string) error {
	return db.release(ctx, deploymentQueue(), id, lease, db.deploymentEnded(ctx, "the ferry process running it stopped"))
}

// deploymentEnded updates the host steps and the outbox of a deployment reaped or released.
func (db *DB) deploymentEnded(ctx context.Context, why string) func(tx *sqlx.Tx, j reapedJob, outcome string) error {
	return func(tx *sqlx.Tx, j reapedJob, outcome string) error {
		switch outcome {
		case reapRequeued:
			_, err := tx.ExecContext(ctx, db.q(`UPDATE host_steps SET status = ?, started_at = NULL WHERE deployment_id = ? AND status = ?`),
				HostWaiting, j.ID, HostRunning)
			return err
		case reapCanceled:
			if err := db.endHostSteps(ctx, tx, j.ID, HostCanceled, HostCanceled, "canceled: "+why); err != nil {
				return err
			}
			return db.addOutbox(ctx, tx, OutboxDeploymentCanceled, j.ProjectID, JobDeployment, j.ID)
		default:
			if err := db.endHostSteps(ctx, tx, j.ID, HostSkipped, HostFailed, WorkerLost); err != nil {
				return err
			}
			return db.addOutbox(ctx, tx, OutboxDeploymentFailed, j.ProjectID, JobDeployment, j.ID)
		}
	}
}

// endHostSteps ends the unfinished steps of a deployment that was ended for them.
func (db *DB) endHostSteps(ctx context.Context, tx *sqlx.Tx, id int64, waiting, running, errText string) error {
	if _, err := tx.ExecContext(ctx, db.q(`UPDATE host_steps SET status = ? WHERE deployment_id = ? AND status = ?`),
		waiting, id, HostWaiting); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, db.q(`UPDATE host_steps SET status = ?, error = ?, finished_at = ? WHERE deployment_id = ? AND status = ?`),
		running, errText, db.now(), id, HostRunning)
	return err
}

// RecordHostPrevious records, once per host step, the release a host ran before the
// deployment stopped anything there (release "" when it ran none) and its version (nil when
// the release is not a version ferry knows). A second call for the same step changes nothing,
// so a worker taking the deployment over cannot overwrite what the first one saw. ECONFLICT
// when the deployment is not running or owner's lease on it was lost, ENOTFOUND when it has
// no step for the host.
func (db *DB) RecordHostPrevious(ctx context.Context, deploymentID, hostID int64, owner, release string, versionID *int64) error {
	res, err := db.db.ExecContext(ctx, db.q(`UPDATE host_steps SET previous_recorded = TRUE, previous_release = ?, previous_version_id = ?
		WHERE deployment_id = ? AND host_id = ? AND NOT previous_recorded
		AND EXISTS (SELECT 1 FROM deployments d WHERE d.id = deployment_id AND d.status = ? AND d.lease_owner = ?)`),
		truncate(release, 200), versionID, deploymentID, hostID, DeploymentRunning, owner)
	if err != nil {
		return fmt.Errorf("record the release host %d ran: %w", hostID, err)
	}
	if n, err := res.RowsAffected(); err != nil || n > 0 {
		return err
	}
	if err := db.leaseHeld(ctx, db.db, deploymentQueue(), deploymentID, owner); err != nil {
		return err
	}
	d, err := db.GetDeployment(ctx, deploymentID)
	if err != nil {
		return err
	}
	for _, h := range d.Hosts {
		if h.HostID == hostID {
			return nil // recorded already
		}
	}
	return Errorf(ENOTFOUND, "deployment %d has no step for host %d", deploymentID, hostID)
}
