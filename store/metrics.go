package store

import (
	"context"
	"fmt"
	"time"
)

// This file reads what monitoring reports, at the moment it asks: counts by status, the
// queues, durations and lease takeovers. It reads the tables every process shares, so any
// ferry process reports the whole installation, and no worker has to count anything.

// Count is the number of rows with one combination of labels.
type Count struct {
	Project     string `db:"project"`
	Environment string `db:"environment"`
	Status      string `db:"status"` // or decision, or delivery status
	Kind        string `db:"kind"`   // a channel's kind, for deliveries
	N           int64  `db:"n"`
}

// Timing is how long one finished job ran, from its start to its end.
type Timing struct {
	ID          int64
	Project     string
	Environment string
	Status      string
	Seconds     float64
}

// Queue is one kind of job waiting: how many wait, how many run, and since when the oldest waits.
type Queue struct {
	Kind    string // build, deployment or notice
	Waiting int64
	Running int64
	// Oldest is when the job that has waited longest was queued; zero when none waits.
	Oldest time.Time
}

// Stats is a snapshot of the installation for monitoring.
type Stats struct {
	Webhooks            []Count // Project ("" for none matched), Status = decision
	Builds              []Count // Project, Status
	Deployments         []Count // Project, Environment, Status
	Deliveries          []Count // Kind = channel kind, Status
	Queues              []Queue
	BuildTakeovers      int64 // claims of a build after another process's lease ran out
	DeploymentTakeovers int64
	// LogViewers is how many live log subscriptions this process serves.
	LogViewers int
}

// ReadStats returns the snapshot; it fails only when the database does.
func (db *DB) ReadStats(ctx context.Context) (*Stats, error) {
	st := &Stats{LogViewers: db.logs.count()}
	counts := []struct {
		into  *[]Count
		query string
	}{
		{&st.Webhooks, `SELECT COALESCE(p.name, '') AS project, e.decision AS status, COUNT(*) AS n
			FROM events e LEFT JOIN projects p ON p.id = e.project_id GROUP BY p.name, e.decision`},
		// Counted by id first and named after: grouping the joined rows by name is several
		// times slower on SQLite.
		{&st.Builds, `SELECT p.name AS project, c.status, c.n
			FROM (SELECT project_id, status, COUNT(*) AS n FROM builds GROUP BY project_id, status) c
			JOIN projects p ON p.id = c.project_id`},
		{&st.Deployments, `SELECT p.name AS project, e.name AS environment, c.status, c.n
			FROM (SELECT environment_id, status, COUNT(*) AS n FROM deployments GROUP BY environment_id, status) c
			JOIN environments e ON e.id = c.environment_id JOIN projects p ON p.id = e.project_id`},
		{&st.Deliveries, `SELECT c.kind, d.status, COUNT(*) AS n
			FROM deliveries d JOIN channels c ON c.id = d.channel_id GROUP BY c.kind, d.status`},
	}
	for _, c := range counts {
		if err := db.db.SelectContext(ctx, c.into, c.query); err != nil {
			return nil, fmt.Errorf("read stats: %w", err)
		}
	}
	var err error
	if st.Queues, err = db.queues(ctx); err != nil {
		return nil, err
	}
	// attempts counts claims; every claim after the first took the job over from a process
	// whose lease ran out.
	for table, into := range map[string]*int64{"builds": &st.BuildTakeovers, "deployments": &st.DeploymentTakeovers} {
		if err := db.db.GetContext(ctx, into, `SELECT COALESCE(SUM(attempts - 1), 0) FROM `+table+` WHERE attempts > 1`); err != nil {
			return nil, fmt.Errorf("read stats: count takeovers of %s: %w", table, err)
		}
	}
	return st, nil
}

