package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"
)

const eventColumns = `e.id, e.project_id, COALESCE(p.name, '') AS project, e.delivery_key, e.kind, e.ref, e.sha,
	e.author, e.message, e.decision, e.reason, e.build_id, e.received_at`

const eventFrom = ` FROM events e LEFT JOIN projects p ON p.id = e.project_id`

func (e *Event) validate() error {
	if e.Kind == "" {
		return Errorf(EINVALID, "kind: required (push or tag_push)")
	}
	if e.DeliveryKey != nil && (*e.DeliveryKey == "" || len(*e.DeliveryKey) > 200) {
		return Errorf(EINVALID, "delivery key: must be 1 to 200 characters")
	}
	e.Kind = truncate(e.Kind, 50)
	e.Ref = truncate(e.Ref, 255)
	e.SHA = truncate(e.SHA, 64)
	e.Author = truncate(e.Author, 200)
	e.Message = truncate(e.Message, 4000)
	e.Reason = truncate(e.Reason, 1000)
	return nil
}

// RecordEvent stores a webhook delivery and, when nb is not nil, its pending build (of source
// BuildSourcePush), in one transaction. When e.DeliveryKey is set and a delivery with that key
// exists already, it creates nothing and returns the existing event (with its build, if any)
// and dup = true; this holds also when two deliveries with one key arrive at once. On success
// it returns e with its ID, BuildID and Project set. An event of no known project has
// ProjectID nil.
//
// Deliveries to one project are stored side by side: nothing is locked for the length of the
// transaction (buildnumbers.go says how builds get their numbers). Once a build number is
// taken, the event is stored even if ctx is canceled, so that a sender that hung up costs no
// number; its redelivery is then answered as a duplicate.
func (db *DB) RecordEvent(ctx context.Context, e *Event, nb *NewBuild) (ev *Event, b *Build, dup bool, err error) {
	if err := e.validate(); err != nil {
		return nil, nil, false, err
	}
	if nb != nil {
		if err := nb.validate(); err != nil {
			return nil, nil, false, err
		}
		e.ProjectID, e.Decision = &nb.ProjectID, EventBuild
	}
	if e.Decision == "" {
		e.Decision = EventSkip
	}
	if e.ReceivedAt.IsZero() {
		e.ReceivedAt = db.now()
	}
	e.ReceivedAt = e.ReceivedAt.UTC().Truncate(time.Microsecond) // as it reads back
	dupID, b, err := db.storeEvent(ctx, e, nb)
	if err != nil {
		return nil, nil, false, fmt.Errorf("record %s event: %w", e.Kind, err)
	}
	if dupID != 0 {
		ev, b, err := db.eventWithBuild(ctx, dupID)
		return ev, b, true, err
	}
	return e, b, false, nil
}

// storeEvent stores e and nb and returns the build, or returns the id of the event stored
// first under e's delivery key.
func (db *DB) storeEvent(ctx context.Context, e *Event, nb *NewBuild) (dupID int64, b *Build, err error) {
	if nb != nil && db.numbers != nil {
		return db.storePush(ctx, e, nb)
	}
	db.warm(ctx, db.db, eventByKeySQL, insertEventSQL)
	db.warmBuildInsert(ctx)
	err = db.Transact(ctx, func(tx *sqlx.Tx) error {
		if dupID, err = db.eventByKey(ctx, tx, e.DeliveryKey); err != nil || dupID != 0 {
			return err
		}
		b, err = db.insertEvent(ctx, tx, e, nb, 0)
		return err
	})
	if isDeliveryKeyTaken(err) {
		// A delivery with the same key committed after our check; the transaction is void,
		// so read the winner outside it.
		dupID, err = db.eventByKey(ctx, nil, e.DeliveryKey)
		return dupID, nil, err
	}
	if err != nil || dupID != 0 {
		return dupID, nil, err
	}
	return 0, b, nil
}

// storePush stores, on PostgreSQL, a delivery that queues a build, in two statements that each
// are one round trip: the first takes the build's number unless the delivery was stored
// before (buildnumbers.go), the second stores the build, the event and the audit entry and
// commits, waiting for its WAL flush as every commit on the main pool does. No transaction
// is held open across round trips, and nothing that another push needs is locked while the
// commit is flushed (only a second delivery of the same event waits, on the unique key).
func (db *DB) storePush(ctx context.Context, e *Event, nb *NewBuild) (dupID int64, b *Build, err error) {
	number, err := db.numberUnlessDelivered(ctx, nb.ProjectID, e.DeliveryKey)
	if err != nil || number == 0 {
		if err == nil {
			dupID, err = db.deliveredBefore(ctx, e.DeliveryKey)
		}
		return dupID, nil, err
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeEventTimeout)
	defer cancel()
	b, err = db.insertPush(ctx, e, nb, number)
	if isDeliveryKeyTaken(err) {
		// The same delivery, arriving at the same moment, was stored first: its number is
		// skipped.
		dupID, err = db.deliveredBefore(ctx, e.DeliveryKey)
		return dupID, nil, err
	}
	return 0, b, err
}

