package store

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
)

// Delivery statuses.
const (
	DeliveryPending = "pending" // waiting for its first or next try
	DeliverySent    = "sent"    // the platform accepted it (alone, or as a digest standing for others)
	DeliveryFailed  = "failed"  // given up: the error says why
	DeliveryMerged  = "merged"  // went out inside the digest of delivery MergedInto
)

// Delivery is one notice for one channel: queued from an outbox entry, sent by the notify worker.
type Delivery struct {
	ID          int64     `db:"id" json:"id"`
	ChannelID   int64     `db:"channel_id" json:"channel_id"`
	ChannelKind string    `db:"channel_kind" json:"channel_kind"`
	ProjectID   *int64    `db:"project_id" json:"-"`
	Project     string    `db:"project" json:"project"`
	OutboxID    *int64    `db:"outbox_id" json:"-"`
	Event       string    `db:"event" json:"event"`
	JobKind     string    `db:"job_kind" json:"job_kind"`
	JobID       int64     `db:"job_id" json:"job_id"`
	Status      string    `db:"status" json:"status"`
	Attempts    int       `db:"attempts" json:"attempts"`
	NextTryAt   time.Time `db:"next_try_at" json:"next_try_at"`
	LastError   string    `db:"last_error" json:"error"` // why the last try failed, without the server's own words
	// LastAnswer is the whole failure with what the server said (the start of its body, its
	// SMTP reply), secrets redacted. Only administrators are shown it: through a channel URL
	// anyone allowed to set one could read whatever ferry reaches.
	LastAnswer  string     `db:"last_answer" json:"answer,omitempty"`
	Title       string     `db:"title" json:"title"`
	Message     string     `db:"message" json:"-"` // the notice as the worker built it (JSON); "" until then
	MergedInto  *int64     `db:"merged_into" json:"merged_into,omitempty"`
	MergedCount int        `db:"merged_count" json:"merged_count,omitempty"` // others this digest stood for
	CreatedAt   time.Time  `db:"created_at" json:"created_at"`
	SentAt      *time.Time `db:"sent_at" json:"sent_at,omitempty"`
}

// DeliveryOutcome is what came of one send.
type DeliveryOutcome struct {
	Sent  bool
	Error string // why not, without the server's own words (shown to everyone)
	// Answer is why not with what the server said (shown to administrators only).
	Answer string
	// RetryAt is when to try again a send that failed in a way worth retrying; nil gives up.
	RetryAt *time.Time
}

// DeliveryFilter selects deliveries, newest first; zero fields select all.
type DeliveryFilter struct {
	ProjectID int64
	ChannelID int64
	Status    string
	Limit     int // 0 means 50, at most 500
}

const deliveryQuery = `SELECT d.id, d.channel_id, c.kind AS channel_kind, d.project_id, COALESCE(p.name, '') AS project,
	d.outbox_id, d.event, d.job_kind, d.job_id, d.status, d.attempts, d.next_try_at, d.last_error, d.last_answer, d.title, d.message,
	d.merged_into, d.merged_count, d.created_at, d.sent_at
	FROM deliveries d JOIN channels c ON c.id = d.channel_id LEFT JOIN projects p ON p.id = d.project_id`

func (db *DB) selectDeliveries(ctx context.Context, q queryer, query string, args ...any) ([]*Delivery, error) {
	out := []*Delivery{}
	if err := q.SelectContext(ctx, &out, db.q(query), args...); err != nil {
		return nil, fmt.Errorf("list deliveries: %w", err)
	}
	for _, d := range out {
		d.NextTryAt, d.CreatedAt = d.NextTryAt.UTC(), d.CreatedAt.UTC()
		if d.SentAt != nil {
			t := d.SentAt.UTC()
			d.SentAt = &t
		}
	}
	return out, nil
}

