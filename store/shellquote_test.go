package store_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"ferry/store"
)

func TestQuoteSurvivesARealShell(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "pwned")
	tests := []struct {
		name, in, quoted string
	}{
		{"plain word", "release-1.2_3", "release-1.2_3"},
		{"path", "/opt/apps/orders/current", "/opt/apps/orders/current"},
		{"empty", "", "''"},
		{"space", "two words", "'two words'"},
		{"command substitution", "$(touch " + marker + ")", "'$(touch " + marker + ")'"},
		{"backticks", "`touch " + marker + "`", "'`touch " + marker + "`'"},
		{"semicolon", ";rm -rf ~", "';rm -rf ~'"},
		{"single quotes", "it's 'quoted'", `'it'\''s '\''quoted'\'''`},
		{"double quotes and dollar", `"$HOME" ${PATH}`, `'"$HOME" ${PATH}'`},
		{"newline", "line one\nline two; touch " + marker, "'line one\nline two; touch " + marker + "'"},
		{"glob and redirect", "* > " + marker, "'* > " + marker + "'"},
		{"backslash", `a\b\\c`, `'a\b\\c'`},
		{"leading dash", "-rf", "-rf"},
		{"tilde", "~root", "'~root'"},
		{"unicode", "版本 ü", "'版本 ü'"},
		{"only quotes", "''", `''\'''\'''`},
		{"quote around substitution", "'$(touch " + marker + ")'", `''\''$(touch ` + marker + `)'\'''`},
		{"trailing newline", "a\n", "'a\n'"},
		{"percent and equals stay bare", "a=b%c", "a=b%c"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			quoted := store.ShellQuote(tt.in)
			if quoted != tt.quoted {
				t.Errorf("store.ShellQuote(%q) = %s, want %s", tt.in, quoted, tt.quoted)
			}
			out, err := exec.Command("/bin/sh", "-c", "printf '%s' "+quoted).Output()
			if err != nil {
				t.Fatalf("sh -c printf %s: %v", quoted, err)
			}
			if string(out) != tt.in {
				t.Errorf("sh read back %q, want %q", out, tt.in)
			}
			if _, err := os.Stat(marker); err == nil {
				t.Fatalf("quoting %q let the shell run a command", tt.in)
			}
		})
	}
}
