package store

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/robfig/cron/v3"
)

// Schedules run a job on a cron expression in a time zone. A due schedule is claimed in the
// database: its next_run_at moves on with a compare-and-set UPDATE in the transaction that
// queues the run, so with several processes exactly one queues it. The next time is counted
// from now, not from the missed one, so runs missed while ferry was down are run once.

var jobCronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// NextCronTime returns the first time after from that expr matches in zone; EINVALID for a
// bad expression or zone.
func NextCronTime(expr, zone string, from time.Time) (time.Time, error) {
	if strings.Contains(expr, "TZ=") {
		return time.Time{}, Errorf(EINVALID, "cron: give the time zone in time_zone, not in the expression")
	}
	sched, err := jobCronParser.Parse(expr)
	if err != nil {
		return time.Time{}, Errorf(EINVALID, "cron: %q is not a cron expression such as \"30 2 * * *\" (%v)", truncate(expr, 100), err)
	}
	loc, err := time.LoadLocation(zone)
	if err != nil || zone == "" {
		return time.Time{}, Errorf(EINVALID, "time_zone: %q is not a time zone such as Asia/Shanghai or UTC", truncate(zone, 60))
	}
	next := sched.Next(from.In(loc))
	if next.IsZero() {
		return time.Time{}, Errorf(EINVALID, "cron: %q never matches", truncate(expr, 100))
	}
	return next.UTC(), nil
}

const scheduleSelect = `SELECT s.id, s.project_id, s.job_id, j.name AS job_name, s.cron, s.time_zone, s.params, s.enabled,
	s.next_run_at, s.last_run_id, s.created_by, s.created_by_id, s.created_at, s.updated_at FROM job_schedules s JOIN script_jobs j ON j.id = s.job_id`

type scheduleRow struct {
	JobSchedule
	ParamsJSON string `db:"params"`
	ByID       *int64 `db:"created_by_id"`
}

func (r *scheduleRow) open() (*JobSchedule, error) {
	s := r.JobSchedule
	if err := json.Unmarshal([]byte(r.ParamsJSON), &s.Params); err != nil {
		return nil, fmt.Errorf("schedule %d params: %w", s.ID, err)
	}
	utc(s.NextRunAt)
	if r.ByID != nil {
		s.CreatedByID = *r.ByID
	}
	s.CreatedAt, s.UpdatedAt = s.CreatedAt.UTC(), s.UpdatedAt.UTC()
	return &s, nil
}

// CreateJobSchedule stores a schedule of a job; its parameters must be the job's. Audited.
func (db *DB) CreateJobSchedule(ctx context.Context, s *JobSchedule) (*JobSchedule, error) {
	var id int64
	err := db.Transact(ctx, func(tx *sqlx.Tx) error {
		j, err := db.getScriptJob(ctx, tx, `j.id = ? AND j.project_id = ?`, s.JobID, s.ProjectID)
		if err != nil {
			return err
		}
		if _, err := runParams(j, s.Params); err != nil {
			return err
		}
		now := db.now()
		next, err := NextCronTime(s.Cron, s.TimeZone, now)
		if err != nil {
			return err
		}
		if s.Params == nil {
			s.Params = map[string]string{}
		}
		var nextAt *time.Time
		if s.Enabled {
			nextAt = &next
		}
		by := ActorFrom(ctx).UserID
		if by == 0 {
			return Errorf(EFORBIDDEN, "a schedule is made by a person, whose rights its runs use")
		}
		err = tx.GetContext(ctx, &id, db.q(`INSERT INTO job_schedules (project_id, job_id, cron, time_zone, params, enabled, next_run_at,
			created_by, created_by_id, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`), s.ProjectID, s.JobID, s.Cron, s.TimeZone,
			jsonText(s.Params), s.Enabled, nextAt, truncate(ActorFrom(ctx).Name, 200), by, now, now)
		if err != nil {
			return err
		}
		return db.audit(ctx, tx, "schedule.create", fmt.Sprintf("project/%s/job/%s", j.Project, j.Name), fmt.Sprintf("%s %s", s.Cron, s.TimeZone))
	})
	if err != nil {
		return nil, err
	}
	return db.GetJobSchedule(ctx, s.ProjectID, id)
}

// GetJobSchedule returns a project's schedule, or ENOTFOUND.
func (db *DB) GetJobSchedule(ctx context.Context, projectID, id int64) (*JobSchedule, error) {
	var row scheduleRow
	if err := db.db.GetContext(ctx, &row, db.q(scheduleSelect+` WHERE s.id = ? AND s.project_id = ?`), id, projectID); err != nil {
		return nil, formatError(err, fmt.Sprintf("schedule %d", id))
	}
	return row.open()
}

