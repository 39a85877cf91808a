package deploy

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"ferry/store"
)

// releaseEnv is the environment of the stop, start and health commands of a release: the
// host's variables (l.vars) and the release's own FERRY_VERSION, FERRY_RELEASE_DIR and
// FERRY_SHARED_DIR. Run exports each value quoted with store.ShellQuote: values are data.
func releaseEnv(l layout, version string) map[string]string {
	env := make(map[string]string, len(l.vars)+3)
	for k, v := range l.vars {
		env[k] = v
	}
	env["FERRY_VERSION"] = version
	env["FERRY_RELEASE_DIR"] = l.release(version)
	env["FERRY_SHARED_DIR"] = l.shared()
	return env
}

// stopRelease stops the release current points at: the stop command, else SIGTERM to the pid
// file's process, the grace period, then SIGKILL.
func (c *Conn) stopRelease(ctx context.Context, l layout, spec store.StopSpec, version string, out func(stream, line string)) error {
	script, grace := stopScript(l, spec)
	if script == "" {
		out(StreamFerry, "no stop command or pid file in .ferry.yml: nothing to stop")
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, grace+time.Minute)
	defer cancel()
	if err := c.Run(ctx, script, releaseEnv(l, version), out); err != nil {
		return fmt.Errorf("stop release %s on %s: %w", version, c.target.label(), err)
	}
	return nil
}

// stopScript is the script that stops the release current points at, "" when spec names no
// way to stop it, and the grace period it gives the process.
func stopScript(l layout, spec store.StopSpec) (string, time.Duration) {
	grace := spec.Grace.D()
	if grace <= 0 {
		grace = store.DefaultStopGrace
	}
	switch {
	case spec.Command != "":
		return fmt.Sprintf("cd %s && %s", store.ShellQuote(l.current()), spec.Command), grace
	case spec.PidFile != "":
		pidFile := spec.PidFile
		if !path.IsAbs(pidFile) {
			pidFile = path.Join(l.current(), pidFile)
		}
		return stopByPidFile(pidFile, grace), grace
	}
	return "", grace
}

// stopByPidFile is a POSIX sh script that ends the process named in pidFile. A zombie counts
// as gone: it has exited and only waits for its parent. It runs no program but kill's signals
// and sleep: the pid file and /proc are read with the shell's own read, so a host under load
// starts as few processes as it can. After SIGTERM it looks again after 5, 10, 20 and then
// every 50 ms, so a process that ends at once is seen gone within milliseconds.
func stopByPidFile(pidFile string, grace time.Duration) string {
	return fmt.Sprintf(`pidfile=%s
grace=%d
alive() {
  kill -0 "$1" 2>/dev/null || return 1
  state=
  while read -r key value _; do
    if [ "$key" = State: ]; then state=$value; break; fi
  done 2>/dev/null <"/proc/$1/status"
  [ "$state" != Z ]
}
if [ ! -f "$pidfile" ]; then echo "no pid file $pidfile: nothing to stop"; exit 0; fi
pid=
read -r pid _ <"$pidfile" || :
pid=${pid%%"`+"\r"+`"}
case "$pid" in ''|*[!0-9]*) echo "pid file $pidfile holds no process id: nothing to stop"; exit 0;; esac
if ! alive "$pid"; then echo "process $pid from $pidfile is not running: nothing to stop"; exit 0; fi
echo "sending SIGTERM to process $pid"
kill -TERM "$pid" 2>/dev/null
waited=0
step=5
while alive "$pid"; do
  if [ "$waited" -ge "$grace" ]; then
    echo "process $pid still running after the grace period of %s: sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null
    i=0
    while alive "$pid" && [ "$i" -lt 50 ]; do sleep 0.02; i=$((i+1)); done
    if alive "$pid"; then echo "process $pid survived SIGKILL" >&2; exit 1; fi
    break
  fi
  case $step in 5) sleep 0.005;; 10) sleep 0.01;; 20) sleep 0.02;; *) sleep 0.05;; esac
  waited=$((waited+step))
  case $step in 5) step=10;; 10) step=20;; *) step=50;; esac
done
echo "process $pid stopped"
`, store.ShellQuote(pidFile), grace.Milliseconds(), grace)
}

// startWatch is how long a started command is watched for an early exit.
const startWatch = 200 * time.Millisecond

