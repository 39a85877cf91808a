package build

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"

	"ferry/store"
)

// Outcomes of a script run, named as the build statuses they become.
const (
	OutcomeSuccess  = "success"
	OutcomeFailed   = "failed"
	OutcomeTimeout  = "timeout"
	OutcomeCanceled = "canceled"
)

// DefaultKillGrace is how long a script's processes get between SIGTERM and SIGKILL.
const DefaultKillGrace = 3 * time.Second

// Workspace is the directory one build works in: src holds the checkout, home is the script's
// $HOME and tmp its $TMPDIR, so a build leaves nothing outside it.
type Workspace struct {
	Root string
}

// Src returns the checkout directory.
func (w Workspace) Src() string { return filepath.Join(w.Root, "src") }

// Home returns the directory the script gets as $HOME.
func (w Workspace) Home() string { return filepath.Join(w.Root, "home") }

// Tmp returns the directory the script gets as $TMPDIR.
func (w Workspace) Tmp() string { return filepath.Join(w.Root, "tmp") }

// Reset removes everything an earlier build left in the workspace and creates home and tmp
// (the checkout creates src).
func (w Workspace) Reset() error {
	if err := removeTree(w.Root); err != nil {
		return fmt.Errorf("clean workspace %s: %w", w.Root, err)
	}
	for _, d := range []string{w.Home(), w.Tmp()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("create workspace: %w", err)
		}
	}
	return nil
}

// Vars are the facts about a build a script finds in FERRY_* environment variables. They come
// from the webhook and must never be pasted into shell text; the environment is safe.
type Vars struct {
	Project string
	Version string
	Commit  string
	Branch  string
	Tag     string
}

// Script is one run of a pipeline's build.script.
type Script struct {
	// Lines are run one after another by /bin/sh -e, each shown as "$ line" before it runs.
	Lines []string
	// Dir is the working directory (the checkout); Home and Tmp become $HOME and $TMPDIR.
	Dir, Home, Tmp string
	Vars           Vars
	// Env is the pipeline's build.env; it may override PATH, but not FERRY_* variables.
	Env map[string]string
	// Timeout ends the run with OutcomeTimeout; 0 means store.DefaultBuildTimeout.
	Timeout time.Duration
	// KillGrace is the time between SIGTERM and SIGKILL; 0 means DefaultKillGrace.
	KillGrace time.Duration
	// Cache is the project's cache directory, kept between its builds: $FERRY_CACHE_DIR and
	// $XDG_CACHE_HOME. Empty means none.
	Cache string
	// Objects is the mirror's object store the checkout borrows from; a sandbox shows it
	// read-only so git works in the checkout.
	Objects string
	// Sandbox isolates the script; nil runs it as ferry's own user, seeing what ferry sees.
	Sandbox *Sandbox
	// Cookie marks every process of the run (FERRY_BUILD_COOKIE); empty means a random one.
	Cookie string
}

// LineFunc receives the script's output one line at a time, without the newline; stream is
// "stdout" or "stderr". Calls never overlap.
type LineFunc func(stream, line string)

// ScriptError is a run that did not succeed: it failed, timed out or was canceled.
type ScriptError struct {
	Outcome  string
	ExitCode int
	Timeout  time.Duration
}

func (e *ScriptError) Error() string {
	switch e.Outcome {
	case OutcomeTimeout:
		return fmt.Sprintf("timed out after %s", shortDuration(e.Timeout))
	case OutcomeCanceled:
		return "canceled"
	default:
		return fmt.Sprintf("failed (exit status %d)", e.ExitCode)
	}
}

// Outcome returns OutcomeSuccess for nil, the outcome of a *ScriptError, and OutcomeFailed
// for any other error.
func Outcome(err error) string {
	var se *ScriptError
	switch {
	case err == nil:
		return OutcomeSuccess
	case errors.As(err, &se):
		return se.Outcome
	default:
		return OutcomeFailed
	}
}

func shortDuration(d time.Duration) string {
	s := d.String()
	s = strings.TrimSuffix(s, "0s")
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	if s == "" {
		return "0s"
	}
	return s
}

var errTimeout = errors.New("build timed out")

