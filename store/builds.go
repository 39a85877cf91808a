package store

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
)

const buildColumns = `b.id, b.project_id, p.name AS project, b.number, b.status, b.ref, b.branch, b.tag, b.sha,
	b.commit_title, b.commit_author, b.commit_url, b.triggered_by, b.version_id, COALESCE(v.name, '') AS version,
	b.error, b.queued_at, b.started_at, b.finished_at, b.attempts, b.cancel_requested, b.source, b.requested_by`

const buildFrom = ` FROM builds b JOIN projects p ON p.id = b.project_id LEFT JOIN versions v ON v.id = b.version_id`

// validate checks what a build is asked for; text fields are data and only limited in length.
func (nb *NewBuild) validate() error {
	if nb.ProjectID == 0 {
		return Errorf(EINVALID, "project: required")
	}
	if nb.SHA == "" {
		return Errorf(EINVALID, "sha: required (the commit to build)")
	}
	if err := CheckCommitID(nb.SHA); err != nil {
		return Errorf(EINVALID, "sha: %s", ErrorMessage(err))
	}
	for _, f := range []struct{ name, value string }{{"ref", nb.Ref}, {"branch", nb.Branch}, {"tag", nb.Tag}} {
		if len(f.value) > 255 || strings.ContainsAny(f.value, "\x00\r\n") {
			return Errorf(EINVALID, "%s: %q is not a git ref name", f.name, truncate(f.value, 80))
		}
	}
	nb.CommitTitle = truncate(nb.CommitTitle, 500)
	nb.CommitAuthor = truncate(nb.CommitAuthor, 200)
	nb.CommitURL = truncate(nb.CommitURL, 1000)
	nb.TriggeredBy = truncate(nb.TriggeredBy, 200)
	return nil
}

// insertBuild queues a pending build inside tx with the project's next number, recording how
// it was asked for: source, and for BuildSourceAPI the context's actor as the person who asked.
// On PostgreSQL the project row is locked so that concurrent builds of one project get
// distinct numbers.
func (db *DB) insertBuild(ctx context.Context, tx *sqlx.Tx, nb NewBuild, source string) (id int64, project string, number int, err error) {
	query := `SELECT name FROM projects WHERE id = ?`
	if db.dialect == Postgres {
		query += ` FOR NO KEY UPDATE`
	}
	if err := tx.GetContext(ctx, &project, db.q(query), nb.ProjectID); err != nil {
		return 0, "", 0, formatError(err, fmt.Sprintf("project %d", nb.ProjectID))
	}
	if err := tx.GetContext(ctx, &number, db.q(`SELECT COALESCE(MAX(number), 0) + 1 FROM builds WHERE project_id = ?`), nb.ProjectID); err != nil {
		return 0, "", 0, err
	}
	var requestedBy *int64
	if a := ActorFrom(ctx); source == BuildSourceAPI && a.UserID != 0 {
		requestedBy = &a.UserID
	}
	err = tx.GetContext(ctx, &id, db.q(`INSERT INTO builds (project_id, number, status, ref, branch, tag, sha, commit_title,
		commit_author, commit_url, triggered_by, queued_at, source, requested_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`),
		nb.ProjectID, number, BuildPending, nb.Ref, nb.Branch, nb.Tag, nb.SHA, nb.CommitTitle, nb.CommitAuthor,
		nb.CommitURL, nb.TriggeredBy, db.now(), source, requestedBy)
	if err != nil {
		return 0, "", 0, fmt.Errorf("queue build of project %s: %w", project, err)
	}
	if hasActor(ctx) {
		detail := fmt.Sprintf("build #%d of %s at %s", number, nb.Ref, nb.SHA)
		if err := db.audit(ctx, tx, "build.create", buildTarget(project, id), detail); err != nil {
			return 0, "", 0, err
		}
	}
	return id, project, number, nil
}

func buildTarget(project string, id int64) string {
	return fmt.Sprintf("project/%s/build/%d", project, id)
}

