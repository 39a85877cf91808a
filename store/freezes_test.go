package store_test

import (
	"strings"
	"testing"
	"time"

	"ferry/store"
)

func TestFreezeValidationNamesTheField(t *testing.T) {
	tests := []struct {
		name   string
		freeze store.Freeze
		want   string // "" for valid
	}{
		{"fixed", store.Freeze{From: "2026-12-24T18:00:00+08:00", Until: "2026-12-27T08:00:00+08:00", Reason: "holidays"}, ""},
		{"recurring", store.Freeze{Cron: "0 18 * * 5", Duration: "62h", Timezone: "Asia/Shanghai"}, ""},
		{"recurring in UTC by default", store.Freeze{Cron: "@weekly", Duration: "2h"}, ""},
		{"bad cron", store.Freeze{Cron: "0 18 * *", Duration: "62h", Timezone: "UTC"}, "freezes[0].cron"},
		{"cron out of range", store.Freeze{Cron: "0 25 * * 5", Duration: "62h"}, "freezes[0].cron"},
		{"zone inside the cron", store.Freeze{Cron: "CRON_TZ=Asia/Tokyo 0 18 * * 5", Duration: "62h"}, "freezes[0].cron"},
		{"bad duration", store.Freeze{Cron: "0 18 * * 5", Duration: "2 days", Timezone: "UTC"}, "freezes[0].duration"},
		{"no duration", store.Freeze{Cron: "0 18 * * 5", Timezone: "UTC"}, "freezes[0].duration"},
		{"negative duration", store.Freeze{Cron: "0 18 * * 5", Duration: "-1h"}, "freezes[0].duration"},
		{"bad zone", store.Freeze{Cron: "0 18 * * 5", Duration: "62h", Timezone: "Mars/Olympus"}, "freezes[0].timezone"},
		{"bad from", store.Freeze{From: "tomorrow", Until: "2026-12-27T08:00:00Z"}, "freezes[0].from"},
		{"until before from", store.Freeze{From: "2026-12-27T08:00:00Z", Until: "2026-12-24T08:00:00Z"}, "freezes[0].until"},
		{"both kinds", store.Freeze{From: "2026-12-24T08:00:00Z", Until: "2026-12-27T08:00:00Z", Cron: "0 18 * * 5"}, "not both"},
		{"neither", store.Freeze{Reason: "why"}, "freezes[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := store.ValidateFreezes([]store.Freeze{tt.freeze})
			if tt.want == "" {
				if err != nil {
					t.Fatalf("valid freeze refused: %v", err)
				}
				return
			}
			if store.ErrorCode(err) != store.EINVALID || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want EINVALID naming %q", err, tt.want)
			}
		})
	}
}

// Every Friday 18:00 for 62 h in Asia/Shanghai (UTC+8) is Friday 10:00 UTC to Monday 00:00 UTC.
func TestRecurringFreezeInATimeZone(t *testing.T) {
	fs := []store.Freeze{{Cron: "0 18 * * 5", Duration: "62h", Timezone: "Asia/Shanghai", Reason: "weekend"}}
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, tt := range []struct {
		at, wantEnd string // wantEnd "" means not frozen
	}{
		{"2026-12-04T09:59:59Z", ""},
		{"2026-12-04T10:00:00Z", "2026-12-07T00:00:00Z"},
		{"2026-12-05T12:00:00Z", "2026-12-07T00:00:00Z"},
		{"2026-12-06T23:59:59Z", "2026-12-07T00:00:00Z"},
		{"2026-12-07T00:00:00Z", ""},
		{"2026-12-09T12:00:00Z", ""},
	} {
		w := store.FrozenAt(fs, at(tt.at))
		switch {
		case tt.wantEnd == "" && w != nil:
			t.Errorf("at %s: frozen by %s, want not frozen", tt.at, w)
		case tt.wantEnd != "" && w == nil:
			t.Errorf("at %s: not frozen, want frozen until %s", tt.at, tt.wantEnd)
		case w != nil && !w.End.Equal(at(tt.wantEnd)):
			t.Errorf("at %s: frozen until %s, want %s", tt.at, w.End, tt.wantEnd)
		}
	}
	// Read in UTC the same expression starts eight hours later.
	if w := store.FrozenAt([]store.Freeze{{Cron: "0 18 * * 5", Duration: "62h", Timezone: "UTC"}}, at("2026-12-04T12:00:00Z")); w != nil {
		t.Errorf("the UTC window holds Friday 12:00 UTC: %s", w)
	}
	w := store.FrozenAt(fs, at("2026-12-05T12:00:00Z"))
	if s := w.String(); !strings.Contains(s, `"weekend"`) || !strings.Contains(s, "2026-12-07T08:00:00+08:00") {
		t.Errorf("window described as %q, want its reason and its end in its zone", s)
	}
}

func TestFreezesThatTouchAreJoined(t *testing.T) {
	fs := []store.Freeze{
		{From: "2026-01-01T00:00:00Z", Until: "2026-01-02T00:00:00Z"},
		{From: "2026-01-02T00:00:00Z", Until: "2026-01-03T00:00:00Z"},
	}
	w := store.FrozenAt(fs, time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC))
	if w == nil || !w.End.Equal(time.Date(2026, 1, 3, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("window %+v, want it to end when the second freeze ends", w)
	}
}
