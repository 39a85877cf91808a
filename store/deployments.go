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

const deploymentColumns = `d.id, d.project_id, p.name AS project, d.environment_id, e.name AS environment,
	d.version_id, v.name AS version, d.status, d.strategy, d.triggered_by, d.build_id, d.error, d.queued_at,
	d.started_at, d.finished_at, d.attempts, d.cancel_requested, d.requested_by, d.requested_by_id, d.scheduled_at,
	d.approvals_required, d.approval_expires_at, d.frozen_by, d.override_reason`

const deploymentFrom = ` FROM deployments d JOIN projects p ON p.id = d.project_id
	JOIN environments e ON e.id = d.environment_id JOIN versions v ON v.id = d.version_id`

const hostStepColumns = `deployment_id, host_id, host_name, position, status, step, bytes_sent, bytes_total, error,
	started_at, finished_at, previous_recorded, previous_release, previous_version_id`

type deploymentRow struct {
	Deployment
	StrategyJSON string `db:"strategy"`
}

func (r *deploymentRow) open() (*Deployment, error) {
	d := r.Deployment
	if err := json.Unmarshal([]byte(r.StrategyJSON), &d.Strategy); err != nil {
		return nil, fmt.Errorf("deployment %d strategy: %w", d.ID, err)
	}
	d.QueuedAt = d.QueuedAt.UTC()
	utc(d.StartedAt)
	utc(d.FinishedAt)
	utc(d.ScheduledAt)
	utc(d.ApprovalExpiresAt)
	d.Hosts = []*HostStep{}
	d.Approvals = []*Approval{}
	return &d, nil
}

// envHost is a host of an environment, in rollout order.
type envHost struct {
	ID   int64  `db:"id"`
	Name string `db:"name"`
}

// deployPlan is a checked NewDeployment: what createDeployment inserts.
type deployPlan struct {
	project, environment, version string
	hosts                         []envHost
	strategy                      string
}

// checkDeployment validates nd inside tx with reads only, so that on PostgreSQL a refusal
// leaves the transaction usable.
func (db *DB) checkDeployment(ctx context.Context, tx *sqlx.Tx, nd NewDeployment) (*deployPlan, error) {
	v, err := db.getVersion(ctx, tx, fmt.Sprintf("version %d", nd.VersionID), `v.id = ? AND v.project_id = ?`, nd.VersionID, nd.ProjectID)
	if err != nil {
		return nil, err
	}
	if v.DeletedAt != nil {
		return nil, Errorf(EINVALID, "version %s was removed by retention", v.Name)
	}
	plan := &deployPlan{project: v.Project, version: v.Name, strategy: "{}"}
	err = tx.GetContext(ctx, &plan.environment, db.q(`SELECT name FROM environments WHERE id = ? AND project_id = ?`), nd.EnvironmentID, nd.ProjectID)
	if err != nil {
		return nil, formatError(err, fmt.Sprintf("environment %d of project %s", nd.EnvironmentID, v.Project))
	}
	if plan.hosts, err = db.pickHosts(ctx, tx, nd.EnvironmentID, plan.environment, nd.Hosts); err != nil {
		return nil, err
	}
	if nd.Strategy != nil {
		if err := nd.Strategy.Validate(); err != nil {
			return nil, err
		}
		b, _ := json.Marshal(nd.Strategy)
		plan.strategy = string(b)
	}
	return plan, nil
}

// pickHosts returns the hosts of the environment named by ids, in that order, or all of them in
// the environment's order when ids is empty.
func (db *DB) pickHosts(ctx context.Context, tx *sqlx.Tx, envID int64, env string, ids []int64) ([]envHost, error) {
	var all []envHost
	if err := tx.SelectContext(ctx, &all, db.q(`SELECT h.id, h.name FROM environment_hosts eh JOIN hosts h ON h.id = eh.host_id
		WHERE eh.environment_id = ? ORDER BY eh.position`), envID); err != nil {
		return nil, err
	}
	if len(all) == 0 {
		return nil, Errorf(EINVALID, "environment %s has no hosts", env)
	}
	if len(ids) == 0 {
		return all, nil
	}
	byID := map[int64]envHost{}
	for _, h := range all {
		byID[h.ID] = h
	}
	picked := make([]envHost, 0, len(ids))
	seen := map[int64]bool{}
	for _, id := range ids {
		h, ok := byID[id]
		if !ok {
			return nil, db.foreignHost(ctx, tx, id, env)
		}
		if seen[id] {
			return nil, Errorf(EINVALID, "hosts: %s is named twice", h.Name)
		}
		seen[id] = true
		picked = append(picked, h)
	}
	return picked, nil
}

