package handlers

import (
	"encoding/json"
	"time"
)

// What the run and deployment pages say of a pending approval's expiry: "Awaiting approval
// until 14:05 UTC (in 23 min)." A script on the page counts the minutes down (app.js,
// [data-until]) with the same words.

// approvalDeadline is the expiry of an approval as a page shows it.
type approvalDeadline struct {
	At      string // RFC 3339, for the script
	When    string // "14:05 UTC"; with the date when it is not today (UTC)
	Text    string // the sentence, in the page's language
	Pattern string // the sentence's pattern, for the script
	Words   string // JSON of untilWords' patterns, for the script
}

// Deadline returns how the page says when a pending approval expires; nil for no expiry.
func (p page) Deadline(expires *time.Time) *approvalDeadline {
	if expires == nil || expires.IsZero() {
		return nil
	}
	return p.deadlineAt(*expires, time.Now())
}

func (p page) deadlineAt(expires, now time.Time) *approvalDeadline {
	expires, now = expires.UTC(), now.UTC()
	layout := "15:04 UTC"
	if expires.Format(time.DateOnly) != now.Format(time.DateOnly) {
		layout = "2006-01-02 15:04 UTC"
	}
	d := &approvalDeadline{At: expires.Format(time.RFC3339), When: expires.Format(layout), Pattern: p.T("approval.until")}
	d.Text = p.T("approval.until", d.When, p.untilWords(expires.Sub(now)))
	words := map[string]string{}
	for _, k := range []string{"past", "soon", "min", "hours", "days"} {
		words[k] = p.T("until." + k)
	}
	raw, _ := json.Marshal(words)
	d.Words = string(raw)
	return d
}

// untilWords says how long is left: "in 23 min", "in 2 h 05 min" (up to two days), "in 3 d
// 4 h", "in less than a minute", or that the time is up. Minutes are rounded, as app.js does.
func (p page) untilWords(d time.Duration) string {
	switch {
	case d <= 0:
		return p.T("until.past")
	case d < time.Minute:
		return p.T("until.soon")
	}
	m := int(d.Round(time.Minute) / time.Minute)
	switch {
	case m < 60:
		return p.T("until.min", m)
	case m < 48*60:
		return p.T("until.hours", m/60, m%60)
	}
	return p.T("until.days", m/(24*60), m%(24*60)/60)
}