// ListJobSchedules returns a project's schedules by id.
func (db *DB) ListJobSchedules(ctx context.Context, projectID int64) ([]*JobSchedule, error) {
	var rows []*scheduleRow
	if err := db.db.SelectContext(ctx, &rows, db.q(scheduleSelect+` WHERE s.project_id = ? ORDER BY s.id`), projectID); err != nil {
		return nil, fmt.Errorf("list schedules: %w", err)
	}
	out := make([]*JobSchedule, 0, len(rows))
	for _, r := range rows {
		s, err := r.open()
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// SetJobScheduleEnabled pauses or resumes a schedule; a resumed one next runs at its next time
// from now (what it missed while paused is not run). Audited.
func (db *DB) SetJobScheduleEnabled(ctx context.Context, projectID, id int64, enabled bool) (*JobSchedule, error) {
	s, err := db.GetJobSchedule(ctx, projectID, id)
	if err != nil {
		return nil, err
	}
	var next *time.Time
	if enabled {
		n, err := NextCronTime(s.Cron, s.TimeZone, db.now())
		if err != nil {
			return nil, err
		}
		next = &n
	}
	err = db.Transact(ctx, func(tx *sqlx.Tx) error {
		if _, err := tx.ExecContext(ctx, db.q(`UPDATE job_schedules SET enabled = ?, next_run_at = ?, updated_at = ? WHERE id = ?`),
			enabled, next, db.now(), id); err != nil {
			return err
		}
		return db.audit(ctx, tx, "schedule.update", fmt.Sprintf("project/%d/schedule/%d", projectID, id), fmt.Sprintf("enabled: %v", enabled))
	})
	if err != nil {
		return nil, err
	}
	return db.GetJobSchedule(ctx, projectID, id)
}

// DeleteJobSchedule removes a schedule. Audited.
func (db *DB) DeleteJobSchedule(ctx context.Context, projectID, id int64) error {
	return db.Transact(ctx, func(tx *sqlx.Tx) error {
		res, err := tx.ExecContext(ctx, db.q(`DELETE FROM job_schedules WHERE id = ? AND project_id = ?`), id, projectID)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return Errorf(ENOTFOUND, "schedule %d not found", id)
		}
		return db.audit(ctx, tx, "schedule.delete", fmt.Sprintf("project/%d/schedule/%d", projectID, id), "")
	})
}

// ScheduleFired is what FireDueSchedules did with one due schedule.
type ScheduleFired struct {
	ScheduleID int64
	RunID      int64 // 0 when the run could not be queued
	Err        error
}

// FireDueSchedules queues one run of every enabled schedule whose time has come, and moves it
// to its next time after now. Each schedule is claimed with a compare-and-set on next_run_at,
// so another process firing at the same moment skips it. A run that cannot be queued (the job
// changed, an environment is frozen) is reported, and the schedule still moves on.
func (db *DB) FireDueSchedules(ctx context.Context) ([]ScheduleFired, error) {
	var due []*scheduleRow
	if err := db.db.SelectContext(ctx, &due, db.q(scheduleSelect+` WHERE s.enabled AND s.next_run_at <= ? ORDER BY s.next_run_at`), db.now()); err != nil {
		return nil, fmt.Errorf("find due schedules: %w", err)
	}
	var out []ScheduleFired
	for _, row := range due {
		s, err := row.open()
		if err != nil {
			return out, err
		}
		fired, err := db.fireSchedule(ctx, s)
		if err != nil {
			return out, err
		}
		if fired != nil {
			out = append(out, *fired)
		}
	}
	return out, nil
}

// fireSchedule claims one due schedule and queues its run; nil when another process claimed it.
func (db *DB) fireSchedule(ctx context.Context, s *JobSchedule) (*ScheduleFired, error) {
	next, err := NextCronTime(s.Cron, s.TimeZone, db.now())
	if err != nil {
		return nil, err
	}
	fired := &ScheduleFired{ScheduleID: s.ID}
	claimed := false
	advance := func(tx *sqlx.Tx) error {
		res, err := tx.ExecContext(ctx, db.q(`UPDATE job_schedules SET next_run_at = ? WHERE id = ? AND enabled AND next_run_at = ?`),
			next, s.ID, *s.NextRunAt)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		claimed = n == 1
		return err
	}
	err = db.Transact(ctx, func(tx *sqlx.Tx) error {
		if err := advance(tx); err != nil || !claimed {
			return err
		}
		id := s.ID
		runID, err := db.createJobRun(ctx, tx, NewJobRun{JobID: s.JobID, Params: s.Params,
			TriggeredBy: fmt.Sprintf("schedule %d (%s %s)", s.ID, s.Cron, s.TimeZone), ScheduleID: &id, AsUserID: s.CreatedByID})
		if err != nil {
			return err
		}
		fired.RunID = runID
		_, err = tx.ExecContext(ctx, db.q(`UPDATE job_schedules SET last_run_id = ? WHERE id = ?`), runID, s.ID)
		return err
	})
	if err == nil {
		if !claimed {
			return nil, nil
		}
		return fired, nil
	}
	if ErrorCode(err) == EINTERNAL || ctx.Err() != nil {
		return nil, fmt.Errorf("fire schedule %d: %w", s.ID, err)
	}
	// The run was refused: move the schedule on anyway, so it does not retry every tick.
	fired.Err = err
	if err := db.Transact(ctx, advance); err != nil || !claimed {
		return nil, err
	}
	return fired, nil
}
