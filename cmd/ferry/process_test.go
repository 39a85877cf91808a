package main

// Helpers that run the real ferry binary as a separate process, the way a user does, and talk
// to it over HTTP like a browser or a script.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binDir holds the ferry binary built once for this test run; TestMain removes it.
var binDir string

// buildFerry builds the binary on first use, so tests that do not start ferry do not wait for it.
// FERRY_BENCH_BINARY names a binary to run instead, so that a benchmark can compare builds
// of two commits run by run.
var buildFerry = sync.OnceValues(func() (string, error) {
	if bin := os.Getenv("FERRY_BENCH_BINARY"); bin != "" {
		return bin, nil
	}
	bin := filepath.Join(binDir, "ferry")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build ./cmd/ferry: %v\n%s", err, out)
	}
	return bin, nil
})

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ferry-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// ferryBinary returns the path of the built ferry binary.
func ferryBinary(tb testing.TB) string {
	tb.Helper()
	bin, err := buildFerry()
	if err != nil {
		tb.Fatal(err)
	}
	return bin
}

// ferryEnv returns this process's environment without any FERRY_* variable, plus vars.
func ferryEnv(vars ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "FERRY_") {
			env = append(env, kv)
		}
	}
	return append(env, vars...)
}

// result is how a one-shot ferry command ended.
type result struct {
	code   int
	stdout string
	stderr string
}

// runFerry runs a ferry command to its end (at most a minute) and returns its exit code and output.
func runFerry(tb testing.TB, env []string, stdin string, args ...string) result {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, ferryBinary(tb), args...)
	cmd.Env = env
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	code := 0
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		tb.Fatalf("ferry %s: %v", strings.Join(args, " "), err)
	}
	if ctx.Err() != nil {
		tb.Fatalf("ferry %s did not end within a minute; stderr:\n%s", strings.Join(args, " "), stderr.String())
	}
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

// server is a running `ferry serve` process.
type server struct {
	tb     testing.TB
	cmd    *exec.Cmd
	logs   *logWriter
	URL    string
	exited chan struct{}
	err    error // how the process ended, once exited is closed
}

// readyLine is the log line ferry writes once it listens; listen= is the real address.
var readyLine = regexp.MustCompile(`msg="ferry is ready".* listen=(\S+)`)

// startServer starts `ferry serve` with env and returns once /readyz answers 200. The process is
// killed when tb ends if the test has not stopped it.
func startServer(tb testing.TB, env []string) *server {
	tb.Helper()
	s, err := launchServer(tb, env)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// launchServer is startServer returning its error, for benchmarks that time it.
func launchServer(tb testing.TB, env []string) (*server, error) {
	cmd := exec.Command(ferryBinary(tb), "serve")
	cmd.Env = env
	logs := &logWriter{ready: make(chan string, 1)}
	cmd.Stdout, cmd.Stderr = logs, logs
	s := &server{tb: tb, cmd: cmd, logs: logs, exited: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start ferry serve: %w", err)
	}
	go func() {
		s.err = cmd.Wait()
		close(s.exited)
	}()
	tb.Cleanup(func() {
		select {
		case <-s.exited:
		default:
			cmd.Process.Kill()
			<-s.exited
		}
		if tb.Failed() {
			tb.Logf("ferry serve log:\n%s", logs.String())
		}
	})
	select {
	case addr := <-logs.ready:
		s.URL = "http://" + addr
	case <-s.exited:
		return nil, fmt.Errorf("ferry serve exited before it was ready (%v):\n%s", s.err, logs.String())
	case <-time.After(time.Minute):
		return nil, fmt.Errorf("ferry serve not ready within a minute:\n%s", logs.String())
	}
	return s, s.waitReady()
}

// waitReady polls /readyz until it answers 200.
func (s *server) waitReady() error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(s.URL + "/readyz")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("/readyz did not answer 200 within 30s (last: %v)", err)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// stop sends SIGTERM and returns the exit code; the process must end within 20 seconds.
func (s *server) stop() int {
	s.tb.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		s.tb.Fatalf("SIGTERM: %v", err)
	}
	select {
	case <-s.exited:
	case <-time.After(20 * time.Second):
		s.tb.Fatalf("ferry serve still runs 20s after SIGTERM:\n%s", s.logs.String())
	}
	var exit *exec.ExitError
	if errors.As(s.err, &exit) {
		return exit.ExitCode()
	}
	if s.err != nil {
		s.tb.Fatalf("wait for ferry serve: %v", s.err)
	}
	return 0
}

// logWriter collects a process's output and reports the listen address of the ready line.
type logWriter struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	partial []byte
	ready   chan string
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		if m := readyLine.FindSubmatch(w.partial[:i]); m != nil {
			select {
			case w.ready <- string(m[1]):
			default:
			}
		}
		w.partial = w.partial[i+1:]
	}
	return len(p), nil
}

func (w *logWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// client talks to a server as a script (with a bearer token) or a browser (with a cookie jar).
// Every body it receives is kept, so a test can check that no secret was ever answered.
type client struct {
	tb     testing.TB
	base   string
	token  string
	http   *http.Client
	mu     sync.Mutex
	bodies []string
}

func newClient(tb testing.TB, base, token string) *client {
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{
		Jar:     jar,
		Timeout: 30 * time.Second,
		// A browser follows redirects too, but tests look at each answer.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return &client{tb: tb, base: base, token: token, http: hc}
}

// response is an answer read whole.
type response struct {
	status int
	header http.Header
	body   string
}

func (c *client) send(req *http.Request) response {
	c.tb.Helper()
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.tb.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.tb.Fatalf("%s %s: read body: %v", req.Method, req.URL.Path, err)
	}
	c.mu.Lock()
	c.bodies = append(c.bodies, string(b))
	c.mu.Unlock()
	return response{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

// get fetches a path.
func (c *client) get(path string) response {
	c.tb.Helper()
	req, err := http.NewRequest("GET", c.base+path, nil)
	if err != nil {
		c.tb.Fatal(err)
	}
	return c.send(req)
}

// postForm submits a form as a browser does.
func (c *client) postForm(path string, form url.Values) response {
	c.tb.Helper()
	req, err := http.NewRequest("POST", c.base+path, strings.NewReader(form.Encode()))
	if err != nil {
		c.tb.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return c.send(req)
}

// api sends a JSON request, checks the status and decodes the answer into out (if not nil).
func (c *client) api(want int, method, path string, body, out any) response {
	c.tb.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			c.tb.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		c.tb.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	r := c.send(req)
	if r.status != want {
		c.tb.Fatalf("%s %s: status %d, want %d: %s", method, path, r.status, want, r.body)
	}
	if out != nil {
		if err := json.Unmarshal([]byte(r.body), out); err != nil {
			c.tb.Fatalf("%s %s: decode %q: %v", method, path, r.body, err)
		}
	}
	return r
}

// answered returns every body this client received.
func (c *client) answered() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.bodies...)
}
