package deploy

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// feedBuffer is how much of the input is handed to the SSH channel at once.
const feedBuffer = 256 * 1024

// Feed runs script with /bin/sh on the host with input as its stdin, and returns its stdout.
// Unlike Run, the script is not supervised through its stdin: it must end by itself once its
// stdin ends, which is what happens when ctx ends or the connection is lost (stdin is closed
// early, and the script sees a short input). When ctx ends, Feed waits a moment for the script
// to clean up before it closes the session. The error includes the stderr line that says why,
// preferring one about a full disk, and "exit status N" for a non-zero exit.
func (c *Conn) Feed(ctx context.Context, script string, input io.Reader) (string, error) {
	session, err := c.client.NewSession()
	if err != nil {
		return "", fmt.Errorf("open a session on %s: %w", c.target.label(), err)
	}
	defer session.Close()
	stdin, stdout, stderr, err := sessionPipes(session)
	if err != nil {
		return "", fmt.Errorf("connect to the input of a command on %s: %w", c.target.label(), err)
	}
	var out strings.Builder
	var why feedStderr
	var readers sync.WaitGroup
	readers.Add(2)
	go func() {
		defer readers.Done()
		streamLines(stdout, StreamStdout, func(_, l string) { out.WriteString(l + "\n") })
	}()
	go func() { defer readers.Done(); streamLines(stderr, StreamStderr, func(_, l string) { why.add(l) }) }()
	if err := session.Start(script); err != nil {
		return "", fmt.Errorf("start a command on %s: %w", c.target.label(), err)
	}
	// Only the copier writes to and closes stdin (the channel is not safe for a Close during a
	// Write): when ctx ends, its input ends at the next read, and a copier stuck on a full
	// window is freed by closing the session a little later.
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		io.CopyBuffer(stdin, &ctxReader{ctx: ctx, r: input}, make([]byte, feedBuffer))
		stdin.Close()
	}()
	stop := context.AfterFunc(ctx, func() {
		time.AfterFunc(10*time.Second, func() { session.Close() })
	})
	defer stop()
	readers.Wait()
	err = session.Wait()
	session.Close() // a writer still blocked on a full window gives up
	<-copied
	if ctx.Err() != nil {
		return out.String(), fmt.Errorf("command on %s: %w", c.target.label(), ctx.Err())
	}
	if err = exitError(c.target, err); err != nil && why.line() != "" {
		err = fmt.Errorf("%w: %s", err, why.line())
	}
	return out.String(), err
}

// feedStderr keeps the stderr line that best says why a command failed: the first about a full
// disk, else the last.
type feedStderr struct {
	last, full string
}

func (s *feedStderr) add(line string) {
	if s.full == "" && strings.Contains(line, "No space left") {
		s.full = line
	}
	if strings.TrimSpace(line) != "" {
		s.last = line
	}
}

func (s *feedStderr) line() string {
	if s.full != "" {
		return s.full
	}
	return s.last
}

// Quick runs a short script that only reads or renames on the host (no service of the
// release), without Run's supervisor: one shell instead of four processes per command. It
// returns the script's stdout; its error is as Feed's.
func (c *Conn) Quick(ctx context.Context, script string) (string, error) {
	return c.Feed(ctx, script, strings.NewReader(""))
}

// ctxReader reads r until ctx ends, then reports io.EOF: what was read so far is all there is.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if c.ctx.Err() != nil {
		return 0, io.EOF
	}
	return c.r.Read(p)
}
