package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
)

// Change control. A new deployment passes three gates before it is queued: approval (the
// environment's approvals_required people other than the requester), its time (scheduled_at)
// and the environment's freezes. createDeployment decides where it starts (gateDeployment);
// PromoteDeployments moves due ones on and ends those nobody approved in time. Every status
// change is a conditional UPDATE on the status it expects, so that several processes running
// the promotion at once move each deployment once.

// DefaultApprovalExpiry is how long a deployment waits for approval (counted from its request,
// or from its scheduled time when that is later) before it ends as rejected, unless
// DB.ApprovalExpiry says otherwise.
const DefaultApprovalExpiry = 24 * time.Hour

func (db *DB) approvalExpiry() time.Duration {
	if db.ApprovalExpiry > 0 {
		return db.ApprovalExpiry
	}
	return DefaultApprovalExpiry
}

// MaxScheduleAhead is how far ahead a deployment may be scheduled.
const MaxScheduleAhead = 366 * 24 * time.Hour

// deployGate is where a new deployment starts, decided by gateDeployment.
type deployGate struct {
	status        string
	requestedBy   string
	requestedByID *int64
	scheduledAt   *time.Time
	approvals     int
	expiresAt     *time.Time
	frozenBy      string
	override      string
}

type envGates struct {
	Approvals   int    `db:"approvals_required"`
	FreezesJSON string `db:"freezes"`
	Protected   bool   `db:"protected"`
}

func (db *DB) envGates(ctx context.Context, q queryer, envID int64) (*envGates, []Freeze, error) {
	var g envGates
	if err := q.GetContext(ctx, &g, db.q(`SELECT approvals_required, freezes, protected FROM environments WHERE id = ?`), envID); err != nil {
		return nil, nil, formatError(err, fmt.Sprintf("environment %d", envID))
	}
	var fs []Freeze
	if err := json.Unmarshal([]byte(g.FreezesJSON), &fs); err != nil {
		return nil, nil, fmt.Errorf("environment %d freezes: %w", envID, err)
	}
	return &g, fs, nil
}

// gateDeployment decides the status a new deployment starts in. A person asking for one now
// while its environment is frozen is refused (ECONFLICT naming the window and its end) unless
// an administrator overrides with a reason; an automatic deployment (no person behind ctx)
// waits as scheduled until the freeze ends.
func (db *DB) gateDeployment(ctx context.Context, tx *sqlx.Tx, nd NewDeployment, env string) (*deployGate, error) {
	eg, freezes, err := db.envGates(ctx, tx, nd.EnvironmentID)
	if err != nil {
		return nil, err
	}
	now, err := db.clock(ctx, tx)
	if err != nil {
		return nil, err
	}
	person := hasActor(ctx)
	g := &deployGate{status: DeploymentQueued, requestedBy: ActorFrom(ctx).Name, approvals: eg.Approvals}
	if a := ActorFrom(ctx); person && a.UserID != 0 {
		g.requestedByID = &a.UserID
	} else if !person && nd.askedBy != nil {
		// A build asked for by a person deploys by itself: that person asked for this
		// deployment too, so they may not approve it alone.
		g.requestedBy, g.requestedByID = nd.askedBy.Name, &nd.askedBy.UserID
	}
	if nd.ScheduledAt != nil {
		at := nd.ScheduledAt.UTC().Truncate(time.Microsecond)
		if !at.After(now) {
			return nil, Errorf(EINVALID, "scheduled_at: %s is not in the future (it is %s now)", at.Format(time.RFC3339), now.Format(time.RFC3339))
		}
		if at.After(now.Add(MaxScheduleAhead)) {
			return nil, Errorf(EINVALID, "scheduled_at: %s is more than a year ahead", at.Format(time.RFC3339))
		}
		g.scheduledAt, g.status = &at, DeploymentScheduled
	}
	if nd.OverrideFreeze {
		if g.override = truncate(strings.TrimSpace(nd.OverrideReason), 500); g.override == "" {
			return nil, Errorf(EINVALID, "reason: required to override a freeze; say why this deployment cannot wait")
		}
		if err := db.mustBeAdmin(ctx, tx, "override a freeze"); err != nil {
			return nil, err
		}
	}
	if g.approvals > 0 {
		base := now
		if g.scheduledAt != nil {
			base = *g.scheduledAt
		}
		exp := base.Add(db.approvalExpiry())
		g.status, g.expiresAt = DeploymentAwaitingApproval, &exp
	}
	if g.scheduledAt != nil || g.override != "" {
		return g, nil
	}
	if w := FrozenAt(freezes, now); w != nil {
		if person {
			return nil, Errorf(ECONFLICT, "environment %s is frozen: %s; deploy after it ends, schedule the deployment for later, or ask an administrator to override the freeze with a reason", env, w)
		}
		g.frozenBy = w.String()
		if g.status == DeploymentQueued {
			g.status = DeploymentScheduled
		}
	}
	return g, nil
}