// ReadTimings returns how long the finished builds (kind JobBuild) or deployments
// (JobDeployment) with an id of at least fromID ran, and the smallest such id of a job that has
// not finished yet (0 when every one has). A finished job never changes, so a caller that
// keeps what it read may ask next time from that id on: scrapes then read only recent jobs.
func (db *DB) ReadTimings(ctx context.Context, kind string, fromID int64) ([]Timing, int64, error) {
	query := `SELECT b.id, p.name, '', b.status, b.started_at, b.finished_at
		FROM builds b JOIN projects p ON p.id = b.project_id
		WHERE b.id >= ? AND b.started_at IS NOT NULL AND b.finished_at IS NOT NULL`
	open := `SELECT id FROM builds WHERE id >= ? AND finished_at IS NULL ORDER BY id LIMIT 1`
	if kind == JobDeployment {
		query = `SELECT d.id, p.name, e.name, d.status, d.started_at, d.finished_at
			FROM deployments d JOIN projects p ON p.id = d.project_id JOIN environments e ON e.id = d.environment_id
			WHERE d.id >= ? AND d.started_at IS NOT NULL AND d.finished_at IS NOT NULL`
		open = `SELECT id FROM deployments WHERE id >= ? AND finished_at IS NULL ORDER BY id LIMIT 1`
	}
	// The first unfinished job is read first: a job that finishes in between is then read
	// below and again next time, and the caller counts each id once.
	var firstOpen []int64
	if err := db.db.SelectContext(ctx, &firstOpen, db.q(open), fromID); err != nil {
		return nil, 0, fmt.Errorf("read %s durations: %w", kind, err)
	}
	rows, err := db.db.QueryContext(ctx, db.q(query), fromID)
	if err != nil {
		return nil, 0, fmt.Errorf("read %s durations: %w", kind, err)
	}
	defer rows.Close()
	var out []Timing
	for rows.Next() {
		var t Timing
		var start, end time.Time
		if err := rows.Scan(&t.ID, &t.Project, &t.Environment, &t.Status, &start, &end); err != nil {
			return nil, 0, fmt.Errorf("read %s durations: %w", kind, err)
		}
		t.Seconds = max(end.Sub(start).Seconds(), 0)
		out = append(out, t)
	}
	if len(firstOpen) == 0 {
		return out, 0, rows.Err()
	}
	return out, firstOpen[0], rows.Err()
}

// queues reads each queue's depth. Timestamps are read as columns, not through MIN(), so that
// SQLite returns them typed.
func (db *DB) queues(ctx context.Context) ([]Queue, error) {
	kinds := []struct {
		kind, table, at, waiting, running string
	}{
		{"build", "builds", "queued_at", "pending", "running"},
		{"deployment", "deployments", "queued_at", "queued", "running"},
		{"notice", "deliveries", "created_at", "pending", ""},
	}
	out := make([]Queue, 0, len(kinds))
	for _, k := range kinds {
		q := Queue{Kind: k.kind}
		if err := db.db.GetContext(ctx, &q.Waiting, db.q(`SELECT COUNT(*) FROM `+k.table+` WHERE status = ?`), k.waiting); err != nil {
			return nil, fmt.Errorf("read stats: %s queue: %w", k.kind, err)
		}
		if k.running != "" {
			if err := db.db.GetContext(ctx, &q.Running, db.q(`SELECT COUNT(*) FROM `+k.table+` WHERE status = ?`), k.running); err != nil {
				return nil, fmt.Errorf("read stats: %s queue: %w", k.kind, err)
			}
		}
		if q.Waiting > 0 {
			var oldest []time.Time
			if err := db.db.SelectContext(ctx, &oldest, db.q(`SELECT `+k.at+` FROM `+k.table+` WHERE status = ? ORDER BY `+k.at+` LIMIT 1`), k.waiting); err != nil {
				return nil, fmt.Errorf("read stats: %s queue: %w", k.kind, err)
			}
			if len(oldest) == 1 {
				q.Oldest = oldest[0]
			}
		}
		out = append(out, q)
	}
	return out, nil
}

// count returns how many live log subscriptions this process holds.
func (h *logHub) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, set := range h.subs {
		n += len(set)
	}
	return n
}
