package build

import (
	"strings"
	"testing"
	"time"
)

func TestVersionName(t *testing.T) {
	at := time.Date(2024, 3, 9, 17, 4, 5, 0, time.FixedZone("CST", 8*3600))
	sha := "0123456789abcdef0123456789abcdef01234567"
	tests := []struct {
		name, branch, tag, want string
	}{
		{"plain branch", "main", "", "20240309090405-main-01234567"},
		{"slash", "release/1.2", "", "20240309090405-release-1.2-01234567"},
		{"shell metacharacters", "x;rm -rf ~", "", "20240309090405-x-rm-rf-01234567"},
		{"command substitution", "$(id)", "", "20240309090405-id-01234567"},
		{"non-ASCII", "feature/ü", "", "20240309090405-feature-01234567"},
		{"dot dot", "..", "", "20240309090405-01234567"},
		{"dots inside", "a..b", "", "20240309090405-a.b-01234567"},
		{"leading dash", "--upload-pack=x", "", "20240309090405-upload-pack-x-01234567"},
		{"long", strings.Repeat("ab/", 30), "", "20240309090405-" + strings.Repeat("ab-", 13) + "a-01234567"},
		{"tag", "main", "v1.2.0", "v1.2.0"},
		{"unsafe tag", "", "v1;reboot", "v1-reboot"},
		{"tag with nothing safe", "main", "../", "20240309090405-main-01234567"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := VersionName(at, tt.branch, sha, tt.tag)
			if got != tt.want {
				t.Errorf("VersionName(%q, %q) = %q, want %q", tt.branch, tt.tag, got, tt.want)
			}
			for _, c := range got {
				if !isSafe(byte(c)) || c > 127 {
					t.Errorf("%q holds %q", got, c)
				}
			}
		})
	}
}