// startScript runs command in current, detached from the SSH session (setsid, nohup, output
// appended to shared/logs/<version>.log), so it outlives the connection and the engine does not
// wait for it; it then prints launched (a line of its own, for the engine to begin the health
// check while the start is watched) and watches the command for startWatch: one that exits
// non-zero in that time fails the script with the command's status and the end of its log.
func startScript(l layout, command, version, launched string) string {
	return fmt.Sprintf(`cd %[1]s || exit 1
log=%[2]s
[ -d "${log%%/*}" ] || mkdir -p "${log%%/*}"
cmd=%[3]s
if command -v setsid >/dev/null 2>&1; then detach=setsid; else detach=; fi
$detach nohup /bin/sh -c "$cmd" >>"$log" 2>&1 </dev/null &
pid=$!
echo "started in the background as process $pid, output in $log"
echo %[5]s
sleep %[4]s
if kill -0 "$pid" 2>/dev/null; then exit 0; fi
wait "$pid"
status=$?
if [ "$status" -ne 0 ]; then
  echo "the start command exited with status $status; its last output:" >&2
  tail -n 20 "$log" >&2
  exit "$status"
fi
echo "the start command finished, output in $log"
`, store.ShellQuote(l.current()), store.ShellQuote(l.logFile(version)), store.ShellQuote(command),
		strconv.FormatFloat(startWatch.Seconds(), 'f', -1, 64), launched)
}

// startRun is one start of a release: the line its start script prints once the command is
// launched, and the health check begun then.
type startRun struct {
	d        *hostDeploy
	ctx      context.Context
	version  string
	spec     store.DeploySpec
	launched string
	early    *earlyHealth
}

func (d *hostDeploy) newStart(ctx context.Context, version string, spec store.DeploySpec) *startRun {
	return &startRun{d: d, ctx: ctx, version: version, spec: spec, launched: newMarker("launched")}
}

// startAndCheck starts the release current points at and waits for its health check, both as
// spec (that release's own deploy steps) says. The health check begins as soon as the start
// command is launched, while the start is still watched for an early exit; its log lines
// follow the start's, and a start that fails ends it.
func (d *hostDeploy) startAndCheck(ctx context.Context, version string, spec store.DeploySpec) error {
	d.ev.step(StepStart)
	s := d.newStart(ctx, version, spec)
	if spec.Start == "" {
		d.ev.say("no start command in .ferry.yml: nothing to start")
		return s.finish(ctx, nil)
	}
	relay := func(stream, line string) {
		if stream == StreamStdout && s.consumes(line) {
			return
		}
		d.ev.log(stream, line)
	}
	return s.finish(ctx, d.conn.Run(ctx, startScript(d.l, spec.Start, version, s.launched), releaseEnv(d.l, version), relay))
}

// consumes reports whether line is the start script's launch marker, and then begins the
// health check, unless the new release's after_start hook must run before it.
func (s *startRun) consumes(line string) bool {
	if line != s.launched {
		return false
	}
	if s.version != s.d.rel.Version || len(hookCommands(s.d.spec.Hooks, HookAfterStart)) == 0 {
		s.early = s.d.beginHealth(s.ctx, s.version, s.spec.Health)
	}
	return true
}

// finish ends the start whose command ended with err: a failed start ends the health check
// begun early and is the error; otherwise the new release's after_start hook runs (when the
// check did not begin early) and the health check's outcome is the error.
func (s *startRun) finish(ctx context.Context, err error) error {
	d := s.d
	if err != nil {
		if s.early != nil {
			s.early.drop()
		}
		return fmt.Errorf("start release %s on %s: %w", s.version, d.conn.target.label(), err)
	}
	if s.early == nil {
		if s.version == d.rel.Version { // hooks.go: the new release's after_start, before its health check
			if err := d.hookOnce(ctx, HookAfterStart); err != nil {
				return err
			}
		}
		s.early = d.beginHealth(ctx, s.version, s.spec.Health)
	}
	d.ev.step(StepHealth)
	if err := s.early.result(d.ev.log); err != nil {
		return fmt.Errorf("release %s on %s: %w", s.version, d.conn.target.label(), err)
	}
	return nil
}

// earlyHealth is a health check running beside the start's watch. It holds its log lines back
// until the start step is over, so the log reads start, then health.
type earlyHealth struct {
	cancel context.CancelFunc
	done   chan struct{}
	err    error

	mu   sync.Mutex
	held [][2]string
	out  func(stream, line string) // nil while the lines are held
}

func (d *hostDeploy) beginHealth(ctx context.Context, version string, spec store.HealthSpec) *earlyHealth {
	ctx, cancel := context.WithCancel(ctx)
	h := &earlyHealth{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(h.done)
		h.err = d.conn.waitHealthy(ctx, d.l, spec, version, h.log)
	}()
	return h
}

func (h *earlyHealth) log(stream, line string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.out == nil {
		h.held = append(h.held, [2]string{stream, line})
		return
	}
	h.out(stream, line)
}