func (db *DB) foreignHost(ctx context.Context, tx *sqlx.Tx, id int64, env string) error {
	var name string
	err := tx.GetContext(ctx, &name, db.q(`SELECT name FROM hosts WHERE id = ?`), id)
	if errors.Is(err, sql.ErrNoRows) {
		return Errorf(EINVALID, "hosts: there is no host with id %d", id)
	}
	if err != nil {
		return err
	}
	return Errorf(EINVALID, "hosts: host %s is not in environment %s", name, env)
}

// createDeployment queues nd inside tx with a waiting host step per host.
func (db *DB) createDeployment(ctx context.Context, tx *sqlx.Tx, nd NewDeployment) (*Deployment, error) {
	plan, err := db.checkDeployment(ctx, tx, nd)
	if err != nil {
		return nil, err
	}
	gate, err := db.gateDeployment(ctx, tx, nd, plan.environment)
	if err != nil {
		return nil, err
	}
	d := &Deployment{ProjectID: nd.ProjectID, Project: plan.project, EnvironmentID: nd.EnvironmentID,
		Environment: plan.environment, VersionID: nd.VersionID, Version: plan.version, Status: gate.status,
		TriggeredBy: truncate(nd.TriggeredBy, 200), BuildID: nd.BuildID, QueuedAt: db.now()}
	err = tx.GetContext(ctx, &d.ID, db.q(`INSERT INTO deployments (project_id, environment_id, version_id, status, strategy,
		triggered_by, build_id, queued_at, requested_by, requested_by_id, scheduled_at, approvals_required, approval_expires_at,
		frozen_by, override_reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`),
		d.ProjectID, d.EnvironmentID, d.VersionID, d.Status, plan.strategy, d.TriggeredBy, d.BuildID, d.QueuedAt,
		truncate(gate.requestedBy, 200), gate.requestedByID, gate.scheduledAt, gate.approvals, gate.expiresAt, gate.frozenBy, gate.override)
	if err != nil {
		return nil, fmt.Errorf("queue deployment: %w", err)
	}
	names := make([]string, len(plan.hosts))
	for i, h := range plan.hosts {
		names[i] = h.Name
		if _, err := tx.ExecContext(ctx, db.q(`INSERT INTO host_steps (deployment_id, host_id, host_name, position, status)
			VALUES (?, ?, ?, ?, ?)`), d.ID, h.ID, h.Name, i, HostWaiting); err != nil {
			return nil, err
		}
	}
	if err := db.afterGate(ctx, tx, d, gate); err != nil {
		return nil, err
	}
	if !hasActor(ctx) {
		return d, nil
	}
	detail := fmt.Sprintf("deployment %d of %s to %s", d.ID, d.Version, strings.Join(names, ", "))
	if d.Status != DeploymentQueued {
		detail += ", " + d.Status
	}
	return d, db.audit(ctx, tx, "deployment.create", envTarget(d.Project, d.Environment), detail)
}

// CreateDeployment queues a deployment with a waiting host step per host (all hosts of the
// environment in its order when nd.Hosts is empty). EINVALID when the version was removed by
// retention, a host is not in the environment (naming it) or the environment has no hosts;
// ENOTFOUND for an unknown version or environment. Audited. It passes the change-control gates
// first (gates.go): it starts as awaiting_approval or scheduled when they say so; ECONFLICT
// (naming the window and its end) when a person asks during a freeze without an administrator's
// override; EFORBIDDEN when a non-administrator overrides; EINVALID for a past scheduled_at.
func (db *DB) CreateDeployment(ctx context.Context, nd NewDeployment) (*Deployment, error) {
	var id int64
	err := db.Transact(ctx, func(tx *sqlx.Tx) error {
		d, err := db.createDeployment(ctx, tx, nd)
		if err != nil {
			return err
		}
		id = d.ID
		return nil
	})
	if err != nil {
		return nil, err
	}
	return db.GetDeployment(ctx, id)
}

// GetDeployment returns a deployment with its host steps and, when queued, what it waits for;
// ENOTFOUND if there is none.
func (db *DB) GetDeployment(ctx context.Context, id int64) (*Deployment, error) {
	return db.getDeployment(ctx, db.db, id)
}