// Run runs the script and sends its output to out as it comes. When the script ends, on
// timeout or when ctx ends, its whole process group gets SIGTERM and then SIGKILL, and so does
// every process that carries this run's cookie in its environment (daemons that left the
// group); Run returns within a few seconds of that. It returns nil on success, a *ScriptError
// when the script failed, timed out or was canceled, and another error when it could not start.
func (s *Script) Run(ctx context.Context, out LineFunc) error {
	env, err := s.environ()
	if err != nil {
		return err
	}
	timeout := orDefault(s.Timeout, store.DefaultBuildTimeout)
	grace := orDefault(s.KillGrace, DefaultKillGrace)
	ctx, cancel := context.WithTimeoutCause(ctx, timeout, errTimeout)
	defer cancel()

	cookie := cmp.Or(s.Cookie, newCookie())
	cmd, err := s.command(append(env, cookieVar+"="+cookie))
	if err != nil {
		return err
	}
	// Pdeathsig: the script (or bwrap, which takes the sandbox down with it) dies with ferry.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	output, err := startOutput(cmd, out)
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		output.abort()
		return fmt.Errorf("start build script in %s: %w", s.Dir, err)
	}
	output.started()
	tree := processTree{pgid: cmd.Process.Pid, cookie: cookie, sandboxed: s.Sandbox != nil}

	waitErr := waitOrStop(ctx, cmd, tree, grace)
	tree.stop(grace) // daemons the script left behind
	output.finish(grace)
	return s.result(ctx, waitErr, timeout)
}

// command returns the script's shell, in a sandbox unless there is none.
func (s *Script) command(env []string) (*exec.Cmd, error) {
	argv := []string{"/bin/sh", "-e", "-c", ScriptText(s.Lines)}
	if s.Sandbox != nil {
		return s.Sandbox.command(sandboxDirs{src: s.Dir, home: s.Home, tmp: s.Tmp, cache: s.Cache, objects: s.Objects}, env, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = s.Dir
	cmd.Env = env
	return cmd, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// waitOrStop waits for the script's shell to exit; if ctx ends first it stops the whole tree.
func waitOrStop(ctx context.Context, cmd *exec.Cmd, tree processTree, grace time.Duration) error {
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		tree.stop(grace)
		return <-done
	}
}

func (s *Script) result(ctx context.Context, waitErr error, timeout time.Duration) error {
	if ctx.Err() != nil {
		if context.Cause(ctx) == errTimeout {
			return &ScriptError{Outcome: OutcomeTimeout, Timeout: timeout, ExitCode: -1}
		}
		return &ScriptError{Outcome: OutcomeCanceled, ExitCode: -1}
	}
	if waitErr == nil {
		return nil
	}
	var ee *exec.ExitError
	if errors.As(waitErr, &ee) {
		return &ScriptError{Outcome: OutcomeFailed, ExitCode: ee.ExitCode()}
	}
	return fmt.Errorf("run build script: %w", waitErr)
}

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// environ builds the script's environment: a small clean base, build.env, then FERRY_*.
// Directories are named as the script sees them: in a sandbox, at its fixed paths.
func (s *Script) environ() ([]string, error) {
	home, tmp, cache := s.Home, s.Tmp, s.Cache
	if s.Sandbox != nil {
		home, tmp = sandboxHome, sandboxTmp
		if cache != "" {
			cache = sandboxCache
		}
	}
	vars := map[string]string{
		"PATH":   cmp.Or(os.Getenv("PATH"), "/usr/local/bin:/usr/bin:/bin"),
		"HOME":   home,
		"TMPDIR": tmp,
		"LANG":   "C.UTF-8",
		"CI":     "true",
	}
	if cache != "" {
		vars["XDG_CACHE_HOME"] = cache
	}
	for _, k := range slices.Sorted(maps.Keys(s.Env)) {
		if !envNameRE.MatchString(k) || strings.HasPrefix(k, "FERRY_") {
			return nil, store.Errorf(store.EINVALID, "build.env: %q cannot be set (names are letters, digits and _, and FERRY_ is ferry's)", k)
		}
		if strings.ContainsRune(s.Env[k], 0) {
			return nil, store.Errorf(store.EINVALID, "build.env: %s holds a NUL byte", k)
		}
		vars[k] = s.Env[k]
	}
	vars["FERRY_PROJECT"] = s.Vars.Project
	vars["FERRY_VERSION"] = s.Vars.Version
	vars["FERRY_COMMIT"] = s.Vars.Commit
	vars["FERRY_BRANCH"] = s.Vars.Branch
	vars["FERRY_TAG"] = s.Vars.Tag
	if cache != "" {
		vars["FERRY_CACHE_DIR"] = cache
	}
	env := make([]string, 0, len(vars)+1)
	for _, k := range slices.Sorted(maps.Keys(vars)) {
		if strings.ContainsRune(vars[k], 0) {
			return nil, store.Errorf(store.EINVALID, "%s holds a NUL byte", k)
		}
		env = append(env, k+"="+vars[k])
	}
	return env, nil
}

// ScriptText joins script lines into one sh program that shows each line, prefixed by "$ ",
// before running it. The shown text is quoted with ShellQuote, so it is only ever printed.
func ScriptText(lines []string) string {
	var b strings.Builder
	for _, line := range lines {
		fmt.Fprintf(&b, "printf '$ %%s\\n' %s\n%s\n", store.ShellQuote(line), line)
	}
	return b.String()
}
