package deploy

import (
	"bufio"
	"context"
	"errors"
	"ferry/store"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// Streams a log line can come from.
const (
	StreamStdout = "stdout"
	StreamStderr = "stderr"
	// StreamFerry is for what the engine itself says about a step.
	StreamFerry = "ferry"
)

// maxLine is the longest piece of output passed on as one line; longer lines are split.
const maxLine = 64 * 1024

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// exportPrefix returns "export K='v'; …" for env, in a stable order.
func exportPrefix(env map[string]string) (string, error) {
	keys := make([]string, 0, len(env))
	for k := range env {
		if !envName.MatchString(k) {
			return "", fmt.Errorf("%q is not a valid environment variable name", k)
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "export %s=%s; ", k, store.ShellQuote(env[k]))
	}
	return b.String(), nil
}

// Run runs cmd with /bin/sh on the host, with env exported first, and passes every line of its
// stdout and stderr to out (which may be nil; calls are never concurrent). Canceling ctx, or
// losing the connection, kills the command's whole process group on the host (see supervised).
// A command that exits non-zero returns an error saying "exit status N".
func (c *Conn) Run(ctx context.Context, cmd string, env map[string]string, out func(stream, line string)) error {
	prefix, err := exportPrefix(env)
	if err != nil {
		return err
	}
	session, err := c.client.NewSession()
	if err != nil {
		return fmt.Errorf("open a session on %s: %w", c.target.label(), err)
	}
	defer session.Close()
	stdin, stdout, stderr, err := sessionPipes(session)
	if err != nil {
		return fmt.Errorf("connect to the output of a command on %s: %w", c.target.label(), err)
	}
	var readers sync.WaitGroup
	readers.Add(2)
	emit := serialized(out)
	go func() { defer readers.Done(); streamLines(stdout, StreamStdout, emit) }()
	go func() { defer readers.Done(); streamLines(stderr, StreamStderr, emit) }()
	if err := session.Start(supervised(prefix + cmd)); err != nil {
		return fmt.Errorf("start a command on %s: %w", c.target.label(), err)
	}
	stop := context.AfterFunc(ctx, func() {
		stdin.Close() // the supervisor on the host kills the command when its stdin ends
		time.AfterFunc(3*time.Second, func() { session.Close() })
	})
	defer stop()
	readers.Wait()
	err = session.Wait()
	if ctx.Err() != nil {
		return fmt.Errorf("command on %s: %w", c.target.label(), ctx.Err())
	}
	return exitError(c.target, err)
}

func sessionPipes(s *ssh.Session) (io.WriteCloser, io.Reader, io.Reader, error) {
	stdin, err := s.StdinPipe()
	if err != nil {
		return nil, nil, nil, err
	}
	stdout, err := s.StdoutPipe()
	if err != nil {
		return nil, nil, nil, err
	}
	stderr, err := s.StderrPipe()
	return stdin, stdout, stderr, err
}

func serialized(out func(stream, line string)) func(stream, line string) {
	var mu sync.Mutex
	return func(stream, line string) {
		if out != nil {
			mu.Lock()
			defer mu.Unlock()
			out(stream, line)
		}
	}
}

// supervised wraps script so that it runs in its own process group under /bin/sh, watched by
// a reader of the session's stdin: when stdin ends (the engine canceled, or the connection
// died) the whole group is killed. sshd cannot be relied on for that: it refuses "signal"
// requests for root logins and keeps a command running after its channel closes.
func supervised(script string) string {
	q := store.ShellQuote(script)
	return `exec 3<&0
if command -v setsid >/dev/null 2>&1; then setsid /bin/sh -c ` + q + ` </dev/null & else /bin/sh -c ` + q + ` </dev/null & fi
pid=$!
( while read -r _; do :; done; kill -KILL -"$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null ) <&3 &
watcher=$!
exec 3<&-
wait "$pid"; status=$?
kill "$watcher" 2>/dev/null
exit "$status"`
}

func exitError(t Target, err error) error {
	var exit *ssh.ExitError
	var missing *ssh.ExitMissingError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &exit) && exit.Signal() != "":
		return fmt.Errorf("killed by signal %s", exit.Signal())
	case errors.As(err, &exit):
		return fmt.Errorf("exit status %d", exit.ExitStatus())
	case errors.As(err, &missing), errors.Is(err, io.EOF):
		return fmt.Errorf("the connection to %s was lost before the command finished", t.label())
	}
	return fmt.Errorf("command on %s: %w", t.label(), err)
}

// streamLines passes r to emit line by line, splitting lines longer than maxLine.
func streamLines(r io.Reader, stream string, emit func(stream, line string)) {
	br := bufio.NewReaderSize(r, maxLine)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			emit(stream, strings.TrimRight(string(line), "\r\n"))
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			io.Copy(io.Discard, r)
			return
		}
	}
}

// Output runs cmd like Run and returns its stdout; stderr lines go to out. Its error includes
// the last stderr line, which usually says why a command failed.
func (c *Conn) Output(ctx context.Context, cmd string, out func(stream, line string)) (string, error) {
	var stdout strings.Builder
	var lastErr string
	err := c.Run(ctx, cmd, nil, func(stream, line string) {
		if stream == StreamStdout {
			stdout.WriteString(line + "\n")
			return
		}
		lastErr = line
		if out != nil {
			out(stream, line)
		}
	})
	if err != nil && lastErr != "" {
		err = fmt.Errorf("%w: %s", err, lastErr)
	}
	return stdout.String(), err
}
