package build

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"ferry/store"
	"ferry/store/runner"
)

// Worker defaults, used where WorkerConfig says nothing.
const (
	DefaultLeaseTTL     = runner.DefaultLease
	DefaultPollInterval = runner.DefaultPoll
	DefaultMaxAttempts  = 3
	DefaultKeepVersions = 20
	// DefaultMaxLogBytes is how much output of one build is kept; the rest is dropped with a
	// line saying so, so a build printing gigabytes cannot fill the database.
	DefaultMaxLogBytes = 64 << 20
)

// Reasons a build's context ends before the build does: the runner's.
var (
	errCancelRequested = runner.ErrCancelRequested
	errLeaseLost       = runner.ErrLeaseLost
	errShutdown        = runner.ErrShutdown
)

// jobStore is what the build runner needs of the store: the builds queue.
type jobStore interface {
	ClaimBuild(ctx context.Context, lease string, ttl time.Duration) (*store.Build, error)
	RenewBuild(ctx context.Context, id int64, lease string, ttl time.Duration) (cancel bool, err error)
	ReapBuilds(ctx context.Context, maxAttempts int) (requeued, failed int, err error)
	ReleaseBuild(ctx context.Context, id int64, lease string) error
	FinishBuild(ctx context.Context, id int64, lease string, r store.BuildResult) (*store.Build, error)
}

// WorkerConfig configures a Worker. DB and DataDir are required.
type WorkerConfig struct {
	DB *store.DB
	// DataDir holds the mirrors (repos/), the artifacts (artifacts/) and, unless WorkDir says
	// otherwise, the workspaces (workspaces/).
	DataDir string
	// WorkDir is where builds run, one directory per attempt of a build, removed after it.
	WorkDir string
	// NoSandbox runs build scripts as ferry's own user, seeing everything ferry sees (its data
	// dir, its secret key, its environment in /proc). Only for machines where everyone who can
	// push is trusted with ferry's secrets. The default runs them in bubblewrap (Sandbox).
	NoSandbox bool
	// Bwrap is the bubblewrap program for the sandbox; "" finds bwrap in PATH.
	Bwrap string
	// GitLab is the API used for commit statuses and tags; a zero BaseURL means none. A
	// project's own GitLab token replaces Token for that project.
	GitLab GitLabConfig
	// BaseURL is ferry's public address, for the links in GitLab's commit statuses.
	BaseURL string
	// Owner names this process in leases; unique per process (default host:pid).
	Owner string
	// Workers is how many builds this process runs at once; 0 means 1.
	Workers int
	// LeaseTTL is how long a claim holds without renewal; default runner.DefaultLease. The
	// runner renews it every LeaseTTL/3 and reaps expired ones every LeaseTTL/6.
	LeaseTTL time.Duration
	// PollInterval is how often an idle worker looks for work; Wake skips the wait.
	PollInterval time.Duration
	// MaxAttempts is how often a build whose worker died is tried before it fails.
	MaxAttempts int
	// MaxLogBytes bounds the output kept per build; 0 means DefaultMaxLogBytes.
	MaxLogBytes int64
	// KillGrace is the time a canceled script gets between SIGTERM and SIGKILL.
	KillGrace time.Duration
	Logger    *slog.Logger
}

// Worker takes builds from the store's queue and runs them: mirror, checkout, script, pack,
// version, GitLab status and tag, retention.
type Worker struct {
	cfg    WorkerConfig
	db     *store.DB
	jobs   jobStore
	runner *runner.Runner[*store.Build]
	git    *Git
	log    *slog.Logger

	clientsMu sync.Mutex
	clients   map[string]*GitLab // by token

	// sandbox isolates build scripts; nil with sandboxErr set when it cannot (every build then
	// fails saying why), nil without an error when NoSandbox turned it off. Set by Run.
	sandbox    *Sandbox
	sandboxErr error
	// reporters tracks the GitLab calls of builds that have left their slot; gitlabCtx ends
	// them when the worker stops and they do not end within gitlabShutdownGrace.
	reporters  sync.WaitGroup
	pending    atomic.Int64 // reporters not ended yet, at most maxPendingReporters
	gitlabCtx  context.Context
	gitlabStop context.CancelFunc
}

