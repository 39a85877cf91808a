package notify

import (
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func failedDeployment() Message {
	var log []string
	for i := 1; i <= 30; i++ {
		log = append(log, fmt.Sprintf("line %02d: starting worker", i))
	}
	return Message{
		ID: "n-42", Event: DeploymentFailed, Project: "orders", Version: "20240501120000-main-3f2a9c1",
		Commit:      Commit{SHA: "3f2a9c1", Author: "Alice", Title: "Fix checkout rounding"},
		Environment: "prod", HostsOK: []string{"web-1"}, HostsFailed: []string{"web-2"},
		Duration: 83 * time.Second, TriggeredBy: "alice", URL: "https://ferry.example.com/deployments/7",
		LogTail: log, Time: time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC),
	}
}

func TestTitle(t *testing.T) {
	tests := []struct {
		name string
		m    Message
		want string
	}{
		{"deployment failed", failedDeployment(), "orders: deployment of 20240501120000-main-3f2a9c1 to prod failed"},
		{"build failed without version", Message{Event: BuildFailed, Project: "orders", Commit: Commit{SHA: "3f2a9c1"}}, "orders: build of 3f2a9c1 failed"},
		{"build succeeded", Message{Event: BuildSucceeded, Project: "orders", Version: "v1.2.0"}, "orders: build of v1.2.0 succeeded"},
		{"newlines cannot break the title", Message{Event: DeploymentStarted, Project: "a\n### fake", Version: "v1", Environment: "prod"}, "a ### fake: deployment of v1 to prod started"},
		{"digest", MergeDigest([]Message{{Event: BuildFailed, Project: "a", Version: "v1"}, {Event: BuildFailed, Project: "b", Version: "v2"}}), "2 more notices: a: build of v1 failed; b: build of v2 failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.m.Title(); got != tt.want {
				t.Errorf("Title() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestRenderMarkdownShowsFactsAndLastTwentyLines(t *testing.T) {
	body := RenderMarkdown(failedDeployment(), 0).Body
	for _, want := range []string{
		"### orders: deployment of 20240501120000-main-3f2a9c1 to prod failed",
		"- **Commit:** 3f2a9c1 Fix checkout rounding (Alice)",
		"- **Hosts:** 1 ok, 1 failed: web-2",
		"- **Duration:** 1m23s",
		"[Open in ferry](https://ferry.example.com/deployments/7)",
		"```\nline 11: starting worker\n", "line 30: starting worker\n```",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("markdown lacks %q:\n%s", want, body)
		}
	}
	if strings.Contains(body, "line 10:") {
		t.Errorf("markdown shows more than the last %d lines:\n%s", MaxLogLines, body)
	}
}

func TestRenderMarkdownKeepsLogInsideCodeBlock(t *testing.T) {
	m := failedDeployment()
	m.LogTail = []string{"```", "# injected heading"}
	body := RenderMarkdown(m, 0).Body
	if strings.Count(body, "```") != 2 {
		t.Errorf("a log line closed the code block:\n%s", body)
	}
}

func TestRenderHTMLEscapes(t *testing.T) {
	m := failedDeployment()
	m.Commit.Title = `<script>alert("x")</script>`
	m.LogTail = []string{"<b>bold</b> & more"}
	m.URL = "javascript:alert(1)"
	html, err := RenderHTML(m)
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"<script>", "<b>bold", `href="javascript:`} {
		if strings.Contains(html, bad) {
			t.Errorf("HTML holds unescaped %q:\n%s", bad, html)
		}
	}
	if !strings.Contains(html, "&lt;b&gt;bold&lt;/b&gt; &amp; more") {
		t.Errorf("HTML lacks the escaped log line:\n%s", html)
	}
}

func TestTruncation(t *testing.T) {
	chinese := strings.Repeat("部署失败，请检查日志。", 40) // 3 bytes a rune
	longLog := func(line string, n int) []string {
		var l []string
		for i := 0; i < n; i++ {
			l = append(l, fmt.Sprintf("%02d %s", i, line))
		}
		return l
	}
	tests := []struct {
		name        string
		title       string
		log         []string
		limit       int
		wantLog     string // must be in the body
		wantNoLog   bool   // the log tail is left out entirely
		wantTrimmed bool
	}{
		{"fits", "short", longLog("ok", 3), 4096, "02 ok", false, false},
		{"log cut from its oldest end", "short", longLog(strings.Repeat("x", 200), 20), 2000, "19 " + strings.Repeat("x", 200), false, true},
		{"chinese log cut on a rune", "short", longLog(chinese, 20), 4096, "19 部署失败", false, true},
		{"chinese body cut when no room for log", strings.Repeat("版本", 2000), longLog("x", 3), 4096, "", true, true},
		{"limit off", "short", longLog(chinese, 20), 0, "00 部署失败", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := Message{Event: BuildFailed, Project: "orders", Commit: Commit{Title: tt.title}, LogTail: tt.log}
			for _, r := range []Rendered{RenderMarkdown(m, tt.limit), RenderText(m, tt.limit)} {
				body := r.Body
				if tt.limit > 0 && len(body) > tt.limit {
					t.Errorf("body has %d bytes, limit %d", len(body), tt.limit)
				}
				if !utf8.ValidString(body) {
					t.Errorf("body was cut inside a UTF-8 rune")
				}
				if got := strings.Contains(body, TruncatedMark); got != tt.wantTrimmed {
					t.Errorf("says truncated = %v, want %v:\n%s", got, tt.wantTrimmed, body)
				}
				if tt.wantLog != "" && !strings.Contains(body, tt.wantLog) {
					t.Errorf("body lacks %q (the newest log line must survive):\n%s", tt.wantLog, body)
				}
				if tt.wantNoLog && strings.Contains(body, "Last log lines") {
					t.Errorf("log tail kept although the body alone is too long")
				}
			}
		})
	}
}

func TestCutHelpersNeverSplitRunes(t *testing.T) {
	s := "aé部😀b"
	for n := 0; n <= len(s)+1; n++ {
		if p := runePrefix(s, n); !utf8.ValidString(p) || len(p) > n {
			t.Errorf("runePrefix(%q, %d) = %q", s, n, p)
		}
		if p := keepTail(s, n); !utf8.ValidString(p) || len(p) > max(n, 0) {
			t.Errorf("keepTail(%q, %d) = %q", s, n, p)
		}
		if p := cutEnd(s+s+s+s, n+12); !utf8.ValidString(p) || len(p) > n+12 {
			t.Errorf("cutEnd(%d) = %q", n+12, p)
		}
	}
}
