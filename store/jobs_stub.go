package store

// The job side of the store, as signatures that other packages are written against. Each
// method moves to its own file (builds.go, events.go, versions.go, logs.go, deployments.go,
// instances.go, outbox.go, queue.go) when it is implemented; this file goes when it is empty.

import (
	"context"
	"time"
)

func todo() error { return Errorf(EINTERNAL, "not implemented yet") }

// ---- events (webhooks) ----

// RecordEvent stores a webhook delivery and, when nb is not nil, its pending build, in one
// transaction. When e.DeliveryKey is set and a delivery with that key exists already, it
// creates nothing and returns the existing event (with its build, if any) and dup = true.
// On success e.ID (and e.BuildID) are set.
func (db *DB) RecordEvent(ctx context.Context, e *Event, nb *NewBuild) (ev *Event, b *Build, dup bool, err error) {
	return nil, nil, false, todo()
}

// ListEvents lists a project's webhook events, newest first; limit 0 means 50.
func (db *DB) ListEvents(ctx context.Context, projectID int64, limit int) ([]*Event, error) {
	return nil, todo()
}

// ---- builds ----

// CreateBuild queues a pending build (number = the project's last + 1) and audits it when the
// context has an actor.
func (db *DB) CreateBuild(ctx context.Context, nb NewBuild) (*Build, error) { return nil, todo() }

// GetBuild returns a build with its project and version names; ENOTFOUND if there is none.
func (db *DB) GetBuild(ctx context.Context, id int64) (*Build, error) { return nil, todo() }

// ListBuilds lists builds newest first.
func (db *DB) ListBuilds(ctx context.Context, f BuildFilter) ([]*Build, error) { return nil, todo() }

// ClaimBuild takes the oldest pending build of a project that has no running build, marks it
// running under owner's lease (until now+ttl), counts the attempt and returns it; nil, nil
// when there is nothing to claim. Safe across processes (FOR UPDATE SKIP LOCKED on
// PostgreSQL, an immediate transaction on SQLite).
func (db *DB) ClaimBuild(ctx context.Context, owner string, ttl time.Duration) (*Build, error) {
	return nil, todo()
}

// RenewBuild extends owner's lease on a running build and reports whether a cancel was asked
// for. ECONFLICT when owner no longer holds the lease (the build was taken over or ended).
func (db *DB) RenewBuild(ctx context.Context, id int64, owner string, ttl time.Duration) (cancel bool, err error) {
	return false, todo()
}

// FinishBuild ends a running build held by owner, in one transaction: it creates the version
// (r.Version), sets the status, error, version and finish time, clears the lease, queues
// r.Deploy, and writes the outbox entry (build.succeeded or build.failed). ECONFLICT when owner
// no longer holds the lease.
func (db *DB) FinishBuild(ctx context.Context, id int64, owner string, r BuildResult) (*Build, error) {
	return nil, todo()
}

// CancelBuild cancels a pending build at once (status canceled) or asks a running one to stop
// (cancel_requested; the worker ends it). ECONFLICT for a build that has ended. Audited.
func (db *DB) CancelBuild(ctx context.Context, id int64) (*Build, error) { return nil, todo() }

// ReapBuilds ends or requeues running builds whose lease ran out (their worker died): one with
// attempts < maxAttempts goes back to pending, the others fail with "worker lost". Each gets a
// log line saying so. It returns how many it requeued and failed.
func (db *DB) ReapBuilds(ctx context.Context, maxAttempts int) (requeued, failed int, err error) {
	return 0, 0, todo()
}

// ---- versions ----

// GetVersion returns a version by id (deleted ones too, with DeletedAt set).
func (db *DB) GetVersion(ctx context.Context, id int64) (*Version, error) { return nil, todo() }

// GetVersionByName returns a project's version by name; ENOTFOUND if there is none or it was
// deleted by retention.
func (db *DB) GetVersionByName(ctx context.Context, projectID int64, name string) (*Version, error) {
	return nil, todo()
}

// VersionBySHA returns the newest kept version built from a commit; ENOTFOUND if none.
func (db *DB) VersionBySHA(ctx context.Context, projectID int64, sha string) (*Version, error) {
	return nil, todo()
}

// ListVersions lists a project's kept versions newest first (with deleted ones when asked).
func (db *DB) ListVersions(ctx context.Context, projectID int64, withDeleted bool) ([]*Version, error) {
	return nil, todo()
}

