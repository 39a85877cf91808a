package deploy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"ferry/store"
	"ferry/store/runner"
)

// Default bounds of the host output a deployment keeps in its log.
const (
	DefaultMaxLogBytes     = 32 << 20
	DefaultMaxHostLogBytes = 4 << 20
)

// WorkerConfig configures a Worker. DB is required; every other field has a default.
type WorkerConfig struct {
	DB *store.DB
	// DataDir is where this machine keeps its copies of artifacts read from the database
	// (<DataDir>/artifacts/<project>/<version>.tar.gz), so that deploying a version again
	// reads it from disk. "" when artifacts are never read from the database (SQLite).
	DataDir string
	// Owner names this process in leases; default "<hostname>:<pid>".
	Owner string
	// Workers is how many deployments this process runs at once; default 2. Deployments to
	// one environment never run at once whatever this says: the store hands out one at a time.
	Workers int
	// LeaseTTL is how long a claimed deployment stays this process's without a renewal;
	// default runner.DefaultLease. A deployment whose process died is taken over when it runs
	// out; one whose process stops cleanly is handed over at once.
	LeaseTTL time.Duration
	// MaxAttempts is how often a deployment is started before a lost worker fails it instead
	// of handing it to another; default 2 (one takeover).
	MaxAttempts int
	// Poll is how often the queue is looked at when Wake is not called; default runner.DefaultPoll.
	Poll time.Duration
	// Dial holds the connect and handshake timeouts and the keepalive interval.
	// OnNewHostKey is set by the worker (it pins the key in the store).
	Dial DialOptions
	// MaxHostConcurrency bounds how many hosts one deployment works on at once, whatever the
	// strategy asks; default 64, so a parallel rollout to 20 or 50 hosts runs in one wave.
	MaxHostConcurrency int
	// MaxLogBytes bounds the output of hosts (their commands' stdout and stderr) kept per
	// deployment; default DefaultMaxLogBytes. Past it, output is dropped with one "log
	// truncated" line and the deployment goes on. ferry's own lines are always kept.
	MaxLogBytes int64
	// MaxHostLogBytes bounds the same per host of a deployment; default DefaultMaxHostLogBytes.
	MaxHostLogBytes int64
	// IdleConnTimeout is how long the SSH connection to a host is kept open after a
	// deployment, so the next deployment or rollback to that host skips the handshake; default
	// 60 seconds, negative dials every host anew. A kept connection is only lent to a
	// deployment whose host has the same address, user, private key and pinned host key (a
	// re-pinned key dials anew), and only while it still answers. They are closed when Run ends.
	IdleConnTimeout time.Duration
	// Logger receives what the worker does at info level and its problems at warn and error;
	// nil discards.
	Logger *slog.Logger
}

