package deploy

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"ferry/store"
	"ferry/store/runner"
)

// JobRunStore is what the job run worker needs of the store: the runs queue (claimed and
// leased by store/runner, as builds and deployments are), the writes of a run, and what a
// step reads (hosts, accounts, versions, files) and the schedules.
type JobRunStore interface {
	ClaimJobRun(ctx context.Context, owner string, ttl time.Duration) (*store.JobRun, error)
	RenewJobRun(ctx context.Context, id int64, owner string, ttl time.Duration) (bool, error)
	ReapJobRuns(ctx context.Context, maxAttempts int) (int, int, error)
	ReleaseJobRun(ctx context.Context, id int64, lease string) error
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
	// LeaseTTL is how long a claimed run stays this process's without a renewal; default
	// runner.DefaultLease.
	LeaseTTL time.Duration
	// MaxAttempts is how often a run is started before a lost worker fails it; default 2.
	MaxAttempts int
	// Poll is how often the queue is looked at; default runner.DefaultPoll. SchedulePoll is
	// how often due schedules are looked for; default 10s.
	Poll         time.Duration
	SchedulePoll time.Duration
	// MaxHostConcurrency bounds how many hosts one step works on at once; default 10.
	MaxHostConcurrency int
	// Dial holds the connect and handshake timeouts.
	Dial DialOptions
	// Logger receives what the runner does; nil discards.
	Logger *slog.Logger
}

// JobRunner runs queued job runs (scripts, file distribution and pauses on hosts) as a kind
// of job of store/runner, and fires due schedules. Any number of runners in any number of
// processes may share one database.
type JobRunner struct {
	cfg    JobRunnerConfig
	db     JobRunStore
	log    *slog.Logger
	runner *runner.Runner[*store.JobRun]
}

// NewJobRunner returns a runner for cfg; Run starts it.
func NewJobRunner(cfg JobRunnerConfig) *JobRunner {
	if cfg.Workers <= 0 {
		cfg.Workers = 2
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 2
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
	w := &JobRunner{cfg: cfg, db: cfg.Store, log: cfg.Logger}
	w.runner = runner.New(runner.Config{Owner: cfg.Owner, Workers: cfg.Workers, Lease: cfg.LeaseTTL, Poll: cfg.Poll,
		Logger: cfg.Logger}, w.kind())
	return w
}

// Wake makes an idle runner look at the queue now. It never blocks.
func (w *JobRunner) Wake() { w.runner.Wake() }

// Run claims and runs job runs, reaps those of dead workers and fires due schedules until
// ctx ends. A run in progress when ctx ends is handed back to the queue, its step in progress
// to be run again on the hosts that had not finished it. It fails at once without a store.
func (w *JobRunner) Run(ctx context.Context) error {
	if w.db == nil {
		return errors.New("job runner: no store")
	}
	var wg sync.WaitGroup
	wg.Go(func() { w.scheduleLoop(ctx) })
	err := w.runner.Run(ctx)
	wg.Wait()
	return err
}

// kind is what a job run is to the runner.
func (w *JobRunner) kind() runner.Kind[*store.JobRun] {
	return runner.Kind[*store.JobRun]{
		Name: "run",
		Claim: func(ctx context.Context, lease string, ttl time.Duration) (*store.JobRun, int64, error) {
			r, err := w.db.ClaimJobRun(ctx, lease, ttl)
			if r == nil {
				return nil, 0, err
			}
			return r, r.ID, err
		},
		Renew: w.db.RenewJobRun,
		Reap: func(ctx context.Context) (int, error) {
			requeued, failed, err := w.db.ReapJobRuns(ctx, w.cfg.MaxAttempts)
			return requeued + failed, err
		},
		Release: w.db.ReleaseJobRun,
		Work:    w.runJob,
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
