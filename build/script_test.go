package build

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// lineLog collects a script's output for assertions.
type lineLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *lineLog) add(stream, line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, stream+": "+line)
}

func (l *lineLog) text() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

func newScript(t *testing.T, lines ...string) *Script {
	ws := Workspace{Root: t.TempDir()}
	if err := ws.Reset(); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(ws.Src(), 0o755); err != nil {
		t.Fatal(err)
	}
	return &Script{Lines: lines, Dir: ws.Src(), Home: ws.Home(), Tmp: ws.Tmp(), Timeout: time.Minute, KillGrace: time.Second}
}

func TestScriptOutputAndEnvironment(t *testing.T) {
	s := newScript(t, "echo hello", "echo oops >&2", `echo "v=$FERRY_VERSION c=$FERRY_COMMIT p=$FERRY_PROJECT x=$EXTRA home=$HOME"`, "pwd")
	s.Vars = Vars{Project: "demo", Version: "20240101000000-main-abcdef12", Commit: "abc"}
	s.Env = map[string]string{"EXTRA": "from build.env"}
	var log lineLog
	if err := s.Run(context.Background(), log.add); err != nil {
		t.Fatalf("Run: %v\n%s", err, log.text())
	}
	got := log.text()
	for _, want := range []string{
		"stdout: $ echo hello", "stdout: hello", "stderr: oops",
		"stdout: v=20240101000000-main-abcdef12 c=abc p=demo x=from build.env home=" + s.Home,
		"stdout: " + s.Dir,
	} {
		if !strings.Contains(got, want+"\n") && !strings.HasSuffix(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
}

func TestScriptDoesNotSeeFerryEnvironment(t *testing.T) {
	t.Setenv("FERRY_DATABASE_PASSWORD", "hunter2")
	s := newScript(t, "env")
	var log lineLog
	if err := s.Run(context.Background(), log.add); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(log.text(), "hunter2") {
		t.Errorf("the script saw ferry's environment:\n%s", log.text())
	}
}

func TestScriptFailureStopsAtFailingLine(t *testing.T) {
	s := newScript(t, "echo one", "exit 3", "echo never")
	var log lineLog
	err := s.Run(context.Background(), log.add)
	if Outcome(err) != OutcomeFailed || err.Error() != "failed (exit status 3)" {
		t.Fatalf("Run = %v (%s), want failed (exit status 3)", err, Outcome(err))
	}
	if strings.Contains(log.text(), "stdout: never") {
		t.Errorf("a line after the failing one ran:\n%s", log.text())
	}
}

func TestScriptBranchNamesAreOnlyData(t *testing.T) {
	for _, branch := range []string{"x;touch pwned", "$(touch pwned)", "`touch pwned`", "x' && touch pwned '"} {
		t.Run(branch, func(t *testing.T) {
			s := newScript(t, `echo "branch=$FERRY_BRANCH"`, `printf '%s\n' "$FERRY_TAG"`)
			s.Vars = Vars{Branch: branch, Tag: branch}
			var log lineLog
			if err := s.Run(context.Background(), log.add); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(filepath.Join(s.Dir, "pwned")); err == nil {
				t.Fatalf("branch name %q was executed", branch)
			}
			if !strings.Contains(log.text(), "\nstdout: branch="+branch+"\n") || !strings.HasSuffix(log.text(), "\nstdout: "+branch) {
				t.Errorf("the script did not get the branch name verbatim:\n%s", log.text())
			}
		})
	}
}

func TestScriptTimeout(t *testing.T) {
	s := newScript(t, "echo start", "sleep 30")
	s.Timeout = 300 * time.Millisecond
	start := time.Now()
	err := s.Run(context.Background(), func(string, string) {})
	if Outcome(err) != OutcomeTimeout || err.Error() != "timed out after 300ms" {
		t.Fatalf("Run = %v, want timed out after 300ms", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("timeout took %s to end the script", d)
	}
	if (&ScriptError{Outcome: OutcomeTimeout, Timeout: 20 * time.Minute}).Error() != "timed out after 20m" {
		t.Errorf("20 minutes read as %q", (&ScriptError{Outcome: OutcomeTimeout, Timeout: 20 * time.Minute}).Error())
	}
}

// pidOf waits for the script to write a pid into file and returns it.
func pidOf(t *testing.T, file string) int {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		data, _ := os.ReadFile(file)
		if pid, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil {
			return pid
		}
	}
	t.Fatalf("the script never wrote %s", file)
	return 0
}

func alive(pid int) bool {
	state, _, ok := procStat(pid)
	return ok && state != 'Z' && state != 'X' && syscall.Kill(pid, 0) == nil
}

func TestScriptCancelEndsProcessTree(t *testing.T) {
	// A child that ignores SIGTERM, a grandchild, and a process that left the group with setsid.
	s := newScript(t,
		`sh -c 'trap "" TERM; echo $$ > stubborn.pid; while :; do sleep 1; done' &`,
		`setsid sh -c 'echo $$ > escaped.pid; exec sleep 300' &`,
		`sleep 300`)
	s.KillGrace = 2 * time.Second
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, func(string, string) {}) }()
	stubborn, escaped := pidOf(t, filepath.Join(s.Dir, "stubborn.pid")), pidOf(t, filepath.Join(s.Dir, "escaped.pid"))

	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if Outcome(err) != OutcomeCanceled {
			t.Errorf("Run after cancel = %v, want canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return within 5s of cancel")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("cancel took %s", d)
	}
	for name, pid := range map[string]int{"stubborn": stubborn, "escaped": escaped} {
		if alive(pid) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Errorf("the %s process %d outlived the canceled build", name, pid)
		}
	}
}

