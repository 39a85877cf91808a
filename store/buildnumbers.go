package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/jmoiron/sqlx"
)

// Build numbers: each project counts its builds 1, 2, 3, … in table build_numbers.
//
// On PostgreSQL a build's number is taken before the transaction that stores the build, by a
// statement that commits at once, on a connection whose commits do not wait for their WAL
// flush (synchronous_commit off, see openNumbers). The lock on the project's counter row is
// so held for one statement, not until the push that needs the number is stored: pushes to one
// project commit side by side and share WAL flushes, where they used to commit one after
// another, each waiting for its own flush while it held the project row. No number is ever
// handed out twice, crash or not: a build with number N commits (synchronously) after its
// counter reached N, and flushing that commit flushes the counter's change too; a crash can
// only forget numbers that no stored build has. The price is a gap in the numbers when the
// transaction storing a build fails after taking its number: a database error, or two
// deliveries of one webhook at the very same moment (both take a number, the second is then
// found to be a redelivery and its number is skipped). A redelivery that arrives after the
// first is stored takes no number: the statement that numbers a push first looks for its
// delivery key (numberUnlessDelivered), in the same round trip.
//
// On SQLite writers take turns anyway, so the number is taken inside the transaction that
// stores the build, and is never skipped.

// buildNumberSQL counts one more build of a project and returns its number. A project without
// a counter row gets one; a counter behind the builds table (which only a hand-made row could
// cause) jumps past the highest number in use rather than hand it out again.
const buildNumberSQL = `INSERT INTO build_numbers (project_id, last_number)
	SELECT ?, COALESCE(MAX(number), 0) + 1 FROM builds WHERE project_id = ?
	ON CONFLICT (project_id) DO UPDATE SET last_number = CASE
		WHEN excluded.last_number > build_numbers.last_number THEN excluded.last_number
		ELSE build_numbers.last_number + 1 END
	RETURNING last_number`

// numberUnlessDeliveredSQL is buildNumberSQL that takes no number when an event with the
// delivery key (the third argument; NULL for none) is stored already: a redelivery is told
// apart from a new push in the same round trip that numbers the push.
const numberUnlessDeliveredSQL = `INSERT INTO build_numbers (project_id, last_number)
	SELECT ?, next FROM (SELECT COALESCE(MAX(number), 0) + 1 AS next FROM builds WHERE project_id = ?) AS highest
	WHERE NOT EXISTS (SELECT 1 FROM events WHERE delivery_key = ?)
	ON CONFLICT (project_id) DO UPDATE SET last_number = CASE
		WHEN excluded.last_number > build_numbers.last_number THEN excluded.last_number
		ELSE build_numbers.last_number + 1 END
	RETURNING last_number`

// numberUnlessDelivered returns, on PostgreSQL, the number for the next build of project, taken
// as numberAhead does, or 0 when an event with the delivery key is stored already. ENOTFOUND
// for an unknown project.
func (db *DB) numberUnlessDelivered(ctx context.Context, projectID int64, key *string) (int, error) {
	st, err := db.stmt(ctx, db.numbers, nil, numberUnlessDeliveredSQL)
	if err != nil {
		return 0, err
	}
	var number int
	err = st.GetContext(ctx, &number, projectID, projectID, key)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return 0, nil
	case isForeignKeyViolation(err):
		return 0, Errorf(ENOTFOUND, "project %d not found", projectID)
	case err != nil:
		return 0, fmt.Errorf("number a build of project %d: %w", projectID, err)
	}
	return number, nil
}

// numberAhead returns the number for the next build of project, taken on PostgreSQL in a
// statement that commits at once and without waiting for its WAL flush; on SQLite it returns
// 0, and insertBuild takes the number in its transaction. ENOTFOUND for an unknown project.
func (db *DB) numberAhead(ctx context.Context, projectID int64) (int, error) {
	if db.numbers == nil {
		return 0, nil
	}
	return db.nextBuildNumber(ctx, db.numbers, nil, projectID)
}

// nextBuildNumber counts one more build of project, in tx or else on pool, and returns its
// number; ENOTFOUND for an unknown project.
func (db *DB) nextBuildNumber(ctx context.Context, pool *sqlx.DB, tx *sqlx.Tx, projectID int64) (int, error) {
	st, err := db.stmt(ctx, pool, tx, buildNumberSQL)
	if err != nil {
		return 0, err
	}
	var number int
	err = st.GetContext(ctx, &number, projectID, projectID)
	if isForeignKeyViolation(err) {
		return 0, Errorf(ENOTFOUND, "project %d not found", projectID)
	}
	if err != nil {
		return 0, fmt.Errorf("number a build of project %d: %w", projectID, err)
	}
	return number, nil
}