// NewWorker returns a worker for cfg with defaults filled in. Nothing runs until Run.
func NewWorker(cfg WorkerConfig) *Worker {
	if cfg.WorkDir == "" {
		cfg.WorkDir = filepath.Join(cfg.DataDir, "workspaces")
	}
	if cfg.Owner == "" {
		host, _ := os.Hostname()
		cfg.Owner = host + ":" + strconv.Itoa(os.Getpid())
	}
	cfg.Workers = max(cfg.Workers, 1)
	cfg.LeaseTTL = orDefault(cfg.LeaseTTL, DefaultLeaseTTL)
	cfg.PollInterval = orDefault(cfg.PollInterval, DefaultPollInterval)
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = DefaultMaxAttempts
	}
	if cfg.MaxLogBytes <= 0 {
		cfg.MaxLogBytes = DefaultMaxLogBytes
	}
	cfg.BaseURL = strings.TrimRight(cfg.BaseURL, "/")
	w := &Worker{
		cfg: cfg, db: cfg.DB, jobs: cfg.DB, git: &Git{DataDir: cfg.DataDir}, log: cfg.Logger,
		clients: map[string]*GitLab{},
	}
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	w.runner = runner.New(runner.Config{Owner: cfg.Owner, Workers: cfg.Workers, Lease: cfg.LeaseTTL,
		Poll: cfg.PollInterval, Logger: w.log}, w.kind())
	w.gitlabCtx, w.gitlabStop = context.WithCancel(context.Background())
	return w
}

// Wake makes an idle worker look for work now, rather than at its next poll. It never blocks.
func (w *Worker) Wake() { w.runner.Wake() }

// Run runs the build workers and the reaper until ctx ends. Builds in flight then are stopped
// (their scripts killed) without being finished and handed back to the queue, so another
// process takes them over at once. Run returns when every worker has stopped.
func (w *Worker) Run(ctx context.Context) error {
	w.setUpSandbox()
	w.sweep()
	err := w.runner.Run(ctx)
	w.waitReporters()
	return err
}

// kind is what a build is to the runner.
func (w *Worker) kind() runner.Kind[*store.Build] {
	return runner.Kind[*store.Build]{
		Name: "build",
		Claim: func(ctx context.Context, lease string, ttl time.Duration) (*store.Build, int64, error) {
			b, err := w.jobs.ClaimBuild(ctx, lease, ttl)
			if b == nil {
				return nil, 0, err
			}
			return b, b.ID, err
		},
		Renew: w.jobs.RenewBuild,
		Reap: func(ctx context.Context) (int, error) {
			w.sweep() // another ferry sharing this data dir may have died
			requeued, failed, err := w.jobs.ReapBuilds(ctx, w.cfg.MaxAttempts)
			return requeued + failed, err
		},
		Release: w.jobs.ReleaseBuild,
		Work:    w.work,
	}
}

// setUpSandbox finds bwrap and says loudly when builds run without the sandbox. A missing
// bwrap does not stop the worker (ferry must start on a fresh machine): each build fails with
// the reason instead.
func (w *Worker) setUpSandbox() {
	if w.cfg.NoSandbox {
		w.log.Warn("BUILD SANDBOX OFF (FERRY_BUILD_SANDBOX=off): build scripts run as ferry's own user and can read ferry's secret key, database and environment; anyone who can push to a project can take over every host")
		return
	}
	w.sandbox, w.sandboxErr = NewSandbox(w.cfg.Bwrap, w.cfg.DataDir, w.cfg.WorkDir)
	if w.sandboxErr != nil {
		w.log.Warn("builds will fail until the build sandbox works", "err", w.sandboxErr)
		return
	}
	w.log.Info("build scripts run in the sandbox", "bwrap", w.sandbox.Path())
}

// runRecords is where each running script is recorded, for the sweep after a crash.
func (w *Worker) runRecords() string { return filepath.Join(w.cfg.DataDir, "running") }

// sweep ends what a killed ferry on this machine left behind: script processes that outlived
// it and their workspaces.
func (w *Worker) sweep() {
	swept, err := sweepRunRecords(w.runRecords(), w.cfg.WorkDir, orDefault(w.cfg.KillGrace, DefaultKillGrace))
	if err != nil {
		w.log.Warn("clean up after a stopped ferry", "err", err)
	}
	for _, rec := range swept {
		w.log.Warn("ended the build processes and removed the workspace a stopped ferry left", "workspace", rec.Workspace, "ferry_pid", rec.FerryPID)
	}
}