func TestScriptLeftDaemonIsEnded(t *testing.T) {
	// The daemon keeps stdout open, which would make a naive reader wait forever.
	s := newScript(t, `sleep 300 & echo $! > daemon.pid`, "echo done")
	start := time.Now()
	var log lineLog
	if err := s.Run(context.Background(), log.add); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("a left daemon held the build for %s", d)
	}
	if pid := pidOf(t, filepath.Join(s.Dir, "daemon.pid")); alive(pid) {
		syscall.Kill(pid, syscall.SIGKILL)
		t.Errorf("daemon %d is still running after the build", pid)
	}
	if !strings.Contains(log.text(), "stdout: done") {
		t.Errorf("output lost:\n%s", log.text())
	}
}

func TestScriptHugeOutput(t *testing.T) {
	// 100 MB: a million lines of 100 bytes, then one 1 MB line without a newline.
	s := newScript(t,
		"yes '"+strings.Repeat("x", 100)+"' | head -n 1000000",
		`head -c 1048576 /dev/zero | tr '\0' 'y'`)
	var lines, bytes, longest int
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	err := s.Run(context.Background(), func(_, line string) {
		lines++
		bytes += len(line)
		longest = max(longest, len(line))
	})
	if err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	runtime.ReadMemStats(&after)
	if bytes < 100_000_000 {
		t.Errorf("got %d bytes of output, want 100 MB", bytes)
	}
	if longest > MaxLineBytes {
		t.Errorf("a line of %d bytes was delivered whole; want pieces of at most %d", longest, MaxLineBytes)
	}
	if after.HeapInuse > before.HeapInuse+32<<20 {
		t.Errorf("heap grew from %d to %d bytes while streaming", before.HeapInuse, after.HeapInuse)
	}
	if elapsed > 30*time.Second {
		t.Errorf("100 MB of output took %s", elapsed)
	}
	t.Logf("%d lines, %d bytes in %s", lines, bytes, elapsed)
}

func TestScriptSplitsLongLinesAtCharacters(t *testing.T) {
	// 40000 three-byte characters: 120 KB on one line, split without cutting a character.
	s := newScript(t, "i=0; while [ $i -lt 400 ]; do printf '"+strings.Repeat("中", 100)+"'; i=$((i+1)); done; echo")
	var pieces []string
	if err := s.Run(context.Background(), func(_, line string) { pieces = append(pieces, line) }); err != nil {
		t.Fatal(err)
	}
	pieces = pieces[1:] // the "$ …" line
	joined := strings.Join(pieces, "")
	if len(pieces) < 2 || strings.ContainsRune(joined, '\uFFFD') || joined != strings.Repeat("中", 40000) {
		t.Errorf("got %d pieces, %d bytes, replacement characters: %v", len(pieces), len(joined), strings.ContainsRune(joined, '\uFFFD'))
	}
}

func TestScriptRejectsBadEnv(t *testing.T) {
	for _, name := range []string{"A=B", "FERRY_VERSION", "1X", ""} {
		s := newScript(t, "true")
		s.Env = map[string]string{name: "x"}
		if err := s.Run(context.Background(), func(string, string) {}); err == nil || Outcome(err) != OutcomeFailed {
			t.Errorf("build.env %q was accepted", name)
		}
	}
}
