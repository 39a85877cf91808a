package store

import (
	"context"
	"fmt"
	"time"
)

// DefaultRetention is how long log lines, webhook events and audit entries are kept unless
// configured otherwise.
const DefaultRetention = 30 * 24 * time.Hour

// purgeChunk is how many rows one DELETE removes, so that a first purge of a large table
// does not hold one huge transaction.
const purgeChunk = 10_000

// PurgeStats counts what PurgeOld deleted.
type PurgeStats struct {
	LogLines     int64 `json:"log_lines"`
	Events       int64 `json:"events"`
	AuditEntries int64 `json:"audit_entries"`
	// LoginAttempts counts login attempts no limit counts any more (see PurgeLoginAttempts).
	LoginAttempts int64 `json:"login_attempts"`
	// Artifacts counts artifacts kept in the database that no version took (their build
	// died after packing) and were removed a day later.
	Artifacts int64 `json:"artifacts"`
}

// PurgeOld deletes log lines, webhook events and audit entries older than age, and artifacts
// kept in the database that no version took within a day. It never
// deletes a line of a job that is pending, queued or running, whatever its age, since a
// running job and its viewers still read it. It fails with EINVALID for an age under one hour
// and returns what it deleted so far with the error of a failed statement.
func (db *DB) PurgeOld(ctx context.Context, age time.Duration) (PurgeStats, error) {
	var st PurgeStats
	if age < time.Hour {
		return st, Errorf(EINVALID, "retention age %s is too short: keep at least one hour", age)
	}
	cutoff := db.now().Add(-age)
	row := "rowid"
	if db.dialect == Postgres {
		row = "ctid"
	}
	var err error
	st.LogLines, err = db.purgeChunked(ctx, `DELETE FROM log_lines WHERE `+row+` IN (SELECT `+row+` FROM log_lines
		WHERE at < ?
		AND NOT (job_kind = 'build' AND job_id IN (SELECT id FROM builds WHERE status IN ('pending', 'running')))
		AND NOT (job_kind = 'deployment' AND job_id IN (SELECT id FROM deployments WHERE status IN ('queued', 'running')))
		AND NOT (job_kind = 'run' AND job_id IN (SELECT id FROM job_runs WHERE status IN ('queued', 'running', 'waiting', 'awaiting_approval')))
		LIMIT ?)`, cutoff)
	if err != nil {
		return st, fmt.Errorf("purge log lines: %w", err)
	}
	st.Events, err = db.purgeChunked(ctx, `DELETE FROM events WHERE id IN (SELECT id FROM events WHERE received_at < ? LIMIT ?)`, cutoff)
	if err != nil {
		return st, fmt.Errorf("purge webhook events: %w", err)
	}
	st.AuditEntries, err = db.purgeChunked(ctx, `DELETE FROM audit_entries WHERE id IN (SELECT id FROM audit_entries WHERE at < ? LIMIT ?)`, cutoff)
	if err != nil {
		return st, fmt.Errorf("purge audit entries: %w", err)
	}
	if st.LoginAttempts, err = db.PurgeLoginAttempts(ctx, DefaultLoginLimits); err != nil {
		return st, err
	}
	if st.Artifacts, err = db.sweepOrphanArtifacts(ctx); err != nil {
		return st, err
	}
	return st, nil
}

// purgeChunked runs a DELETE taking (cutoff, limit) until it deletes fewer than purgeChunk rows.
func (db *DB) purgeChunked(ctx context.Context, query string, cutoff time.Time) (int64, error) {
	var total int64
	for {
		res, err := db.db.ExecContext(ctx, db.q(query), cutoff, purgeChunk)
		if err != nil {
			return total, err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return total, err
		}
		total += n
		if n < purgeChunk {
			return total, nil
		}
	}
}

// PurgeEvery runs PurgeOld with age once at start and then every period until ctx ends,
// passing each result to report (which may be nil). It is meant to run in one goroutine per
// process; several processes purging the same database do no harm.
func (db *DB) PurgeEvery(ctx context.Context, age, period time.Duration, report func(PurgeStats, error)) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		st, err := db.PurgeOld(ctx, age)
		if report != nil && ctx.Err() == nil {
			report(st, err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