// CreateBuild queues a pending build (number = the project's last + 1) asked for by a person,
// the context's actor (BuildSourceAPI), and audits it when the context has an actor. EINVALID
// for a missing or malformed sha, ENOTFOUND for an unknown project.
func (db *DB) CreateBuild(ctx context.Context, nb NewBuild) (*Build, error) {
	if err := nb.validate(); err != nil {
		return nil, err
	}
	var id int64
	err := db.Transact(ctx, func(tx *sqlx.Tx) error {
		var err error
		id, _, _, err = db.insertBuild(ctx, tx, nb, BuildSourceAPI)
		return err
	})
	if err != nil {
		return nil, err
	}
	return db.GetBuild(ctx, id)
}

// GetBuild returns a build with its project and version names; ENOTFOUND if there is none.
func (db *DB) GetBuild(ctx context.Context, id int64) (*Build, error) {
	return db.getBuild(ctx, db.db, id)
}

func (db *DB) getBuild(ctx context.Context, q queryer, id int64) (*Build, error) {
	var b Build
	if err := q.GetContext(ctx, &b, db.q(`SELECT `+buildColumns+buildFrom+` WHERE b.id = ?`), id); err != nil {
		return nil, formatError(err, fmt.Sprintf("build %d", id))
	}
	b.fixTimes()
	return &b, nil
}

func (b *Build) fixTimes() {
	b.QueuedAt = b.QueuedAt.UTC()
	utc(b.StartedAt)
	utc(b.FinishedAt)
}

// ListBuilds lists builds newest first.
func (db *DB) ListBuilds(ctx context.Context, f BuildFilter) ([]*Build, error) {
	query := `SELECT ` + buildColumns + buildFrom + ` WHERE 1=1`
	var args []any
	if f.ProjectID != 0 {
		query += ` AND b.project_id = ?`
		args = append(args, f.ProjectID)
	}
	if f.BeforeID > 0 {
		query += ` AND b.id < ?`
		args = append(args, f.BeforeID)
	}
	query, args = inStatus(query, args, "b.status", f.Status)
	query += ` ORDER BY b.id DESC LIMIT ?`
	args = append(args, listLimit(f.Limit))
	builds := []*Build{}
	if err := db.db.SelectContext(ctx, &builds, db.q(query), args...); err != nil {
		return nil, fmt.Errorf("list builds: %w", err)
	}
	for _, b := range builds {
		b.fixTimes()
	}
	return builds, nil
}

// inStatus adds "AND column IN (…)" for a non-empty status list.
func inStatus(query string, args []any, column string, statuses []string) (string, []any) {
	if len(statuses) == 0 {
		return query, args
	}
	query += ` AND ` + column + ` IN (?` + strings.Repeat(`, ?`, len(statuses)-1) + `)`
	for _, s := range statuses {
		args = append(args, s)
	}
	return query, args
}

// listLimit is the page size of a list: 50 unless asked, at most 1,000.
func listLimit(n int) int {
	if n <= 0 || n > 1000 {
		return 50
	}
	return n
}

// ClaimBuild takes the oldest pending build of a project that has no running build, marks it
// running under owner's lease (until now+ttl), counts the attempt and returns it; nil, nil
// when there is nothing to claim. Safe across processes (FOR UPDATE SKIP LOCKED on
// PostgreSQL, an immediate transaction on SQLite).
func (db *DB) ClaimBuild(ctx context.Context, owner string, ttl time.Duration) (*Build, error) {
	id, err := db.claim(ctx, buildQueue(), owner, ttl, func(*sqlx.Tx, int64, int) error { return nil })
	if err != nil || id == 0 {
		return nil, err
	}
	return db.GetBuild(ctx, id)
}

// RenewBuild extends owner's lease on a running build and reports whether a cancel was asked
// for. ECONFLICT when owner no longer holds the lease (the build was taken over or ended).
func (db *DB) RenewBuild(ctx context.Context, id int64, owner string, ttl time.Duration) (cancel bool, err error) {
	return db.renew(ctx, buildQueue(), id, owner, ttl)
}