// drop ends the check of a start that failed, and what it said with it.
func (h *earlyHealth) drop() {
	h.cancel()
	<-h.done
}

// result passes what the check said so far, and what it says next, to out, and returns its
// outcome once it ends. A check that already passed says only that: the tries before were made
// while the service was still coming up, and are no news.
func (h *earlyHealth) result(out func(stream, line string)) error {
	h.mu.Lock()
	select {
	case <-h.done:
		if h.err == nil && len(h.held) > 0 {
			h.held = h.held[len(h.held)-1:]
		}
	default:
	}
	for _, l := range h.held {
		out(l[0], l[1])
	}
	h.held, h.out = nil, out
	h.mu.Unlock()
	<-h.done
	h.cancel()
	return h.err
}

// waitHealthy polls the health check until it passes or its timeout ends. Without a health
// check in .ferry.yml a started release counts as healthy.
func (c *Conn) waitHealthy(ctx context.Context, l layout, spec store.HealthSpec, version string, out func(stream, line string)) error {
	if spec.HTTP == "" && spec.Command == "" {
		out(StreamFerry, "no health check in .ferry.yml: taking the start as success")
		return nil
	}
	wait := spec.Timeout.D()
	if wait <= 0 {
		wait = store.DefaultHealthWait
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	check := func(ctx context.Context) (string, error) { return c.checkCommand(ctx, l, spec.Command, version) }
	what := "health command " + spec.Command
	if spec.HTTP != "" {
		check = func(ctx context.Context) (string, error) { return c.checkHTTP(ctx, spec.HTTP) }
		what = "health check " + spec.HTTP
	}
	return poll(ctx, what, wait, check, out)
}

// poll runs check until it passes, logging each new reason it fails.
func poll(ctx context.Context, what string, wait time.Duration, check func(context.Context) (string, error), out func(stream, line string)) error {
	interval := 100 * time.Millisecond
	last := ""
	for {
		attempt, cancel := context.WithTimeout(ctx, 5*time.Second)
		answer, err := check(attempt)
		cancel()
		if err == nil {
			out(StreamFerry, fmt.Sprintf("%s passed: %s", what, answer))
			return nil
		}
		if err.Error() != last {
			last = err.Error()
			out(StreamFerry, fmt.Sprintf("%s: not yet healthy: %s", what, last))
		}
		select {
		case <-ctx.Done():
			if ctx.Err() == context.DeadlineExceeded {
				return fmt.Errorf("%s did not pass within %s: %s", what, wait, last)
			}
			return fmt.Errorf("%s: %w", what, ctx.Err())
		case <-time.After(interval):
		}
		interval = min(interval*2, time.Second)
	}
}

// checkHTTP asks the URL through the SSH connection, so its host is as seen from the target.
// HTTPS certificates are not verified: the name is the host's own (often 127.0.0.1) and the
// tunnel is already authenticated.
func (c *Conn) checkHTTP(ctx context.Context, rawURL string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", fmt.Errorf("health URL %q: %w", rawURL, err)
	}
	client := &http.Client{Transport: &http.Transport{
		DialContext:       func(ctx context.Context, _, _ string) (net.Conn, error) { return c.Dial(ctx, "tcp", hostPort(u)) },
		DisableKeepAlives: true,
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true},
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return "", fmt.Errorf("health URL %q: %w", rawURL, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", plainDialError(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
	answer := strings.TrimSpace(resp.Status + " " + strings.Join(strings.Fields(string(body)), " "))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return "", fmt.Errorf("answered %s", answer)
	}
	return answer, nil
}

func hostPort(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	if u.Scheme == "https" {
		return net.JoinHostPort(u.Hostname(), "443")
	}
	return net.JoinHostPort(u.Hostname(), "80")
}

// plainDialError shortens the http client's wrapped errors to their cause.
func plainDialError(err error) error {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "connect failed"), strings.Contains(msg, "Connection refused"):
		return fmt.Errorf("connection refused")
	case strings.Contains(msg, "context deadline exceeded"):
		return fmt.Errorf("no answer within 5s")
	}
	return err
}

func (c *Conn) checkCommand(ctx context.Context, l layout, command, version string) (string, error) {
	var lastLine string
	err := c.Run(ctx, fmt.Sprintf("cd %s && %s", store.ShellQuote(l.current()), command), releaseEnv(l, version), func(_, line string) {
		if strings.TrimSpace(line) != "" {
			lastLine = line
		}
	})
	if err != nil {
		if lastLine != "" {
			return "", fmt.Errorf("%w: %s", err, lastLine)
		}
		return "", err
	}
	return "exit status 0", nil
}
