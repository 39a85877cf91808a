package store

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"time"
	_ "time/tzdata" // time zones of recurring freezes work on hosts without a zoneinfo database

	"github.com/robfig/cron/v3"
)

// Freeze is a period in which an environment takes no deployments: a fixed one (From and Until,
// RFC 3339) or a recurring one (a standard five-field Cron expression for when it starts, its
// Duration such as "62h", and the Timezone the expression is read in, UTC when empty).
type Freeze struct {
	From     string `json:"from,omitempty"`
	Until    string `json:"until,omitempty"`
	Cron     string `json:"cron,omitempty"`
	Duration string `json:"duration,omitempty"`
	Timezone string `json:"timezone,omitempty"`
	Reason   string `json:"reason,omitempty"`
}

// MaxFreezeDuration is the longest a recurring freeze window may last.
const MaxFreezeDuration = 366 * 24 * time.Hour

// cronParser reads the five standard fields and descriptors such as @weekly; a zone is given in
// the timezone field, not inside the expression.
var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// Validate checks the freeze as freezes[i], naming the field that is wrong.
func (f *Freeze) Validate(i int) error {
	field := func(name string) string { return fmt.Sprintf("freezes[%d].%s", i, name) }
	if len(f.Reason) > 200 || strings.ContainsAny(f.Reason, "\r\n") {
		return Errorf(EINVALID, "%s: one line of at most 200 characters", field("reason"))
	}
	fixed := f.From != "" || f.Until != ""
	recurring := f.Cron != "" || f.Duration != "" || f.Timezone != ""
	switch {
	case fixed && recurring:
		return Errorf(EINVALID, "freezes[%d]: give either from and until, or cron, duration and timezone, not both", i)
	case fixed:
		from, err := parseFreezeTime(field("from"), f.From)
		if err != nil {
			return err
		}
		until, err := parseFreezeTime(field("until"), f.Until)
		if err != nil {
			return err
		}
		if !until.After(from) {
			return Errorf(EINVALID, "%s: %s is not after from (%s)", field("until"), f.Until, f.From)
		}
		return nil
	case recurring:
		_, _, _, err := f.recurrence(i)
		return err
	default:
		return Errorf(EINVALID, `freezes[%d]: give from and until (RFC 3339), or cron, duration and timezone (such as "0 18 * * 5", "62h", "Asia/Shanghai")`, i)
	}
}

func parseFreezeTime(field, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, Errorf(EINVALID, "%s: required (an RFC 3339 time such as 2026-12-24T18:00:00+08:00)", field)
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, Errorf(EINVALID, "%s: %q is not an RFC 3339 time such as 2026-12-24T18:00:00+08:00", field, truncate(s, 60))
	}
	return t, nil
}

// recurrence parses a recurring freeze; i names it in errors.
func (f *Freeze) recurrence(i int) (cron.Schedule, time.Duration, *time.Location, error) {
	if f.Cron == "" {
		return nil, 0, nil, Errorf(EINVALID, `freezes[%d].cron: required for a recurring freeze (five fields such as "0 18 * * 5": minute hour day month weekday)`, i)
	}
	if strings.Contains(f.Cron, "TZ=") {
		return nil, 0, nil, Errorf(EINVALID, "freezes[%d].cron: give the time zone in the timezone field, not in the expression", i)
	}
	sched, err := cronParser.Parse(f.Cron)
	if err != nil {
		return nil, 0, nil, Errorf(EINVALID, `freezes[%d].cron: %q is not a cron expression (five fields such as "0 18 * * 5": minute hour day month weekday): %v`, i, truncate(f.Cron, 60), err)
	}
	d, err := time.ParseDuration(f.Duration)
	if f.Duration == "" || err != nil || d <= 0 || d > MaxFreezeDuration {
		return nil, 0, nil, Errorf(EINVALID, `freezes[%d].duration: %q is not a length of time such as "62h" or "90m" (more than 0, at most 8784h)`, i, truncate(f.Duration, 40))
	}
	zone := f.Timezone
	if zone == "" {
		zone = "UTC"
	}
	loc, err := time.LoadLocation(zone)
	if err != nil || strings.HasPrefix(zone, "/") || strings.Contains(zone, "..") {
		return nil, 0, nil, Errorf(EINVALID, `freezes[%d].timezone: %q is not a time zone name such as "Asia/Shanghai" or "UTC"`, i, truncate(zone, 60))
	}
	return sched, d, loc, nil
}