// mustBeAdmin refuses unless the person behind ctx is an administrator.
func (db *DB) mustBeAdmin(ctx context.Context, q queryer, what string) error {
	a := ActorFrom(ctx)
	var admin bool
	err := q.GetContext(ctx, &admin, db.q(`SELECT admin FROM users WHERE id = ?`), a.UserID)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && !admin) || !hasActor(ctx) {
		return Errorf(EFORBIDDEN, "only an administrator may %s", what)
	}
	return err
}

// afterGate records, in the deployment's own log and the outbox, where a new deployment
// starts, and audits an override.
func (db *DB) afterGate(ctx context.Context, tx *sqlx.Tx, d *Deployment, g *deployGate) error {
	var lines []string
	if g.override != "" {
		lines = append(lines, fmt.Sprintf("freezes overridden by %s: %s", g.requestedBy, g.override))
		if err := db.audit(ctx, tx, "deployment.override_freeze", envTarget(d.Project, d.Environment),
			fmt.Sprintf("deployment %d: %s", d.ID, g.override)); err != nil {
			return err
		}
	}
	if g.scheduledAt != nil {
		lines = append(lines, "scheduled for "+g.scheduledAt.Format(time.RFC3339))
	}
	if g.status == DeploymentAwaitingApproval {
		lines = append(lines, fmt.Sprintf("waiting for %d approval(s) by people other than %s, until %s",
			g.approvals, g.requestedBy, g.expiresAt.Format(time.RFC3339)))
		if err := db.addOutbox(ctx, tx, OutboxDeploymentAwaitingApproval, d.ProjectID, JobDeployment, d.ID); err != nil {
			return err
		}
	}
	if g.frozenBy != "" {
		lines = append(lines, "waiting: the environment is frozen: "+g.frozenBy)
	}
	for _, l := range lines {
		if err := db.addLogLine(ctx, tx, JobDeployment, d.ID, "", l); err != nil {
			return err
		}
	}
	return nil
}

// gateWaitingFor says what a deployment that has not been queued yet waits for.
func gateWaitingFor(d *Deployment) string {
	switch {
	case d.Status == DeploymentAwaitingApproval:
		s := "approval (" + approvalCount(d) + ")"
		if d.ApprovalExpiresAt != nil {
			s += ", until " + d.ApprovalExpiresAt.Format(time.RFC3339)
		}
		return s
	case d.FrozenBy != "":
		return "the end of a freeze: " + d.FrozenBy
	case d.ScheduledAt != nil:
		return "its scheduled time, " + d.ScheduledAt.Format(time.RFC3339)
	}
	return ""
}

// PromoteResult counts what one PromoteDeployments pass did.
type PromoteResult struct {
	Queued  int // scheduled or approved deployments that came due and were queued
	Frozen  int // due ones that wait on a freeze
	Expired int // ended as rejected: nobody approved them in time
}