// waitReporters gives the GitLab calls still queued gitlabShutdownGrace to end, then ends them.
func (w *Worker) waitReporters() {
	done := make(chan struct{})
	go func() {
		w.reporters.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(gitlabShutdownGrace):
		w.log.Warn("stopping with GitLab commit statuses or tags not sent", "waited", gitlabShutdownGrace)
		w.gitlabStop()
		<-done
	}
}

// work runs one claimed build and records how it ended.
func (w *Worker) work(ctx context.Context, job *runner.Job[*store.Build]) {
	b := job.Value
	logw, err := w.db.OpenLog(ctx, store.JobBuild, b.ID)
	if err != nil {
		w.log.Error("open build log", "build", b.ID, "err", err)
		w.finish(ctx, job, store.BuildResult{Status: store.BuildFailed, Error: "could not open the build log: " + err.Error()})
		return
	}
	out := newBuildLog(w, b.ID, logw)
	r := w.newRun(ctx, job, out)
	r.execute()
	out.close() // execute closed it unless it stopped early
	// The slot is free now. GitLab's answers to the build's status and tag calls may come
	// later; they are added to the closed log one line at a time.
	r.gitlab.end(func() {})
}

// finish records a build's end on a fresh context, retrying while the database is
// unreachable. It reports whether the result was stored; false when another worker holds the
// build now. A success whose version name is taken is recorded as failed.
func (w *Worker) finish(ctx context.Context, job *runner.Job[*store.Build], res store.BuildResult) (*store.Build, bool) {
	var done *store.Build
	err := job.Finish(ctx, func(ctx context.Context) error {
		var err error
		done, err = w.jobs.FinishBuild(ctx, job.ID, job.Lease, res)
		if store.ErrorCode(err) == store.ECONFLICT && res.Status == store.BuildSuccess {
			// Either the lease is gone or the version name is taken; only the latter is ours to end.
			if _, lerr := w.jobs.RenewBuild(ctx, job.ID, job.Lease, w.cfg.LeaseTTL); lerr == nil {
				res = store.BuildResult{Status: store.BuildFailed, Error: "keep version: " + store.ErrorMessage(err)}
				done, err = w.jobs.FinishBuild(ctx, job.ID, job.Lease, res)
			}
		}
		return err
	})
	if err != nil {
		w.log.Error("finish build", "build", job.ID, "status", res.Status, "err", err)
		return nil, false
	}
	return done, true
}

// buildLog sends a build's lines to its log writer, keeping at most max bytes of output.
// Once closed, ferry's own lines (GitLab's late answers) are added to the stored log one by one.
type buildLog struct {
	w         *store.LogWriter
	db        *store.DB
	id        int64
	logger    *slog.Logger
	mu        sync.Mutex
	bytes     int64
	max       int64
	truncated bool
	closed    bool
}

func newBuildLog(w *Worker, id int64, logw *store.LogWriter) *buildLog {
	return &buildLog{w: logw, db: w.db, id: id, logger: w.log, max: w.cfg.MaxLogBytes}
}

// ferry writes a line of ferry's own.
func (l *buildLog) ferry(format string, args ...any) {
	text := fmt.Sprintf(format, args...)
	l.mu.Lock()
	closed := l.closed
	if !closed {
		l.w.Write("ferry", "", text)
	}
	l.mu.Unlock()
	if closed {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := l.db.AppendLogLine(ctx, store.JobBuild, l.id, text); err != nil {
			l.logger.Warn("add a line to a build's log", "build", l.id, "text", text, "err", err)
		}
	}
}

// close stores the last lines and ends the log for its viewers; later calls do nothing.
func (l *buildLog) close() {
	l.mu.Lock()
	closed := l.closed
	l.closed = true
	l.mu.Unlock()
	if closed {
		return
	}
	if err := l.w.Close(); err != nil {
		l.logger.Error("store the last lines of a build log", "build", l.id, "err", err)
	}
}

// line writes a line of the script's output, or drops it past the limit.
func (l *buildLog) line(stream, text string) {
	l.mu.Lock()
	l.bytes += int64(len(text)) + 1
	over := l.bytes > l.max
	first := over && !l.truncated
	l.truncated = l.truncated || over
	l.mu.Unlock()
	switch {
	case first:
		l.ferry("output beyond %s is not kept; the build goes on", byteSize(l.max))
	case !over:
		l.w.Write(stream, "", text)
	}
}

// byteSize writes n bytes as people read them: 512 B, 3 KiB, 64 MiB.
func byteSize(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10:
		return fmt.Sprintf("%d KiB", n>>10)
	default:
		return fmt.Sprintf("%d B", n)
	}
}
