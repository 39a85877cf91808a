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
	db.warm(ctx, db.db, eventByKeySQL, insertEventSQL)
	db.warmBuildInsert(ctx)
	number, checked := 0, false
	if nb != nil && db.numbers != nil {
		// A redelivery is answered before it takes a build number.
		if dupID, err = db.eventByKey(ctx, nil, e.DeliveryKey); err != nil || dupID != 0 {
			return dupID, nil, err
		}
		if number, err = db.numberAhead(ctx, nb.ProjectID); err != nil {
			return 0, nil, err
		}
		checked = true
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), storeEventTimeout)
		defer cancel()
	}
	err = db.Transact(ctx, func(tx *sqlx.Tx) error {
		if !checked {
			if dupID, err = db.eventByKey(ctx, tx, e.DeliveryKey); err != nil || dupID != 0 {
				return err
			}
		}
		b, err = db.insertEvent(ctx, tx, e, nb, number)
		return err
	})
	if err != nil && isUniqueViolation(err) && uniqueColumn(err) == "delivery_key" {
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