// deliveredBefore returns the id of the event stored under key, which must exist.
func (db *DB) deliveredBefore(ctx context.Context, key *string) (int64, error) {
	id, err := db.eventByKey(ctx, nil, key)
	if err == nil && id == 0 {
		err = fmt.Errorf("delivery %q was stored before but is gone", *key)
	}
	return id, err
}

func isDeliveryKeyTaken(err error) bool {
	return isUniqueViolation(err) && uniqueColumn(err) == "delivery_key"
}

// insertPushSQL stores a pushed build and its event in one statement (PostgreSQL only), and
// answers the event's id, the build's id and the project's name; insertPushAuditedSQL also
// records the build in the audit log, as insertBuild does when the context has an actor.
const (
	insertPushSQL = `WITH b AS (` + insertPushBuildSQL + `), e AS (` + insertPushEventSQL + `)
	SELECT e.id, b.id, b.name FROM e, b`
	insertPushAuditedSQL = `WITH b AS (` + insertPushBuildSQL + `), e AS (` + insertPushEventSQL + `), a AS (
	INSERT INTO audit_entries (at, user_id, user_name, action, target, detail, remote_addr)
		SELECT ?, ?, ?, 'build.create', 'project/' || b.name || '/build/' || b.id, ?, ? FROM b)
	SELECT e.id, b.id, b.name FROM e, b`
	insertPushBuildSQL = `INSERT INTO builds (project_id, number, status, ref, branch, tag, sha, commit_title,
	commit_author, commit_url, triggered_by, queued_at, source, requested_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
	RETURNING id, project_id, (SELECT name FROM projects WHERE id = project_id) AS name`
	insertPushEventSQL = `INSERT INTO events (project_id, delivery_key, kind, ref, sha, author, message,
	decision, reason, build_id, received_at) SELECT b.project_id, ?, ?, ?, ?, ?, ?, ?, ?, b.id, ? FROM b
	RETURNING id`
)

// insertPush stores e and its build nb, numbered number, and commits; see insertPushSQL.
func (db *DB) insertPush(ctx context.Context, e *Event, nb *NewBuild, number int) (*Build, error) {
	b := &Build{ProjectID: nb.ProjectID, Number: number, Status: BuildPending, Ref: nb.Ref, Branch: nb.Branch, Tag: nb.Tag,
		SHA: nb.SHA, CommitTitle: nb.CommitTitle, CommitAuthor: nb.CommitAuthor, CommitURL: nb.CommitURL,
		TriggeredBy: nb.TriggeredBy, QueuedAt: db.now(), Source: BuildSourcePush}
	args := []any{b.ProjectID, b.Number, b.Status, b.Ref, b.Branch, b.Tag, b.SHA, b.CommitTitle, b.CommitAuthor,
		b.CommitURL, b.TriggeredBy, b.QueuedAt, b.Source, b.RequestedByID,
		e.DeliveryKey, e.Kind, e.Ref, e.SHA, e.Author, e.Message, e.Decision, e.Reason, e.ReceivedAt}
	query := insertPushSQL
	if hasActor(ctx) {
		a := ActorFrom(ctx)
		var uid *int64
		if a.UserID != 0 {
			uid = &a.UserID
		}
		detail := fmt.Sprintf("build #%d of %s at %s", number, nb.Ref, nb.SHA)
		args = append(args, db.now(), uid, a.Name, truncate(detail, 2000), a.RemoteAddr)
		query = insertPushAuditedSQL
	}
	st, err := db.stmt(ctx, db.db, nil, query)
	if err != nil {
		return nil, err
	}
	if err := st.QueryRowxContext(ctx, args...).Scan(&e.ID, &b.ID, &b.Project); err != nil {
		if isForeignKeyViolation(err) {
			return nil, Errorf(ENOTFOUND, "project %d not found", nb.ProjectID)
		}
		return nil, fmt.Errorf("queue build of project %d: %w", nb.ProjectID, err)
	}
	e.BuildID, e.Project = &b.ID, b.Project
	return b, nil
}