// PruneVersions marks deleted all but the newest keep versions of a project, sparing those
// that an instance runs or keeps as previous and those a queued or running deployment needs,
// and returns the ones it marked so the caller removes their files.
func (db *DB) PruneVersions(ctx context.Context, projectID int64, keep int) ([]*Version, error) {
	return nil, todo()
}

// ---- logs ----

// LogWriter appends lines to one job's log in batches. Write never blocks on the database for
// long: lines are buffered and flushed every 100 ms or every 1,000 lines, and by Close.
// Seq numbers continue after the last stored line, so a job taken over keeps one log.
type LogWriter struct{}

// OpenLog returns a writer for a job's log.
func (db *DB) OpenLog(ctx context.Context, kind string, jobID int64) (*LogWriter, error) {
	return nil, todo()
}

// Write adds a line; host is "" for a build. It is safe for concurrent use.
func (w *LogWriter) Write(stream, host, text string) {}

// Flush stores buffered lines now.
func (w *LogWriter) Flush(ctx context.Context) error { return todo() }

// Close flushes and ends the writer.
func (w *LogWriter) Close() error { return todo() }

// ReadLog returns up to limit lines of a job's log with seq > after, in order; host, when not
// "", keeps only that host's lines. limit 0 means 1,000.
func (db *DB) ReadLog(ctx context.Context, kind string, jobID, after int64, host string, limit int) ([]LogLine, error) {
	return nil, todo()
}

// ---- deployments ----

// CreateDeployment queues a deployment with a waiting host step per host. The version must be
// kept and the hosts must belong to the environment (EINVALID naming the host otherwise).
// Audited.
func (db *DB) CreateDeployment(ctx context.Context, nd NewDeployment) (*Deployment, error) {
	return nil, todo()
}

// GetDeployment returns a deployment with its host steps and, when queued, what it waits for.
func (db *DB) GetDeployment(ctx context.Context, id int64) (*Deployment, error) { return nil, todo() }

// ListDeployments lists deployments newest first (without host steps).
func (db *DB) ListDeployments(ctx context.Context, f DeploymentFilter) ([]*Deployment, error) {
	return nil, todo()
}

// ClaimDeployment takes the oldest queued deployment of an environment with no running one,
// as ClaimBuild does, and writes the deployment.started outbox entry.
func (db *DB) ClaimDeployment(ctx context.Context, owner string, ttl time.Duration) (*Deployment, error) {
	return nil, todo()
}

// RenewDeployment extends owner's lease and reports whether a cancel was asked for.
func (db *DB) RenewDeployment(ctx context.Context, id int64, owner string, ttl time.Duration) (cancel bool, err error) {
	return false, todo()
}

// UpdateHostStep changes one host step of a running deployment.
func (db *DB) UpdateHostStep(ctx context.Context, deploymentID, hostID int64, u HostStepUpdate) error {
	return todo()
}

// FinishDeployment ends a running deployment held by owner with status success, failed or
// canceled, ends host steps still waiting or running (as skipped or canceled), clears the
// lease and writes the outbox entry, in one transaction.
func (db *DB) FinishDeployment(ctx context.Context, id int64, owner, status, errText string) (*Deployment, error) {
	return nil, todo()
}

// CancelDeployment cancels a queued deployment at once or asks a running one to stop.
// ECONFLICT for one that has ended. Audited.
func (db *DB) CancelDeployment(ctx context.Context, id int64) (*Deployment, error) {
	return nil, todo()
}

// RetryDeployment queues a new deployment of the same version to the hosts that failed or did
// not finish in an ended deployment. EINVALID when every host succeeded. Audited.
func (db *DB) RetryDeployment(ctx context.Context, id int64, triggeredBy string) (*Deployment, error) {
	return nil, todo()
}

// ReapDeployments does for deployments what ReapBuilds does for builds.
func (db *DB) ReapDeployments(ctx context.Context, maxAttempts int) (requeued, failed int, err error) {
	return 0, 0, todo()
}

// ---- instances ----

// SetInstance records what runs on a host for a project now (insert or update).
func (db *DB) SetInstance(ctx context.Context, in Instance) error { return todo() }

// ListInstances lists a project's instances with host and environment names, by host name.
func (db *DB) ListInstances(ctx context.Context, projectID int64) ([]*Instance, error) {
	return nil, todo()
}

// ---- outbox ----

// ListOutbox returns up to limit outbox entries not yet done, oldest first.
func (db *DB) ListOutbox(ctx context.Context, limit int) ([]*OutboxEntry, error) { return nil, todo() }

// DoneOutbox marks an outbox entry handled.
func (db *DB) DoneOutbox(ctx context.Context, id int64) error { return todo() }