// PromoteDeployments ends deployments whose approval time ran out (as rejected, with the reason,
// deployment.rejected in the outbox) and queues scheduled ones that are due and not frozen;
// a due one inside a freeze keeps waiting with frozen_by naming the window. Time is the
// database's clock. Safe to run in several processes at once: each deployment moves once.
func (db *DB) PromoteDeployments(ctx context.Context) (PromoteResult, error) {
	var res PromoteResult
	now, err := db.clock(ctx, db.db)
	if err != nil {
		return res, err
	}
	if res.Expired, err = db.expireApprovals(ctx, now); err != nil {
		return res, err
	}
	runs, err := db.expireRunApprovals(ctx, now) // job runs wait for approval too (jobrunexpiry.go)
	res.Expired += runs
	if err != nil {
		return res, err
	}
	var due []struct {
		ID       int64  `db:"id"`
		FrozenBy string `db:"frozen_by"`
		Override string `db:"override_reason"`
		Freezes  string `db:"freezes"`
	}
	err = db.db.SelectContext(ctx, &due, db.q(`SELECT d.id, d.frozen_by, d.override_reason, e.freezes FROM deployments d
		JOIN environments e ON e.id = d.environment_id
		WHERE d.status = ? AND (d.scheduled_at IS NULL OR d.scheduled_at <= ?) ORDER BY d.id`), DeploymentScheduled, now)
	if err != nil {
		return res, fmt.Errorf("list due deployments: %w", err)
	}
	for _, d := range due {
		var fs []Freeze
		if d.Override == "" {
			if err := json.Unmarshal([]byte(d.Freezes), &fs); err != nil {
				return res, fmt.Errorf("deployment %d freezes: %w", d.ID, err)
			}
		}
		if w := FrozenAt(fs, now); w != nil {
			res.Frozen++
			if err := db.markFrozen(ctx, d.ID, d.FrozenBy, w.String()); err != nil {
				return res, err
			}
			continue
		}
		moved, err := db.queueDue(ctx, d.ID)
		if err != nil {
			return res, err
		}
		if moved {
			res.Queued++
		}
	}
	return res, nil
}

func (db *DB) markFrozen(ctx context.Context, id int64, was, window string) error {
	if was == window {
		return nil
	}
	return db.Transact(ctx, func(tx *sqlx.Tx) error {
		res, err := tx.ExecContext(ctx, db.q(`UPDATE deployments SET frozen_by = ? WHERE id = ? AND status = ? AND frozen_by = ?`),
			window, id, DeploymentScheduled, was)
		if n, _ := affected(res, err); n != 1 {
			return err
		}
		return db.addLogLine(ctx, tx, JobDeployment, id, "", "due, but waiting: the environment is frozen: "+window)
	})
}

// queueDue queues a due scheduled deployment, if no other process did first. One whose
// requester may no longer deploy to its environment is canceled instead, saying why.
func (db *DB) queueDue(ctx context.Context, id int64) (bool, error) {
	moved := false
	err := db.Transact(ctx, func(tx *sqlx.Tx) error {
		d, err := db.getDeployment(ctx, tx, id)
		if err != nil || d.Status != DeploymentScheduled {
			return err
		}
		if refusal, err := db.requesterRefusal(ctx, tx, d); err != nil || refusal != "" {
			if err != nil {
				return err
			}
			return db.cancelForRefusal(ctx, tx, d, refusal)
		}
		res, err := tx.ExecContext(ctx, db.q(`UPDATE deployments SET status = ?, frozen_by = '' WHERE id = ? AND status = ?`),
			DeploymentQueued, id, DeploymentScheduled)
		if n, err := affected(res, err); n != 1 {
			return err
		}
		moved = true
		if err := db.addLogLine(ctx, tx, JobDeployment, id, "", "due: queued"); err != nil {
			return err
		}
		return db.audit(ctx, tx, "deployment.queue", envTarget(d.Project, d.Environment), fmt.Sprintf("deployment %d came due and was queued", id))
	})
	if err != nil {
		return false, fmt.Errorf("queue due deployment %d: %w", id, err)
	}
	return moved, nil
}

// requesterRefusal says why the person who asked for d may no longer deploy it to its
// environment, or "" when they may (or nobody asked: an automatic deployment of a push). The
// right is checked as it is now, so a deployment that waited for its time or its approvals
// does not go on on a production right its requester has lost meanwhile.
func (db *DB) requesterRefusal(ctx context.Context, q queryer, d *Deployment) (string, error) {
	if d.RequestedByID == nil {
		return "", nil
	}
	eg, _, err := db.envGates(ctx, q, d.EnvironmentID)
	if err != nil || !eg.Protected {
		return "", err
	}
	var who []struct {
		Admin      bool `db:"admin"`
		Production bool `db:"production"`
	}
	if err := q.SelectContext(ctx, &who, db.q(`SELECT u.admin, COALESCE(m.production, FALSE) AS production FROM users u
		LEFT JOIN project_members m ON m.user_id = u.id AND m.project_id = ? WHERE u.id = ?`), d.ProjectID, *d.RequestedByID); err != nil {
		return "", err
	}
	if len(who) == 1 && (who[0].Admin || who[0].Production) {
		return "", nil
	}
	return fmt.Sprintf("%s is protected, and %s, who asked for this deployment, no longer has the production right on %s; someone who has it can deploy the version",
		d.Environment, d.RequestedBy, d.Project), nil
}