// buildEnded lists the statuses a build ends with.
var buildEnded = map[string]bool{BuildSuccess: true, BuildFailed: true, BuildTimeout: true, BuildCanceled: true, BuildDuplicate: true}

func (r *BuildResult) validate() error {
	switch {
	case !buildEnded[r.Status]:
		return Errorf(EINVALID, "status: %q is not how a build ends (success, failed, timeout, canceled or duplicate)", r.Status)
	case r.Status == BuildSuccess && r.Version == nil:
		return Errorf(EINVALID, "version: a successful build needs its version")
	case r.Status == BuildDuplicate && r.VersionID == nil:
		return Errorf(EINVALID, "version: a duplicate build needs the id of the version its commit already has")
	case r.Status != BuildSuccess && len(r.Deploy) > 0:
		return Errorf(EINVALID, "deploy: only a successful build queues deployments")
	}
	if r.Version != nil {
		return r.Version.validate()
	}
	return nil
}

// FinishBuild ends a running build held by owner, in one transaction: it creates the version
// (r.Version), sets the status, error, version and finish time, clears the lease, queues
// r.Deploy, and writes the outbox entry (build.succeeded or build.failed). ECONFLICT when owner
// no longer holds the lease, or when the version name is taken. A deployment of r.Deploy that
// cannot be queued (its environment has no hosts, say) does not fail the build: the reason is
// written to the build's log instead.
func (db *DB) FinishBuild(ctx context.Context, id int64, owner string, r BuildResult) (*Build, error) {
	if err := r.validate(); err != nil {
		return nil, err
	}
	err := db.Transact(ctx, func(tx *sqlx.Tx) error {
		projectID, err := db.holdLease(ctx, tx, buildQueue(), id, owner)
		if err != nil {
			return err
		}
		versionID := r.VersionID
		if r.Version != nil {
			vid, err := db.insertVersion(ctx, tx, projectID, id, r.Version)
			if err != nil {
				return err
			}
			versionID = &vid
		}
		_, err = tx.ExecContext(ctx, db.q(`UPDATE builds SET status = ?, error = ?, version_id = ?, finished_at = ?,
			lease_owner = '', lease_until = NULL WHERE id = ?`), r.Status, truncate(r.Error, 4000), versionID, db.now(), id)
		if err != nil {
			return err
		}
		if len(r.Deploy) > 0 { // validate made sure the build succeeded, so versionID is set
			if err := db.queueAutoDeploys(ctx, tx, projectID, id, *versionID, r.Deploy); err != nil {
				return err
			}
		}
		return db.buildOutbox(ctx, tx, projectID, id, r.Status)
	})
	if err != nil {
		return nil, err
	}
	return db.GetBuild(ctx, id)
}

func (db *DB) buildOutbox(ctx context.Context, tx *sqlx.Tx, projectID, id int64, status string) error {
	switch status {
	case BuildSuccess:
		return db.addOutbox(ctx, tx, OutboxBuildSucceeded, projectID, JobBuild, id)
	case BuildFailed, BuildTimeout:
		return db.addOutbox(ctx, tx, OutboxBuildFailed, projectID, JobBuild, id)
	}
	return nil
}

