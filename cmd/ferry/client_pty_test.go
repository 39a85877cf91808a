package main

import (
	"bytes"
	"errors"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
)

// terminal is a ferry command running on a pseudo-terminal, as a person runs it.
type terminal struct {
	t    *testing.T
	cmd  *exec.Cmd
	tty  interface{ Write([]byte) (int, error) }
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
}

func (s *cliSetup) onTerminal(t *testing.T, args ...string) *terminal {
	t.Helper()
	cmd := exec.Command(ferryBinary(t), args...)
	cmd.Env = append(s.env[:len(s.env):len(s.env)], "TERM=xterm")
	ptmx, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 40, Cols: 120})
	if err != nil {
		t.Fatal(err)
	}
	term := &terminal{t: t, cmd: cmd, tty: ptmx, done: make(chan struct{})}
	go func() {
		defer close(term.done)
		buf := make([]byte, 4096)
		for {
			n, err := ptmx.Read(buf)
			term.mu.Lock()
			term.out.Write(buf[:n])
			term.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		ptmx.Close()
	})
	return term
}

func (term *terminal) output() string {
	term.mu.Lock()
	defer term.mu.Unlock()
	return term.out.String()
}

// expect waits until the output holds text, then types answer.
func (term *terminal) expect(text, answer string) {
	term.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(term.output(), text) {
		if time.Now().After(deadline) {
			term.t.Fatalf("no %q on the terminal within 30s:\n%q", text, term.output())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := term.tty.Write([]byte(answer + "\n")); err != nil {
		term.t.Fatal(err)
	}
}

// wait returns the exit code and everything the terminal showed.
func (term *terminal) wait() (int, string) {
	term.t.Helper()
	exited := make(chan error, 1)
	go func() { exited <- term.cmd.Wait() }()
	var err error
	select {
	case err = <-exited:
	case <-time.After(time.Minute):
		term.t.Fatalf("still running after a minute:\n%q", term.output())
	}
	select {
	case <-term.done:
	case <-time.After(5 * time.Second):
	}
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exit.ExitCode(), term.output()
	}
	if err != nil {
		term.t.Fatal(err)
	}
	return 0, term.output()
}

// testOnTerminal runs what a person does at a terminal: a login whose token is not echoed, a
// rollback that asks (no, then yes) and a followed deployment drawn as progress bars.
func testOnTerminal(t *testing.T, s *cliSetup, running, before string) {
	term := s.onTerminal(t, "login", s.srv.URL)
	term.expect("API token", s.token)
	code, out := term.wait()
	if code != 0 || !strings.Contains(out, "as admin") || strings.Contains(out, s.token) {
		t.Errorf("login on a terminal: exit %d, %q (the token must not be echoed)", code, out)
	}

	term = s.onTerminal(t, "rollback", "orders", "staging")
	term.expect("[y/N]", "n")
	code, out = term.wait()
	if code != 1 || !strings.Contains(out, "Deploy "+before+" to staging? [y/N]") || !strings.Contains(out, "not confirmed") {
		t.Errorf("rollback answered no: exit %d, %q", code, out)
	}
	for _, h := range s.cluster.Hosts() {
		assertRunning(t, h, running)
	}

	term = s.onTerminal(t, "rollback", "orders", "staging", "--follow")
	term.expect("[y/N]", "y")
	code, out = term.wait()
	if code != 0 || !strings.Contains(out, "success: "+before+" runs on 2 hosts") {
		t.Errorf("rollback answered yes: exit %d, %q", code, out)
	}
	// The bars: redrawn in place with cursor movements, one per host, with the log above.
	if !strings.Contains(out, "\x1b[") || !strings.Contains(out, "host-1 | ") || !strings.Contains(out, "host-2 ") {
		t.Errorf("no progress bars on the terminal: %q", out)
	}
	for _, h := range s.cluster.Hosts() {
		assertRunning(t, h, before)
	}
}
