package deploy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"ferry/store"
)

// JobRunStore is what the job run worker needs of the store. It is its own small interface so
// that the claim, lease and cancel logic can move onto the shared runner (store/runner) without
// touching what a step does.
type JobRunStore interface {
	ClaimJobRun(ctx context.Context, owner string, ttl time.Duration) (*store.JobRun, error)
	RenewJobRun(ctx context.Context, id int64, owner string, ttl time.Duration) (bool, error)
	ReapJobRuns(ctx context.Context, maxAttempts int) (int, int, error)
	GetJobRun(ctx context.Context, id int64) (*store.JobRun, error)
	StartRunStep(ctx context.Context, runID int64, owner string, position int) error
	UpdateRunHost(ctx context.Context, runID int64, owner string, position int, hostID int64, u store.RunHostUpdate) error
	FinishRunStep(ctx context.Context, runID int64, owner string, position int, status, errText string) error
	PauseJobRun(ctx context.Context, runID int64, owner string, position int) error
	FinishJobRun(ctx context.Context, id int64, owner, status, errText string) (*store.JobRun, error)
	OpenLog(ctx context.Context, kind string, jobID int64) (*store.LogWriter, error)
	GetHostByID(ctx context.Context, id int64) (*store.Host, error)
	GetExecAccountByID(ctx context.Context, id int64) (*store.ExecAccount, error)
	GetVersion(ctx context.Context, id int64) (*store.Version, error)
	LocalArtifact(ctx context.Context, v *store.Version, dataDir string) (string, error)
	ReadJobFile(ctx context.Context, id int64) (*store.JobFile, []byte, error)
	FireDueSchedules(ctx context.Context) ([]store.ScheduleFired, error)
}

// JobRunnerConfig configures a JobRunner. Store is required.
type JobRunnerConfig struct {
	Store JobRunStore
	// DataDir is where artifacts read from the database are kept (see WorkerConfig.DataDir).
	DataDir string
	// Owner names this process in leases; default "<hostname>:<pid>".
	Owner string
	// Workers is how many runs this process runs at once; default 2.
	Workers int
	// LeaseTTL is how long a claimed run stays this process's without a renewal; default 30s.
	LeaseTTL time.Duration
	// MaxAttempts is how often a run is started before a lost worker fails it; default 2.
	MaxAttempts int
	// Poll is how often the queue and the schedules are looked at; default 500ms (schedules:
	// every SchedulePoll, default 10s).
	Poll         time.Duration
	SchedulePoll time.Duration
	// MaxHostConcurrency bounds how many hosts one step works on at once; default 10.
	MaxHostConcurrency int
	// Dial holds the connect and handshake timeouts.
	Dial DialOptions
	// Logger receives what the runner does; nil discards.
	Logger *slog.Logger
}

// JobRunner runs queued job runs (scripts, file distribution and pauses on hosts) and fires
// due schedules. Any number of runners in any number of processes may share one database.
type JobRunner struct {
	cfg  JobRunnerConfig
	db   JobRunStore
	log  *slog.Logger
	wake chan struct{}
}

// NewJobRunner returns a runner for cfg; Run starts it.
func NewJobRunner(cfg JobRunnerConfig) *JobRunner {
	if cfg.Owner == "" {
		host, _ := os.Hostname()
		cfg.Owner = fmt.Sprintf("%s:%d", host, os.Getpid())
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 2
	}
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = 30 * time.Second
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 2
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 500 * time.Millisecond
	}
	if cfg.SchedulePoll <= 0 {
		cfg.SchedulePoll = 10 * time.Second
	}
	if cfg.MaxHostConcurrency <= 0 {
		cfg.MaxHostConcurrency = 10
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &JobRunner{cfg: cfg, db: cfg.Store, log: cfg.Logger, wake: make(chan struct{}, 1)}
}

// Wake makes an idle runner look at the queue now. It never blocks.
func (w *JobRunner) Wake() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// Run claims and runs job runs, reaps those of dead workers and fires due schedules until
// ctx ends. A run in progress when ctx ends is left unfinished for another process to take
// over when its lease runs out. It fails at once without a store.
func (w *JobRunner) Run(ctx context.Context) error {
	if w.db == nil {
		return errors.New("job runner: no store")
	}
	var wg sync.WaitGroup
	for range w.cfg.Workers {
		wg.Go(func() { w.claimLoop(ctx) })
	}
	wg.Go(func() { w.reapLoop(ctx) })
	wg.Go(func() { w.scheduleLoop(ctx) })
	wg.Wait()
	return nil
}

func (w *JobRunner) claimLoop(ctx context.Context) {
	for ctx.Err() == nil {
		lease := store.NewLeaseToken(w.cfg.Owner)
		r, err := w.db.ClaimJobRun(ctx, lease, w.cfg.LeaseTTL)
		if err != nil && ctx.Err() == nil {
			w.log.Error("claim a job run", "err", err)
		}
		if r != nil {
			w.Wake()
			w.runJob(ctx, r, lease)
			continue
		}
		select {
		case <-ctx.Done():
		case <-w.wake:
		case <-time.After(w.cfg.Poll):
		}
	}
}

func (w *JobRunner) reapLoop(ctx context.Context) {
	every := max(w.cfg.LeaseTTL/3, w.cfg.Poll)
	for {
		requeued, failed, err := w.db.ReapJobRuns(ctx, w.cfg.MaxAttempts)
		switch {
		case err != nil && ctx.Err() == nil:
			w.log.Error("reap job runs of lost workers", "err", err)
		case requeued+failed > 0:
			w.log.Warn("job runs of lost workers reaped", "requeued", requeued, "failed", failed)
			w.Wake()
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
	}
}

// scheduleLoop fires due schedules; the store makes sure one process fires each once.
func (w *JobRunner) scheduleLoop(ctx context.Context) {
	for {
		fired, err := w.db.FireDueSchedules(ctx)
		if err != nil && ctx.Err() == nil {
			w.log.Error("fire due schedules", "err", err)
		}
		for _, f := range fired {
			if f.Err != nil {
				w.log.Warn("a schedule could not queue its run", "schedule", f.ScheduleID, "err", f.Err)
				continue
			}
			w.log.Info("schedule queued a run", "schedule", f.ScheduleID, "run", f.RunID)
			w.Wake()
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(w.cfg.SchedulePoll):
		}
	}
}

// keepRunLease renews the lease on run id until stop is called; a cancel request or a lost
// lease cancels the run's context with errCancelRequested or errLeaseLost.
func (w *JobRunner) keepRunLease(parent context.Context, id int64, lease string, cancel context.CancelCauseFunc) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(min(w.cfg.LeaseTTL/3, time.Second))
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-parent.Done():
				return
			case <-tick.C:
			}
			canceled, err := w.db.RenewJobRun(parent, id, lease, w.cfg.LeaseTTL)
			switch {
			case store.ErrorCode(err) == store.ECONFLICT:
				cancel(errLeaseLost)
				return
			case err != nil && parent.Err() == nil:
				w.log.Warn("renew the lease on a job run", "run", id, "err", err)
			case canceled:
				cancel(errCancelRequested)
			}
		}
	})
	return func() { close(done); wg.Wait() }
}