// ValidateFreezes checks every freeze of an environment.
func ValidateFreezes(fs []Freeze) error {
	if len(fs) > 50 {
		return Errorf(EINVALID, "freezes: at most 50 windows")
	}
	for i := range fs {
		if err := fs[i].Validate(i); err != nil {
			return err
		}
	}
	return nil
}

// FreezeWindow is one freeze in force at a moment: which freeze, and from when until when.
type FreezeWindow struct {
	Freeze Freeze
	Start  time.Time
	End    time.Time
}

// window returns the window of f that holds t, or false. A freeze that no longer parses (it was
// valid when stored) holds nothing.
func (f Freeze) window(t time.Time) (FreezeWindow, bool) {
	if f.Cron == "" {
		from, err1 := time.Parse(time.RFC3339, f.From)
		until, err2 := time.Parse(time.RFC3339, f.Until)
		if err1 != nil || err2 != nil || t.Before(from) || !t.Before(until) {
			return FreezeWindow{}, false
		}
		return FreezeWindow{Freeze: f, Start: from, End: until}, true
	}
	sched, d, loc, err := f.recurrence(0)
	if err != nil {
		return FreezeWindow{}, false
	}
	// The latest start at or before t is the first start after t-d, if it is not after t.
	start := sched.Next(t.In(loc).Add(-d))
	if start.IsZero() || start.After(t) {
		return FreezeWindow{}, false
	}
	return FreezeWindow{Freeze: f, Start: start, End: start.Add(d)}, true
}

// FrozenAt returns the freeze window in force at t, with End moved to when the environment is
// free again (windows that overlap or follow at once are joined), or nil when none is.
func FrozenAt(fs []Freeze, t time.Time) *FreezeWindow {
	var hit *FreezeWindow
	at := t
	for range 100 {
		var next *FreezeWindow
		for _, f := range fs {
			if w, ok := f.window(at); ok && (next == nil || w.End.After(next.End)) {
				next = &w
			}
		}
		if next == nil {
			break
		}
		if hit == nil {
			hit = next
		} else {
			hit.End = next.End
		}
		at = next.End
	}
	return hit
}

// String names the window for people: its reason and kind, and when it ends.
func (w *FreezeWindow) String() string {
	f := w.Freeze
	var kind string
	loc := time.UTC
	if f.Cron != "" {
		zone := f.Timezone
		if zone == "" {
			zone = "UTC"
		}
		if l, err := time.LoadLocation(zone); err == nil {
			loc = l
		}
		kind = fmt.Sprintf("recurring freeze %q for %s (%s)", f.Cron, f.Duration, zone)
	} else {
		kind = fmt.Sprintf("freeze from %s until %s", f.From, f.Until)
		if u, err := time.Parse(time.RFC3339, f.Until); err == nil {
			loc = u.Location()
		}
	}
	if f.Reason != "" {
		kind = fmt.Sprintf("%q, %s", f.Reason, kind)
	}
	return fmt.Sprintf("%s; it ends at %s", kind, w.End.In(loc).Format(time.RFC3339))
}

// clock returns the time the gates judge by: the database server's clock, so that several ferry
// processes on several machines agree when a schedule is due or a freeze ends. SQLite's clock is
// this machine's; a test that replaced db.Now sets the time itself.
func (db *DB) clock(ctx context.Context, q queryer) (time.Time, error) {
	if db.dialect != Postgres || reflect.ValueOf(db.Now).Pointer() != reflect.ValueOf(time.Now).Pointer() {
		return db.now(), nil
	}
	var t time.Time
	if err := q.GetContext(ctx, &t, `SELECT clock_timestamp()`); err != nil {
		return time.Time{}, fmt.Errorf("read the database clock: %w", err)
	}
	return t.UTC().Truncate(time.Microsecond), nil
}

// FreezesJSON returns the environment's freezes as indented JSON, as forms show them.
func (e *Environment) FreezesJSON() string {
	fs := e.Freezes
	if fs == nil {
		fs = []Freeze{}
	}
	b, _ := json.MarshalIndent(fs, "", "  ")
	return string(b)
}