// ListDeliveries returns the deliveries f selects, newest first.
func (db *DB) ListDeliveries(ctx context.Context, f DeliveryFilter) ([]*Delivery, error) {
	if f.Limit <= 0 || f.Limit > 500 {
		f.Limit = 50
	}
	var where []string
	var args []any
	for _, c := range []struct {
		on    bool
		cond  string
		value any
	}{{f.ProjectID != 0, "d.project_id = ?", f.ProjectID}, {f.ChannelID != 0, "d.channel_id = ?", f.ChannelID}, {f.Status != "", "d.status = ?", f.Status}} {
		if c.on {
			where, args = append(where, c.cond), append(args, c.value)
		}
	}
	query := deliveryQuery
	if len(where) > 0 {
		query += ` WHERE ` + strings.Join(where, " AND ")
	}
	return db.selectDeliveries(ctx, db.db, query+` ORDER BY d.id DESC LIMIT ?`, append(args, f.Limit)...)
}

// GetDelivery returns one delivery, or ENOTFOUND.
func (db *DB) GetDelivery(ctx context.Context, id int64) (*Delivery, error) {
	ds, err := db.selectDeliveries(ctx, db.db, deliveryQuery+` WHERE d.id = ?`, id)
	if err != nil {
		return nil, err
	}
	if len(ds) == 0 {
		return nil, Errorf(ENOTFOUND, "delivery %d not found", id)
	}
	return ds[0], nil
}

