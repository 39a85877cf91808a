package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"
)

const outboxColumns = `id, event, project_id, job_kind, job_id, created_at`

// ListOutbox returns up to limit outbox entries not yet done, oldest first; limit 0 means 100.
func (db *DB) ListOutbox(ctx context.Context, limit int) ([]*OutboxEntry, error) {
	if limit <= 0 {
		limit = 100
	}
	entries := []*OutboxEntry{}
	if err := db.db.SelectContext(ctx, &entries, db.q(`SELECT `+outboxColumns+` FROM outbox WHERE done_at IS NULL ORDER BY id LIMIT ?`), limit); err != nil {
		return nil, fmt.Errorf("list outbox: %w", err)
	}
	for _, e := range entries {
		e.CreatedAt = e.CreatedAt.UTC()
	}
	return entries, nil
}

// DoneOutbox marks an outbox entry handled; ENOTFOUND when there is no such entry.
func (db *DB) DoneOutbox(ctx context.Context, id int64) error {
	res, err := db.db.ExecContext(ctx, db.q(`UPDATE outbox SET done_at = ? WHERE id = ? AND done_at IS NULL`), db.now(), id)
	return mustAffect(res, err, fmt.Sprintf("outbox entry %d", id))
}

// QueueDeliveries turns up to limit outbox entries (0 means 100), oldest first, into one
// pending delivery per enabled channel that chose the entry's event (the project's own channels
// and the global ones), and marks the entries done, in one transaction. Entries other processes
// are turning into deliveries at the same moment are skipped (FOR UPDATE SKIP LOCKED on
// PostgreSQL; SQLite lets one writer in at a time). It returns how many entries it handled.
func (db *DB) QueueDeliveries(ctx context.Context, limit int) (int, error) {
	if limit <= 0 {
		limit = 100
	}
	handled := 0
	err := db.Transact(ctx, func(tx *sqlx.Tx) error {
		query := `SELECT ` + outboxColumns + ` FROM outbox WHERE done_at IS NULL ORDER BY id LIMIT ?`
		if db.dialect == Postgres {
			query += ` FOR UPDATE SKIP LOCKED`
		}
		var entries []*OutboxEntry
		if err := tx.SelectContext(ctx, &entries, db.q(query), limit); err != nil {
			return fmt.Errorf("read outbox: %w", err)
		}
		if len(entries) == 0 {
			return nil
		}
		channels, err := db.selectChannels(ctx, tx, channelQuery+` WHERE c.enabled = ?`, true)
		if err != nil {
			return err
		}
		now := db.now()
		for _, e := range entries {
			if err := db.queueEntry(ctx, tx, e, channels, now); err != nil {
				return err
			}
		}
		handled = len(entries)
		return nil
	})
	return handled, err
}

func (db *DB) queueEntry(ctx context.Context, tx *sqlx.Tx, e *OutboxEntry, channels []*Channel, now time.Time) error {
	for _, ch := range channels {
		if !ch.Wants(e.Event) || (ch.ProjectID != nil && *ch.ProjectID != e.ProjectID) {
			continue
		}
		if _, err := tx.ExecContext(ctx, db.q(`INSERT INTO deliveries (channel_id, project_id, outbox_id, event, job_kind, job_id, status, next_try_at, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`), ch.ID, e.ProjectID, e.ID, e.Event, e.JobKind, e.JobID, DeliveryPending, now, now); err != nil {
			return fmt.Errorf("queue delivery of outbox entry %d to channel %d: %w", e.ID, ch.ID, err)
		}
	}
	if _, err := tx.ExecContext(ctx, db.q(`UPDATE outbox SET done_at = ? WHERE id = ?`), now, e.ID); err != nil {
		return fmt.Errorf("mark outbox entry %d done: %w", e.ID, err)
	}
	return nil
}