func (c WorkerConfig) withDefaults() WorkerConfig {
	if c.Owner == "" {
		host, _ := os.Hostname()
		c.Owner = fmt.Sprintf("%s:%d", host, os.Getpid())
	}
	if c.Workers <= 0 {
		c.Workers = 2
	}
	if c.LeaseTTL <= 0 {
		c.LeaseTTL = runner.DefaultLease
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 2
	}
	if c.Poll <= 0 {
		c.Poll = runner.DefaultPoll
	}
	if c.MaxHostConcurrency <= 0 {
		c.MaxHostConcurrency = 64
	}
	if c.MaxLogBytes <= 0 {
		c.MaxLogBytes = DefaultMaxLogBytes
	}
	if c.MaxHostLogBytes <= 0 {
		c.MaxHostLogBytes = DefaultMaxHostLogBytes
	}
	if c.IdleConnTimeout == 0 {
		c.IdleConnTimeout = 60 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Worker runs queued deployments: it claims them from the store with a lease, puts their
// version on their hosts with the engine (Rollout's steps, one SSH connection per host), and
// records every step, log line, host result and instance in the store. Any number of workers
// in any number of processes may share one database.
type Worker struct {
	cfg    WorkerConfig
	db     *store.DB
	jobs   jobStore
	runner *runner.Runner[*store.Deployment]
	log    *slog.Logger
	// pool keeps the connections of finished deployments for IdleConnTimeout; nil when
	// connections are not kept.
	pool *ConnPool
	// manifests holds the file indexes of the versions this worker deployed last, so that the
	// next version is sent to a host as its difference from one the host keeps.
	manifests *Manifests
}

// jobStore is what the deployment runner needs of the store: the deployments queue.
type jobStore interface {
	ClaimDeployment(ctx context.Context, lease string, ttl time.Duration) (*store.Deployment, error)
	RenewDeployment(ctx context.Context, id int64, lease string, ttl time.Duration) (cancel bool, err error)
	ReapDeployments(ctx context.Context, maxAttempts int) (requeued, failed int, err error)
	ReleaseDeployment(ctx context.Context, id int64, lease string) error
	FinishDeployment(ctx context.Context, id int64, lease, status, reason string) (*store.Deployment, error)
}

// NewWorker returns a worker for cfg; Run starts it.
func NewWorker(cfg WorkerConfig) *Worker {
	cfg = cfg.withDefaults()
	w := &Worker{cfg: cfg, db: cfg.DB, log: cfg.Logger, manifests: NewManifests()}
	if cfg.DB != nil {
		w.jobs = cfg.DB
	}
	if cfg.IdleConnTimeout > 0 {
		w.pool = NewConnPool(cfg.IdleConnTimeout)
	}
	w.runner = runner.New(runner.Config{Owner: cfg.Owner, Workers: cfg.Workers, Lease: cfg.LeaseTTL,
		Poll: cfg.Poll, Logger: cfg.Logger}, w.kind())
	return w
}

// Wake makes an idle worker look at the queue now instead of at its next poll; call it after
// queueing a deployment in this process. It never blocks.
func (w *Worker) Wake() { w.runner.Wake() }

// Run claims and runs deployments until ctx ends, and meanwhile ends or hands over the
// deployments of workers that died (see store.ReapDeployments). When ctx ends, a deployment
// in progress stops where it is without being finished: its hosts in progress go back to their
// previous release and it is handed back to the queue, so another process takes it over at
// once. Run returns nil once everything has stopped, or at once an error when the
// configuration lacks a DB. It closes the connections kept for later deployments when it
// returns; a Worker runs once.
func (w *Worker) Run(ctx context.Context) error {
	if w.db == nil {
		return errors.New("deploy worker: no database")
	}
	if w.pool != nil {
		defer w.pool.Close()
	}
	return w.runner.Run(ctx)
}

// dial connects to t, with a connection kept from an earlier deployment when the pool has one
// for the same target and pinned key; release hands it back to the pool (or closes it).
func (w *Worker) dial(ctx context.Context, t Target, opts DialOptions) (*Conn, error) {
	if w.pool != nil {
		return w.pool.Get(ctx, t, opts)
	}
	return Dial(ctx, t, opts)
}

func (w *Worker) release(c *Conn) {
	if w.pool != nil {
		w.pool.Put(c)
		return
	}
	c.Close()
}

// kind is what a deployment is to the runner.
func (w *Worker) kind() runner.Kind[*store.Deployment] {
	return runner.Kind[*store.Deployment]{
		Name: "deployment",
		Claim: func(ctx context.Context, lease string, ttl time.Duration) (*store.Deployment, int64, error) {
			d, err := w.jobs.ClaimDeployment(ctx, lease, ttl)
			if d == nil {
				return nil, 0, err
			}
			return d, d.ID, err
		},
		Renew: func(ctx context.Context, id int64, lease string, ttl time.Duration) (bool, error) {
			return w.jobs.RenewDeployment(ctx, id, lease, ttl)
		},
		Reap: func(ctx context.Context) (int, error) {
			requeued, failed, err := w.jobs.ReapDeployments(ctx, w.cfg.MaxAttempts)
			return requeued + failed, err
		},
		Release: func(ctx context.Context, id int64, lease string) error {
			return w.jobs.ReleaseDeployment(ctx, id, lease)
		},
		Work: w.runDeployment,
	}
}

// Why a deployment's context ended, besides the worker's own context ending: the runner's.
var (
	errCancelRequested = runner.ErrCancelRequested
	errLeaseLost       = runner.ErrLeaseLost
)