// ClaimChannel makes owner the only sender of one channel that has deliveries due, until
// now+ttl, and returns the channel with up to limit (0 means 100) of its due deliveries,
// oldest first. It returns nil, nil, nil when no channel is free with work due. A channel
// paused by its platform (see ReleaseChannel) is not claimed before the pause ends. Safe across
// processes: FOR UPDATE SKIP LOCKED on PostgreSQL, an immediate transaction on SQLite.
func (db *DB) ClaimChannel(ctx context.Context, owner string, ttl time.Duration, limit int) (*Channel, []*Delivery, error) {
	if limit <= 0 {
		limit = 100
	}
	var ch *Channel
	var due []*Delivery
	err := db.Transact(ctx, func(tx *sqlx.Tx) error {
		now, err := db.clock(ctx, tx)
		if err != nil {
			return err
		}
		query := `SELECT c.id FROM channels c WHERE (c.lease_until IS NULL OR c.lease_until < ?)
			AND (c.paused_until IS NULL OR c.paused_until <= ?)
			AND EXISTS (SELECT 1 FROM deliveries d WHERE d.channel_id = c.id AND d.status = ? AND d.next_try_at <= ?)
			ORDER BY c.id LIMIT 1`
		if db.dialect == Postgres {
			query += ` FOR UPDATE OF c SKIP LOCKED`
		}
		var id int64
		err = tx.GetContext(ctx, &id, db.q(query), now, now, DeliveryPending, now)
		if err != nil {
			return ignoreNoRows(err)
		}
		if _, err := tx.ExecContext(ctx, db.q(`UPDATE channels SET lease_owner = ?, lease_until = ? WHERE id = ?`), owner, now.Add(ttl), id); err != nil {
			return err
		}
		if ch, err = db.getChannel(ctx, tx, id); err != nil {
			return err
		}
		due, err = db.selectDeliveries(ctx, tx, deliveryQuery+` WHERE d.channel_id = ? AND d.status = ? AND d.next_try_at <= ? ORDER BY d.id LIMIT ?`,
			id, DeliveryPending, now, limit)
		return err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("claim a channel with deliveries due: %w", err)
	}
	return ch, due, nil
}

func ignoreNoRows(err error) error {
	if IsNotFound(formatError(err, "")) {
		return nil
	}
	return err
}

// RenewChannel extends owner's lease on a channel to now+ttl; ECONFLICT when owner no longer
// holds it.
func (db *DB) RenewChannel(ctx context.Context, id int64, owner string, ttl time.Duration) error {
	now, err := db.clock(ctx, db.db)
	if err != nil {
		return err
	}
	res, err := db.db.ExecContext(ctx, db.q(`UPDATE channels SET lease_until = ? WHERE id = ? AND lease_owner = ?`), now.Add(ttl), id, owner)
	if err != nil {
		return fmt.Errorf("renew lease on channel %d: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return Errorf(ECONFLICT, "channel %d: the lease of %s ran out", id, owner)
	}
	return nil
}

// ReleaseChannel ends owner's lease on a channel. A pausedUntil in the future keeps every
// process from sending to the channel before then (the platform asked for a pause).
func (db *DB) ReleaseChannel(ctx context.Context, id int64, owner string, pausedUntil time.Time) error {
	var paused *time.Time
	if !pausedUntil.IsZero() {
		t := pausedUntil.UTC().Truncate(time.Microsecond)
		paused = &t
	}
	_, err := db.db.ExecContext(ctx, db.q(`UPDATE channels SET lease_owner = '', lease_until = NULL, paused_until = COALESCE(?, paused_until)
		WHERE id = ? AND lease_owner = ?`), paused, id, owner)
	if err != nil {
		return fmt.Errorf("release channel %d: %w", id, err)
	}
	return nil
}

// SetDeliveryMessage stores the notice the worker built for a delivery (title and JSON), so
// that every try sends the same text.
func (db *DB) SetDeliveryMessage(ctx context.Context, id int64, title, message string) error {
	res, err := db.db.ExecContext(ctx, db.q(`UPDATE deliveries SET title = ?, message = ? WHERE id = ?`), truncate(title, 500), message, id)
	return mustAffect(res, err, fmt.Sprintf("delivery %d", id))
}

// RecordDelivery records the outcome of one send that carried ids: one delivery, or the
// deliveries merged in one digest, of which ids[0] stands for the others. Sent: ids[0] becomes
// sent and the others merged into it. Not sent: each counts a try and stays pending until
// o.RetryAt, or fails when RetryAt is nil.
func (db *DB) RecordDelivery(ctx context.Context, ids []int64, o DeliveryOutcome) error {
	if len(ids) == 0 {
		return nil
	}
	return db.Transact(ctx, func(tx *sqlx.Tx) error { return db.recordDelivery(ctx, tx, ids, o) })
}

// RecordChannelDelivery is RecordDelivery fenced by the lease on the deliveries' channel, as a
// sender writes it: ECONFLICT, and nothing recorded, when lease no longer holds the channel
// (it ran out and another sender claimed the channel; that one records the deliveries).
func (db *DB) RecordChannelDelivery(ctx context.Context, channelID int64, lease string, ids []int64, o DeliveryOutcome) error {
	if len(ids) == 0 {
		return nil
	}
	return db.Transact(ctx, func(tx *sqlx.Tx) error {
		if err := db.holdChannel(ctx, tx, channelID, lease); err != nil {
			return err
		}
		return db.recordDelivery(ctx, tx, ids, o)
	})
}

// PostponeChannelDeliveries is PostponeDeliveries fenced by the lease on the channel, as
// RecordChannelDelivery is.
func (db *DB) PostponeChannelDeliveries(ctx context.Context, channelID int64, lease string, ids []int64, at time.Time) error {
	return db.Transact(ctx, func(tx *sqlx.Tx) error {
		if err := db.holdChannel(ctx, tx, channelID, lease); err != nil {
			return err
		}
		return db.postponeDeliveries(ctx, tx, ids, at)
	})
}

// holdChannel checks, inside tx, that lease holds the channel, and locks its row on PostgreSQL.
func (db *DB) holdChannel(ctx context.Context, tx *sqlx.Tx, channelID int64, lease string) error {
	query := `SELECT id FROM channels WHERE id = ? AND lease_owner = ?`
	if db.dialect == Postgres {
		query += ` FOR UPDATE`
	}
	var id int64
	err := tx.GetContext(ctx, &id, db.q(query), channelID, lease)
	if err != nil && ignoreNoRows(err) == nil {
		return Errorf(ECONFLICT, "channel %d: the lease %s ran out and another sender holds the channel", channelID, lease)
	}
	return err
}

func (db *DB) recordDelivery(ctx context.Context, tx *sqlx.Tx, ids []int64, o DeliveryOutcome) error {
	now := db.now()
	if o.Sent {
		if _, err := tx.ExecContext(ctx, db.q(`UPDATE deliveries SET status = ?, attempts = attempts + 1, sent_at = ?, last_error = '', last_answer = '', merged_count = ? WHERE id = ?`),
			DeliverySent, now, len(ids)-1, ids[0]); err != nil {
			return err
		}
		for _, id := range ids[1:] {
			if _, err := tx.ExecContext(ctx, db.q(`UPDATE deliveries SET status = ?, sent_at = ?, last_error = '', last_answer = '', merged_into = ? WHERE id = ?`),
				DeliveryMerged, now, ids[0], id); err != nil {
				return err
			}
		}
		return nil
	}
	status, next := DeliveryFailed, now
	if o.RetryAt != nil {
		status, next = DeliveryPending, o.RetryAt.UTC().Truncate(time.Microsecond)
	}
	for _, id := range ids {
		if _, err := tx.ExecContext(ctx, db.q(`UPDATE deliveries SET status = ?, attempts = attempts + 1, next_try_at = ?, last_error = ?, last_answer = ? WHERE id = ?`),
			status, next, truncate(o.Error, 2000), truncate(o.Answer, 2000), id); err != nil {
			return err
		}
	}
	return nil
}

// PostponeDeliveries moves pending deliveries to at without counting a try (they waited for a
// rate limit).
func (db *DB) PostponeDeliveries(ctx context.Context, ids []int64, at time.Time) error {
	return db.Transact(ctx, func(tx *sqlx.Tx) error { return db.postponeDeliveries(ctx, tx, ids, at) })
}

func (db *DB) postponeDeliveries(ctx context.Context, tx *sqlx.Tx, ids []int64, at time.Time) error {
	at = at.UTC().Truncate(time.Microsecond)
	for _, id := range ids {
		if _, err := tx.ExecContext(ctx, db.q(`UPDATE deliveries SET next_try_at = ? WHERE id = ? AND status = ?`), at, id, DeliveryPending); err != nil {
			return fmt.Errorf("postpone delivery %d: %w", id, err)
		}
	}
	return nil
}

// SentSince returns when the messages a channel's platform accepted after since were sent,
// oldest first: one per message posted (a digest counts once). The worker counts a rate limit
// with it, the same in every process.
func (db *DB) SentSince(ctx context.Context, channelID int64, since time.Time) ([]time.Time, error) {
	times := []time.Time{}
	err := db.db.SelectContext(ctx, &times, db.q(`SELECT sent_at FROM deliveries WHERE channel_id = ? AND status = ? AND sent_at > ? ORDER BY sent_at`),
		channelID, DeliverySent, since.UTC())
	if err != nil {
		return nil, fmt.Errorf("sends of channel %d: %w", channelID, err)
	}
	for i := range times {
		times[i] = times[i].UTC()
	}
	return times, nil
}

// LogTail returns the last n lines of a job's log (of one host's lines when host is not ""), in
// order. It finds where they start with one query that walks the log's index backwards, then
// reads them with ReadLog.
func (db *DB) LogTail(ctx context.Context, kind string, jobID int64, host string, n int) ([]LogLine, error) {
	query := `SELECT seq FROM log_lines WHERE job_kind = ? AND job_id = ?`
	args := []any{kind, jobID}
	if host != "" {
		query += ` AND host = ?`
		args = append(args, host)
	}
	var seqs []int64
	if err := db.db.SelectContext(ctx, &seqs, db.q(query+` ORDER BY seq DESC LIMIT ?`), append(args, n)...); err != nil {
		return nil, fmt.Errorf("find the end of %s %d log: %w", kind, jobID, err)
	}
	if len(seqs) == 0 {
		return []LogLine{}, nil
	}
	return db.ReadLog(ctx, kind, jobID, seqs[len(seqs)-1]-1, host, n)
}