// cancelForRefusal ends a deployment that has not started as canceled with reason (see
// requesterRefusal).
func (db *DB) cancelForRefusal(ctx context.Context, tx *sqlx.Tx, d *Deployment, reason string) error {
	if err := db.endDeployment(ctx, tx, d.ID, DeploymentCanceled, reason, HostCanceled); err != nil {
		return err
	}
	if err := db.addLogLine(ctx, tx, JobDeployment, d.ID, "", "canceled: "+reason); err != nil {
		return err
	}
	if err := db.addOutbox(ctx, tx, OutboxDeploymentCanceled, d.ProjectID, JobDeployment, d.ID); err != nil {
		return err
	}
	return db.audit(ctx, tx, "deployment.cancel", envTarget(d.Project, d.Environment), fmt.Sprintf("deployment %d: %s", d.ID, reason))
}

// expireApprovals ends deployments still awaiting approval at their expiry.
func (db *DB) expireApprovals(ctx context.Context, now time.Time) (int, error) {
	var ids []int64
	if err := db.db.SelectContext(ctx, &ids, db.q(`SELECT id FROM deployments WHERE status = ? AND approval_expires_at <= ? ORDER BY id`),
		DeploymentAwaitingApproval, now); err != nil {
		return 0, fmt.Errorf("list expired approvals: %w", err)
	}
	n := 0
	for _, id := range ids {
		err := db.Transact(ctx, func(tx *sqlx.Tx) error {
			d, err := db.getDeployment(ctx, tx, id)
			if err != nil {
				return err
			}
			reason := fmt.Sprintf("expired: only %s approvals when the time to approve ran out at %s",
				approvalCount(d), d.ApprovalExpiresAt.Format(time.RFC3339))
			ended, err := db.endAwaiting(ctx, tx, d, reason, OutboxDeploymentRejected)
			if err != nil || !ended {
				return err
			}
			n++
			return db.audit(ctx, tx, "deployment.expire", envTarget(d.Project, d.Environment), fmt.Sprintf("deployment %d: %s", id, reason))
		})
		if err != nil {
			return n, fmt.Errorf("expire deployment %d: %w", id, err)
		}
	}
	return n, nil
}

// endAwaiting ends a deployment awaiting approval as rejected with reason, if it still awaits.
func (db *DB) endAwaiting(ctx context.Context, tx *sqlx.Tx, d *Deployment, reason, event string) (bool, error) {
	res, err := tx.ExecContext(ctx, db.q(`UPDATE deployments SET status = ?, error = ?, finished_at = ? WHERE id = ? AND status = ?`),
		DeploymentRejected, truncate(reason, 4000), db.now(), d.ID, DeploymentAwaitingApproval)
	if n, err := affected(res, err); n != 1 {
		return false, err
	}
	if err := db.endHostSteps(ctx, tx, d.ID, HostCanceled, HostCanceled, reason); err != nil {
		return false, err
	}
	if err := db.addLogLine(ctx, tx, JobDeployment, d.ID, "", reason); err != nil {
		return false, err
	}
	return true, db.addOutbox(ctx, tx, event, d.ProjectID, JobDeployment, d.ID)
}

func affected(res sql.Result, err error) (int64, error) {
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func approvalCount(d *Deployment) string {
	n := 0
	for _, a := range d.Approvals {
		if a.Decision == DecisionApproved {
			n++
		}
	}
	return fmt.Sprintf("%d of %d", n, d.ApprovalsRequired)
}

// PromoteEvery runs PromoteDeployments at once and then every period until ctx ends, telling
// report what each pass did.
func (db *DB) PromoteEvery(ctx context.Context, period time.Duration, report func(PromoteResult, error)) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		res, err := db.PromoteDeployments(ctx)
		if report != nil && ctx.Err() == nil {
			report(res, err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// DeploymentWaiting reports whether status is one of the change-control waits before queued.
func DeploymentWaiting(status string) bool {
	return status == DeploymentAwaitingApproval || status == DeploymentScheduled
}
