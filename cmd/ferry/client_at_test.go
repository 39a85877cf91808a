package main

import (
	"errors"
	"testing"
	"time"
)

func TestParseAt(t *testing.T) {
	zone := time.FixedZone("CST", 8*3600)
	now := time.Date(2026, 12, 2, 21, 30, 0, 0, zone)
	for _, tc := range []struct {
		name, in string
		want     time.Time
	}{
		{"later today", "22:00", time.Date(2026, 12, 2, 22, 0, 0, 0, zone)},
		{"passed today, so tomorrow", "06:15", time.Date(2026, 12, 3, 6, 15, 0, 0, zone)},
		{"this very minute is past", "21:30", time.Date(2026, 12, 3, 21, 30, 0, 0, zone)},
		{"RFC 3339 as given", "2026-12-24T22:00:00+08:00", time.Date(2026, 12, 24, 22, 0, 0, 0, zone)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseAt(tc.in, now)
			if err != nil || !got.Equal(tc.want) {
				t.Errorf("parseAt(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
			}
		})
	}
	for _, bad := range []string{"tonight", "25:00", "2026-12-24 22:00"} {
		var usage *usageError
		if _, err := parseAt(bad, now); !errors.As(err, &usage) {
			t.Errorf("parseAt(%q) = %v, want a usage error (exit 2)", bad, err)
		}
	}
}
