package handlers

import (
	"strings"
	"testing"
	"time"

	"ferry/store"
)

// TestDecide covers the rules for every kind of access, including deployments, whose routes
// come in a later issue.
func TestDecide(t *testing.T) {
	admin := &store.User{ID: 1, Admin: true}
	plain := &store.User{ID: 2}
	member := &store.Member{}
	production := &store.Member{Production: true}
	tests := []struct {
		name      string
		a         access
		u         *store.User
		m         *store.Member
		protected bool
		want      verdict
	}{
		{"public anonymous", public, nil, nil, false, allowed},
		{"logged in anonymous", loggedIn, nil, nil, false, needLogin},
		{"logged in plain", loggedIn, plain, nil, false, allowed},
		{"admin only plain", adminOnly, plain, nil, false, forbidden},
		{"admin only admin", adminOnly, admin, nil, false, allowed},
		{"read anonymous", projectRead, nil, nil, false, needLogin},
		{"read outsider", projectRead, plain, nil, false, hidden},
		{"read member", projectRead, plain, member, false, allowed},
		{"build outsider", projectBuild, plain, nil, false, hidden},
		{"build member", projectBuild, plain, member, false, allowed},
		{"deploy outsider", projectDeploy, plain, nil, false, hidden},
		{"deploy member unprotected", projectDeploy, plain, member, false, allowed},
		{"deploy member protected", projectDeploy, plain, member, true, forbidden},
		{"deploy production protected", projectDeploy, plain, production, true, allowed},
		{"deploy admin protected", projectDeploy, admin, nil, true, allowed},
		{"change outsider", projectAdmin, plain, nil, false, hidden},
		{"change member", projectAdmin, plain, production, false, forbidden},
		{"change admin", projectAdmin, admin, nil, false, allowed},
		{"project-wide outsider", projectWide, plain, nil, false, hidden},
		{"project-wide member, nothing protected", projectWide, plain, member, false, allowed},
		{"project-wide member, something protected", projectWide, plain, member, true, forbidden},
		{"project-wide production, something protected", projectWide, plain, production, true, allowed},
		{"project-wide admin", projectWide, admin, nil, true, allowed},
	}
	for _, tt := range tests {
		if got := decide(tt.a, tt.u, tt.m, tt.protected); got != tt.want {
			t.Errorf("%s: decide = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestSafeNext(t *testing.T) {
	for in, want := range map[string]string{
		"":                         "/",
		"/projects/a?x=1":          "/projects/a?x=1",
		"//evil.example.com/":      "/",
		"/\\evil.example.com":      "/",
		"https://evil.example.com": "/",
		"javascript:alert(1)":      "/",
		"projects":                 "/",
		"/a\r\nSet-Cookie: x=1":    "/",
	} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestTooManyLoginsMessage(t *testing.T) {
	for wait, want := range map[time.Duration]string{
		20 * time.Second:                "try again in a minute.",
		15 * time.Minute:                "try again in 15 minutes.",
		14*time.Minute + 10*time.Second: "try again in 15 minutes.",
	} {
		if got := tooManyLogins(wait); !strings.HasSuffix(got, want) {
			t.Errorf("tooManyLogins(%s) = %q, want it to end %q", wait, got, want)
		}
	}
}
