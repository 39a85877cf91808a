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
	"strings"
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
// as gone: it has exited and only waits for its parent.
func stopByPidFile(pidFile string, grace time.Duration) string {
	return fmt.Sprintf(`pidfile=%s
ticks=%d
alive() { kill -0 "$1" 2>/dev/null && ! grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null; }
if [ ! -f "$pidfile" ]; then echo "no pid file $pidfile: nothing to stop"; exit 0; fi
pid=$(head -n 1 "$pidfile" | tr -d ' \t\r')
case "$pid" in ''|*[!0-9]*) echo "pid file $pidfile holds no process id: nothing to stop"; exit 0;; esac
if ! alive "$pid"; then echo "process $pid from $pidfile is not running: nothing to stop"; exit 0; fi
echo "sending SIGTERM to process $pid"
kill -TERM "$pid" 2>/dev/null
waited=0
while alive "$pid"; do
  if [ "$waited" -ge "$ticks" ]; then
    echo "process $pid still running after the grace period of %s: sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null
    sleep 0.2
    if alive "$pid"; then echo "process $pid survived SIGKILL" >&2; exit 1; fi
    break
  fi
  sleep 0.05
  waited=$((waited+1))
done
echo "process $pid stopped"
`, store.ShellQuote(pidFile), int(grace/(50*time.Millisecond)), grace)
}

// startWatch is how long a started command is watched for an early exit.
const startWatch = 200 * time.Millisecond

// startRelease runs the start command in current, detached from the SSH session (setsid,
// nohup, output appended to shared/logs/<version>.log), so it outlives the connection and the
// engine does not wait for it. A command that exits non-zero at once fails the start.
func (c *Conn) startRelease(ctx context.Context, l layout, command, version string, out func(stream, line string)) error {
	if command == "" {
		out(StreamFerry, "no start command in .ferry.yml: nothing to start")
		return nil
	}
	script := fmt.Sprintf(`cd %[1]s || exit 1
log=%[2]s
mkdir -p "$(dirname "$log")"
cmd=%[3]s
if command -v setsid >/dev/null 2>&1; then detach=setsid; else detach=; fi
$detach nohup /bin/sh -c "$cmd" >>"$log" 2>&1 </dev/null &
pid=$!
i=0
while [ "$i" -lt %[4]d ] && kill -0 "$pid" 2>/dev/null; do sleep 0.05; i=$((i+1)); done
if kill -0 "$pid" 2>/dev/null; then echo "started in the background as process $pid, output in $log"; exit 0; fi
wait "$pid"
status=$?
if [ "$status" -ne 0 ]; then
  echo "the start command exited with status $status; its last output:" >&2
  tail -n 20 "$log" >&2
  exit "$status"
fi
echo "the start command finished, output in $log"
`, store.ShellQuote(l.current()), store.ShellQuote(l.logFile(version)), store.ShellQuote(command), int(startWatch/(50*time.Millisecond)))
	if err := c.Run(ctx, script, releaseEnv(l, version), out); err != nil {
		return fmt.Errorf("start release %s on %s: %w", version, c.target.label(), err)
	}
	return nil
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