// queueAutoDeploys queues the deployments a good build asks for. One the user could fix (no
// hosts, a host not in the environment) is skipped with a line in the build's log, and so is
// one to a protected environment the build has no authority for (see autoDeployRefusal), with
// the reason also noted on the build's webhook event.
func (db *DB) queueAutoDeploys(ctx context.Context, tx *sqlx.Tx, projectID, buildID, versionID int64, deploys []NewDeployment) error {
	for _, nd := range deploys {
		nd.ProjectID, nd.VersionID = projectID, versionID
		refusal, err := db.autoDeployRefusal(ctx, tx, buildID, nd.EnvironmentID)
		if err != nil && !IsNotFound(err) {
			return err
		}
		if refusal != "" {
			if err := db.refuseAutoDeploy(ctx, tx, buildID, refusal); err != nil {
				return err
			}
			continue
		}
		if nd.BuildID == nil {
			nd.BuildID = &buildID
		}
		if nd.askedBy, err = db.buildAskedBy(ctx, tx, buildID); err != nil {
			return err
		}
		if nd.TriggeredBy == "" {
			nd.TriggeredBy = fmt.Sprintf("build %d", buildID)
		}
		d, err := db.createDeployment(ctx, tx, nd)
		code := ErrorCode(err)
		if code == EINVALID || code == ENOTFOUND {
			if err := db.addLogLine(ctx, tx, JobBuild, buildID, "", "deployment not queued: "+ErrorMessage(err)); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		text := fmt.Sprintf("queued deployment %d of this version to %s", d.ID, d.Environment)
		if err := db.addLogLine(ctx, tx, JobBuild, buildID, "", text); err != nil {
			return err
		}
	}
	return nil
}

// buildAskedBy is the person who asked for build id (BuildSourceAPI), or nil for a push or a
// person who no longer exists.
func (db *DB) buildAskedBy(ctx context.Context, tx *sqlx.Tx, id int64) (*Actor, error) {
	var who []struct {
		ID   int64  `db:"id"`
		Name string `db:"name"`
	}
	err := tx.SelectContext(ctx, &who, db.q(`SELECT u.id, u.name FROM builds b JOIN users u ON u.id = b.requested_by
		WHERE b.id = ? AND b.source = ?`), id, BuildSourceAPI)
	if err != nil || len(who) == 0 {
		return nil, err
	}
	return &Actor{UserID: who[0].ID, Name: who[0].Name}, nil
}

// CancelBuild cancels a pending build at once (status canceled) or asks a running one to stop
// (cancel_requested; the worker ends it). ECONFLICT for a build that has ended. Audited.
func (db *DB) CancelBuild(ctx context.Context, id int64) (*Build, error) {
	err := db.Transact(ctx, func(tx *sqlx.Tx) error {
		b, err := db.getBuild(ctx, tx, id)
		if err != nil {
			return err
		}
		switch b.Status {
		case BuildPending:
			_, err = tx.ExecContext(ctx, db.q(`UPDATE builds SET status = ?, finished_at = ? WHERE id = ? AND status = ?`),
				BuildCanceled, db.now(), id, BuildPending)
		case BuildRunning:
			_, err = tx.ExecContext(ctx, db.q(`UPDATE builds SET cancel_requested = TRUE WHERE id = ?`), id)
		default:
			return Errorf(ECONFLICT, "build %d has already ended (%s)", id, b.Status)
		}
		if err != nil {
			return err
		}
		if !hasActor(ctx) {
			return nil
		}
		return db.audit(ctx, tx, "build.cancel", buildTarget(b.Project, id), "was "+b.Status)
	})
	if err != nil {
		return nil, err
	}
	return db.GetBuild(ctx, id)
}

// ReleaseBuild hands a running build that lease still holds back to the queue, for another
// worker to claim at once (a process stopping cleanly calls it); a build with a cancel asked
// for ends canceled instead. A build lease no longer holds is left alone: nil.
func (db *DB) ReleaseBuild(ctx context.Context, id int64, lease string) error {
	return db.release(ctx, buildQueue(), id, lease, func(*sqlx.Tx, reapedJob, string) error { return nil })
}

// ReapBuilds ends or requeues running builds whose lease ran out (their worker died): one with
// attempts < maxAttempts goes back to pending (lease and started_at cleared), the others fail
// with WorkerLost (build.failed in the outbox), or end canceled if a cancel had been asked for.
// Each gets a log line saying so. It returns how many it requeued and ended.
func (db *DB) ReapBuilds(ctx context.Context, maxAttempts int) (requeued, failed int, err error) {
	return db.reap(ctx, buildQueue(), maxAttempts, func(tx *sqlx.Tx, j reapedJob, outcome string) error {
		if outcome == reapFailed {
			return db.addOutbox(ctx, tx, OutboxBuildFailed, j.ProjectID, JobBuild, j.ID)
		}
		return nil
	})
}
