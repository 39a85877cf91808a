package store

import (
	"context"
	"fmt"

	"github.com/jmoiron/sqlx"
)

// autoDeployRefusal says why build buildID may not, by itself, queue a deployment to the
// environment envID, or "" when it may. Any good build may go to an unprotected environment
// (any member may deploy there by hand). A protected one takes only a build that came from a
// GitLab push (BuildSourcePush: the push is the authority; the worker has checked that its
// commit is the tip of the pushed branch), or one asked for by an administrator or by a member
// with the production right on the project, as their rights are now, in the transaction that
// queues the deployment.
func (db *DB) autoDeployRefusal(ctx context.Context, tx *sqlx.Tx, buildID, envID int64) (string, error) {
	var env struct {
		Name      string `db:"name"`
		Protected bool   `db:"protected"`
	}
	if err := tx.GetContext(ctx, &env, db.q(`SELECT name, protected FROM environments WHERE id = ?`), envID); err != nil {
		return "", formatError(err, fmt.Sprintf("environment %d", envID))
	}
	if !env.Protected {
		return "", nil
	}
	var b struct {
		ProjectID   int64  `db:"project_id"`
		Source      string `db:"source"`
		RequestedBy *int64 `db:"requested_by"`
	}
	if err := tx.GetContext(ctx, &b, db.q(`SELECT project_id, source, requested_by FROM builds WHERE id = ?`), buildID); err != nil {
		return "", formatError(err, fmt.Sprintf("build %d", buildID))
	}
	switch {
	case b.Source == BuildSourcePush:
		return "", nil
	case b.Source != BuildSourceAPI || b.RequestedBy == nil:
		return fmt.Sprintf("%s is protected, and this build was not started by a push or by a person with the production right; deploy its version by hand", env.Name), nil
	}
	var who struct {
		Name       string `db:"name"`
		Admin      bool   `db:"admin"`
		Production bool   `db:"production"`
	}
	err := tx.GetContext(ctx, &who, db.q(`SELECT u.name, u.admin, COALESCE(m.production, FALSE) AS production FROM users u
		LEFT JOIN project_members m ON m.user_id = u.id AND m.project_id = ? WHERE u.id = ?`), b.ProjectID, *b.RequestedBy)
	if IsNotFound(formatError(err, "user")) {
		return fmt.Sprintf("%s is protected, and the user who asked for this build no longer exists; deploy its version by hand", env.Name), nil
	}
	if err != nil {
		return "", err
	}
	if who.Admin || who.Production {
		return "", nil
	}
	return fmt.Sprintf("%s is protected, and %s, who asked for this build, has no production right on the project; someone who has it can deploy the version", env.Name, who.Name), nil
}

// refuseAutoDeploy writes why a deployment of build buildID was not queued to the build's log
// and to the reason of the webhook event that queued the build, if any.
func (db *DB) refuseAutoDeploy(ctx context.Context, tx *sqlx.Tx, buildID int64, reason string) error {
	text := "deployment not queued: " + reason
	if err := db.addLogLine(ctx, tx, JobBuild, buildID, "", text); err != nil {
		return err
	}
	return db.noteBuildEvent(ctx, tx, buildID, text)
}