// storeEventTimeout bounds storing an event whose sender may have hung up.
const storeEventTimeout = 30 * time.Second

const eventByKeySQL = `SELECT id FROM events WHERE delivery_key = ?`

// eventByKey returns the id of the event stored under key, in tx or else on the pool; 0 when
// there is none or key is nil.
func (db *DB) eventByKey(ctx context.Context, tx *sqlx.Tx, key *string) (int64, error) {
	if key == nil {
		return 0, nil
	}
	st, err := db.stmt(ctx, db.db, tx, eventByKeySQL)
	if err != nil {
		return 0, err
	}
	var id int64
	err = st.GetContext(ctx, &id, *key)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return id, err
}

const insertEventSQL = `INSERT INTO events (project_id, delivery_key, kind, ref, sha, author, message,
	decision, reason, build_id, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
	RETURNING id, (SELECT name FROM projects WHERE id = project_id)`

// insertEvent stores e, and nb (numbered number, see insertBuild) when it is not nil; it sets
// e's ID, BuildID and Project and returns the build.
func (db *DB) insertEvent(ctx context.Context, tx *sqlx.Tx, e *Event, nb *NewBuild, number int) (*Build, error) {
	var b *Build
	if nb != nil {
		var err error
		if b, err = db.insertBuild(ctx, tx, *nb, BuildSourcePush, number); err != nil {
			return nil, err
		}
		e.BuildID = &b.ID
	}
	insert, err := db.stmt(ctx, db.db, tx, insertEventSQL)
	if err != nil {
		return nil, err
	}
	var project *string
	err = insert.QueryRowxContext(ctx,
		e.ProjectID, e.DeliveryKey, e.Kind, e.Ref, e.SHA, e.Author, e.Message, e.Decision, e.Reason, e.BuildID, e.ReceivedAt).
		Scan(&e.ID, &project)
	if err != nil {
		return nil, err
	}
	e.Project = ""
	if project != nil {
		e.Project = *project
	}
	return b, nil
}

func (db *DB) eventWithBuild(ctx context.Context, id int64) (*Event, *Build, error) {
	var e Event
	if err := db.db.GetContext(ctx, &e, db.q(`SELECT `+eventColumns+eventFrom+` WHERE e.id = ?`), id); err != nil {
		return nil, nil, formatError(err, fmt.Sprintf("event %d", id))
	}
	e.ReceivedAt = e.ReceivedAt.UTC()
	if e.BuildID == nil {
		return &e, nil, nil
	}
	b, err := db.GetBuild(ctx, *e.BuildID)
	if err != nil {
		return nil, nil, err
	}
	return &e, b, nil
}

// ListEvents lists a project's webhook events, newest first; limit 0 means 50.
func (db *DB) ListEvents(ctx context.Context, projectID int64, limit int) ([]*Event, error) {
	events := []*Event{}
	err := db.db.SelectContext(ctx, &events, db.q(`SELECT `+eventColumns+eventFrom+` WHERE e.project_id = ?
		ORDER BY e.id DESC LIMIT ?`), projectID, listLimit(limit))
	if err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	for _, e := range events {
		e.ReceivedAt = e.ReceivedAt.UTC()
	}
	return events, nil
}

// NoteBuildEvent adds note to the reason of the webhook event that queued build buildID, so
// that the event list says what became of the push (such as why it deployed nothing). A
// build no event queued (one asked for by hand) is left alone.
func (db *DB) NoteBuildEvent(ctx context.Context, buildID int64, note string) error {
	return db.Transact(ctx, func(tx *sqlx.Tx) error { return db.noteBuildEvent(ctx, tx, buildID, note) })
}

func (db *DB) noteBuildEvent(ctx context.Context, tx *sqlx.Tx, buildID int64, note string) error {
	var events []struct {
		ID     int64  `db:"id"`
		Reason string `db:"reason"`
	}
	if err := tx.SelectContext(ctx, &events, db.q(`SELECT id, reason FROM events WHERE build_id = ?`), buildID); err != nil {
		return fmt.Errorf("read the event of build %d: %w", buildID, err)
	}
	for _, e := range events {
		reason := note
		if e.Reason != "" {
			reason = e.Reason + "; " + note
		}
		if _, err := tx.ExecContext(ctx, db.q(`UPDATE events SET reason = ? WHERE id = ?`), truncate(reason, 2000), e.ID); err != nil {
			return fmt.Errorf("note on the event of build %d: %w", buildID, err)
		}
	}
	return nil
}