func (db *DB) getDeployment(ctx context.Context, q queryer, id int64) (*Deployment, error) {
	var row deploymentRow
	if err := q.GetContext(ctx, &row, db.q(`SELECT `+deploymentColumns+deploymentFrom+` WHERE d.id = ?`), id); err != nil {
		return nil, formatError(err, fmt.Sprintf("deployment %d", id))
	}
	d, err := row.open()
	if err != nil {
		return nil, err
	}
	if err := q.SelectContext(ctx, &d.Hosts, db.q(`SELECT `+hostStepColumns+` FROM host_steps WHERE deployment_id = ? ORDER BY position`), id); err != nil {
		return nil, err
	}
	for _, h := range d.Hosts {
		utc(h.StartedAt)
		utc(h.FinishedAt)
	}
	if d.Status == DeploymentQueued {
		if d.WaitingFor, err = db.waitingFor(ctx, q, d); err != nil {
			return nil, err
		}
	}
	if err := db.loadApprovals(ctx, q, d); err != nil {
		return nil, err
	}
	if d.WaitingFor == "" {
		d.WaitingFor = gateWaitingFor(d)
	}
	return d, nil
}

// waitingFor names what a queued deployment waits for: the running deployment of its
// environment, else the queued one just before it, else a free worker.
func (db *DB) waitingFor(ctx context.Context, q queryer, d *Deployment) (string, error) {
	// Two plain queries: SQLite's planner fails on the OR of both.
	var ahead struct {
		ID     int64  `db:"id"`
		Status string `db:"status"`
	}
	err := q.GetContext(ctx, &ahead, db.q(`SELECT id, status FROM deployments WHERE environment_id = ? AND status = ?
		ORDER BY id LIMIT 1`), d.EnvironmentID, DeploymentRunning)
	if errors.Is(err, sql.ErrNoRows) {
		err = q.GetContext(ctx, &ahead, db.q(`SELECT id, status FROM deployments WHERE environment_id = ? AND status = ?
			AND id < ? ORDER BY id DESC LIMIT 1`), d.EnvironmentID, DeploymentQueued, d.ID)
	}
	if errors.Is(err, sql.ErrNoRows) {
		return "a free deploy worker", nil
	}
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("deployment %d (%s) to %s", ahead.ID, ahead.Status, d.Environment), nil
}

// ListDeployments lists deployments newest first (without host steps).
func (db *DB) ListDeployments(ctx context.Context, f DeploymentFilter) ([]*Deployment, error) {
	query := `SELECT ` + deploymentColumns + deploymentFrom + ` WHERE 1=1`
	var args []any
	if f.ProjectID != 0 {
		query += ` AND d.project_id = ?`
		args = append(args, f.ProjectID)
	}
	if f.EnvironmentID != 0 {
		query += ` AND d.environment_id = ?`
		args = append(args, f.EnvironmentID)
	}
	if f.BeforeID > 0 {
		query += ` AND d.id < ?`
		args = append(args, f.BeforeID)
	}
	query, args = inStatus(query, args, "d.status", f.Status)
	query += ` ORDER BY d.id DESC LIMIT ?`
	args = append(args, listLimit(f.Limit))
	var rows []*deploymentRow
	if err := db.db.SelectContext(ctx, &rows, db.q(query), args...); err != nil {
		return nil, fmt.Errorf("list deployments: %w", err)
	}
	out := make([]*Deployment, 0, len(rows))
	for _, r := range rows {
		d, err := r.open()
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

// ClaimDeployment takes the oldest queued deployment of an environment with no running one,
// as ClaimBuild does, and writes the deployment.started outbox entry (on its first attempt
// only: a deployment taken over after its worker died does not start twice for people).
func (db *DB) ClaimDeployment(ctx context.Context, owner string, ttl time.Duration) (*Deployment, error) {
	id, err := db.claim(ctx, deploymentQueue(), owner, ttl, func(tx *sqlx.Tx, id int64, attempts int) error {
		if attempts > 1 {
			return nil
		}
		var projectID int64
		if err := tx.GetContext(ctx, &projectID, db.q(`SELECT project_id FROM deployments WHERE id = ?`), id); err != nil {
			return err
		}
		return db.addOutbox(ctx, tx, OutboxDeploymentStarted, projectID, JobDeployment, id)
	})
	if err != nil || id == 0 {
		return nil, err
	}
	return db.GetDeployment(ctx, id)
}

// RenewDeployment extends owner's lease and reports whether a cancel was asked for. ECONFLICT
// when owner no longer holds the lease.
func (db *DB) RenewDeployment(ctx context.Context, id int64, owner string, ttl time.Duration) (cancel bool, err error) {
	return db.renew(ctx, deploymentQueue(), id, owner, ttl)
}
