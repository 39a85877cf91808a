package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"ferry/store"
)

// A run's log on the command line (ferry logs run RUN_ID [-f] [--step N] [--host NAME], and
// ferry run … --follow): each line after "STEP/HOST | " as the run page shows it, "STEP/ | "
// for a line of a step itself, and no prefix for a line of the run (approved by …, continued).

// runLogFilter keeps the lines of one step, of one host in every step, or of one host in one
// step; the zero filter keeps them all. It keeps what the API's ?step=&host= keep.
type runLogFilter struct {
	step int
	host string
}

// keeps reports whether a line whose stored host is stored ("2/web-1", "2/", "") is shown.
func (f runLogFilter) keeps(stored string) bool {
	if f.step == 0 && f.host == "" {
		return true
	}
	if stored == "" {
		return false
	}
	step, host := store.SplitRunLogHost(stored)
	return (f.step == 0 || step == f.step) && (f.host == "" || host == f.host)
}

// query is the filter as the log API's parameters.
func (f runLogFilter) query(q url.Values) {
	if f.step > 0 {
		q.Set("step", strconv.Itoa(f.step))
	}
	if f.host != "" {
		q.Set("host", f.host)
	}
}

// parseRunLogFilter reads --step and --host; --host may also name "STEP/HOST" as the run page
// does (--host 2/web-1).
func parseRunLogFilter(step int, host string) (runLogFilter, error) {
	if step < 0 {
		return runLogFilter{}, usagef("--step %d: steps are numbered from 1", step)
	}
	f := runLogFilter{step: step, host: host}
	if n, h, ok := strings.Cut(host, "/"); ok {
		s, err := strconv.Atoi(n)
		if err != nil || s < 1 || h == "" || (step != 0 && step != s) {
			return runLogFilter{}, usagef("--host %q: want a host name, or STEP/HOST such as 2/web-1", host)
		}
		f = runLogFilter{step: s, host: h}
	}
	return f, nil
}

// check says, in words, when the filter names a step or a host the run does not have, so a
// typo is not mistaken for an empty log.
func (f runLogFilter) check(r *store.JobRun) error {
	if f.step > len(r.Steps) {
		return fmt.Errorf("run %d has %d step(s): there is no step %d", r.ID, len(r.Steps), f.step)
	}
	if f.host == "" {
		return nil
	}
	var hosts []string
	for _, s := range r.Steps {
		if f.step != 0 && s.Position != f.step {
			continue
		}
		for _, h := range s.Hosts {
			if h.Host == f.host {
				return nil
			}
			if !slices.Contains(hosts, h.Host) {
				hosts = append(hosts, h.Host)
			}
		}
	}
	where := fmt.Sprintf("run %d", r.ID)
	if f.step != 0 {
		where = fmt.Sprintf("step %d of run %d", f.step, r.ID)
	}
	if len(hosts) == 0 {
		return fmt.Errorf("%s runs on no host: there is no host %s", where, f.host)
	}
	return fmt.Errorf("%s does not run on %s (its hosts: %s)", where, f.host, strings.Join(hosts, ", "))
}

// runLogPrinter writes kept lines of a run's log to out with their STEP/HOST prefix.
func runLogPrinter(out io.Writer, f runLogFilter) func([]store.LogLine) {
	return func(lines []store.LogLine) {
		for _, l := range lines {
			if !f.keeps(l.Host) {
				continue
			}
			if l.Host != "" {
				fmt.Fprintf(out, "%s | %s\n", l.Host, l.Text)
			} else {
				fmt.Fprintln(out, l.Text)
			}
		}
	}
}

