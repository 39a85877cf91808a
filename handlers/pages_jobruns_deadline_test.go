package handlers

import (
	"testing"
	"time"
)

func TestApprovalDeadlineWords(t *testing.T) {
	now := time.Date(2026, 12, 2, 13, 42, 0, 0, time.UTC)
	for _, tc := range []struct {
		lang    string
		expires time.Time
		want    string
	}{
		{langEN, now.Add(23 * time.Minute), "Awaiting approval until 14:05 UTC (in 23 min)."},
		{langZH, now.Add(23 * time.Minute), "等待审批，截止 14:05 UTC（23 分钟后）。"},
		{langEN, now.Add(22*time.Minute + 40*time.Second), "Awaiting approval until 14:04 UTC (in 23 min)."},
		{langEN, now.Add(20 * time.Second), "Awaiting approval until 13:42 UTC (in less than a minute)."},
		{langEN, now.Add(24 * time.Hour), "Awaiting approval until 2026-12-03 13:42 UTC (in 24 h 00 min)."},
		{langZH, now.Add(2*time.Hour + 5*time.Minute), "等待审批，截止 15:47 UTC（2 小时 05 分钟后）。"},
		{langEN, now.Add(72*time.Hour + 4*time.Hour), "Awaiting approval until 2026-12-05 17:42 UTC (in 3 d 4 h)."},
		{langEN, now.Add(-time.Minute), "Awaiting approval until 13:41 UTC (time is up)."},
		// Another zone's clock reads the same deadline in UTC.
		{langEN, now.Add(23 * time.Minute).In(time.FixedZone("CST", 8*3600)), "Awaiting approval until 14:05 UTC (in 23 min)."},
	} {
		d := page{Lang: tc.lang}.deadlineAt(tc.expires, now)
		if d.Text != tc.want {
			t.Errorf("%s, %v: %q, want %q", tc.lang, tc.expires.Sub(now), d.Text, tc.want)
		}
		if d.At != tc.expires.UTC().Format(time.RFC3339) {
			t.Errorf("data-until %q, want %s", d.At, tc.expires.UTC().Format(time.RFC3339))
		}
	}
	if (page{Lang: langEN}).Deadline(nil) != nil {
		t.Error("a run without an expiry has a deadline")
	}
}