// getRun reads a run; a run that does not exist (or that the token may not see) is said so.
func getRun(ctx context.Context, c *apiClient, id int64) (*store.JobRun, error) {
	var r store.JobRun
	err := c.call(ctx, "GET", fmt.Sprintf("/runs/%d", id), nil, &r)
	var api *apiError
	if errors.As(err, &api) && api.Status == http.StatusNotFound {
		return nil, &apiError{Status: api.Status, Message: api.Message + " (ferry runs PROJECT JOB lists a job's runs)"}
	}
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// runLogs prints a run's log: what is stored, or with follow the live log until the run ends,
// then how each step and host did; following, it fails unless the run succeeded.
func runLogs(ctx context.Context, c *apiClient, id int64, follow bool, f runLogFilter, stdout io.Writer) error {
	r, err := getRun(ctx, c, id)
	if err != nil {
		return err
	}
	if err := f.check(r); err != nil {
		return err
	}
	if !follow {
		return printStoredRunLog(ctx, c, id, f, runLogPrinter(stdout, f))
	}
	if waiting := runWaitingWords(r, time.Now()); waiting != "" {
		fmt.Fprintf(stdout, "run %d %s\n", id, waiting)
	}
	return followRun(ctx, c, id, f, stdout)
}

// printStoredRunLog pages through a run's stored log with the API's after= cursor, the API
// keeping the lines of the filter.
func printStoredRunLog(ctx context.Context, c *apiClient, id int64, f runLogFilter, print func([]store.LogLine)) error {
	after := int64(0)
	for {
		q := url.Values{"after": {strconv.FormatInt(after, 10)}, "limit": {"1000"}}
		f.query(q)
		var page struct {
			Lines []store.RunLogLine `json:"lines"`
			Next  int64              `json:"next"`
		}
		if err := c.call(ctx, "GET", fmt.Sprintf("/runs/%d/log?%s", id, q.Encode()), nil, &page); err != nil {
			return err
		}
		lines := make([]store.LogLine, 0, len(page.Lines))
		for _, l := range page.Lines {
			lines = append(lines, store.LogLine{Seq: l.Seq, Stream: l.Stream, Host: store.RunLogHost(l.Step, l.Host), Text: l.Text})
		}
		print(lines)
		if len(page.Lines) == 0 || page.Next <= after {
			return nil
		}
		after = page.Next
	}
}

// followRun shows a run's live log (each line after its STEP/HOST) until the run ends, then
// one line per step and host the filter keeps with its status; it fails unless the run
// succeeded.
func followRun(ctx context.Context, c *apiClient, id int64, f runLogFilter, stdout io.Writer) error {
	if _, err := streamLog(ctx, c, store.JobRunLog, id, 0, runLogPrinter(stdout, f)); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("stopped following; run %d goes on (ferry logs run %d -f, or ferry run-cancel %d)", id, id, id)
		}
		return err
	}
	r, err := getRun(ctx, c, id)
	if err != nil {
		return err
	}
	for _, s := range r.Steps {
		if f.step != 0 && s.Position != f.step {
			continue
		}
		for _, h := range s.Hosts {
			if f.host != "" && h.Host != f.host {
				continue
			}
			code := ""
			if h.ExitCode != nil {
				code = fmt.Sprintf(" (exit %d)", *h.ExitCode)
			}
			fmt.Fprintf(stdout, "step %d %s, %s: %s%s\n", s.Position, s.Name, h.Host, h.Status, code)
		}
	}
	if r.Status != store.RunSuccess {
		return fmt.Errorf("run %d %s: %s", id, r.Status, oneLine(r.Error))
	}
	fmt.Fprintf(stdout, "run %d success: job %s, %d steps\n", id, r.Job, len(r.Steps))
	return nil
}

// runWaitingWords says what a run that has not ended waits for ("awaits 1 approval(s) until
// 14:05 (in 23 min)", "waits at a pause …"), "" for one that does not wait.
func runWaitingWords(r *store.JobRun, now time.Time) string {
	switch r.Status {
	case store.RunAwaitingApproval:
		words := fmt.Sprintf("awaits %d approval(s)", r.ApprovalsRequired)
		if r.ApprovalExpiresAt != nil {
			words += " until " + deadlineWords(*r.ApprovalExpiresAt, now)
		}
		return words + fmt.Sprintf(" (ferry approve run %d)", r.ID)
	case store.RunWaiting:
		return fmt.Sprintf("waits at a pause (ferry run-continue %d goes on, ferry run-cancel %d stops it)", r.ID, r.ID)
	}
	return ""
}

// deadlineWords reads "14:05 CST (in 23 min)" for a time today on this machine's clock, with
// the date before it on another day, and "(past)" once it has passed.
func deadlineWords(t, now time.Time) string {
	t, now = t.Local(), now.Local()
	layout := "15:04 MST"
	if t.Year() != now.Year() || t.YearDay() != now.YearDay() {
		layout = "2006-01-02 15:04 MST"
	}
	return fmt.Sprintf("%s (%s)", t.Format(layout), untilWords(t.Sub(now)))
}

// untilWords reads a time left: "in 23 min", "in 2 h 05 min" (up to two days), "in 3 d 4 h", "in less than a
// minute", "past".
func untilWords(d time.Duration) string {
	switch {
	case d <= 0:
		return "past"
	case d < time.Minute:
		return "in less than a minute"
	}
	m := int(d.Round(time.Minute) / time.Minute)
	switch {
	case m < 60:
		return fmt.Sprintf("in %d min", m)
	case m < 48*60:
		return fmt.Sprintf("in %d h %02d min", m/60, m%60)
	}
	return fmt.Sprintf("in %d d %d h", m/(24*60), m%(24*60)/60)
}
