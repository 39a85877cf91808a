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
	// default 30s. A deployment whose process died is taken over when it runs out.
	LeaseTTL time.Duration
	// MaxAttempts is how often a deployment is started before a lost worker fails it instead
	// of handing it to another; default 2 (one takeover).
	MaxAttempts int
	// Poll is how often the queue is looked at when Wake is not called; default 500ms.
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
		c.LeaseTTL = 30 * time.Second
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 2
	}
	if c.Poll <= 0 {
		c.Poll = 500 * time.Millisecond
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
	cfg  WorkerConfig
	db   *store.DB
	log  *slog.Logger
	wake chan struct{}
}

// NewWorker returns a worker for cfg; Run starts it.
func NewWorker(cfg WorkerConfig) *Worker {
	cfg = cfg.withDefaults()
	return &Worker{cfg: cfg, db: cfg.DB, log: cfg.Logger, wake: make(chan struct{}, 1)}
}

// Wake makes an idle worker look at the queue now instead of at its next poll; call it after
// queueing a deployment in this process. It never blocks.
func (w *Worker) Wake() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// Run claims and runs deployments until ctx ends, and meanwhile ends or hands over the
// deployments of workers that died (see store.ReapDeployments). When ctx ends, a deployment
// in progress stops where it is without being finished: its hosts go back to their previous
// release and its lease runs out, so another process takes it over. Run returns nil once
// everything has stopped, or at once an error when the configuration lacks a DB.
func (w *Worker) Run(ctx context.Context) error {
	if w.db == nil {
		return errors.New("deploy worker: no database")
	}
	var wg sync.WaitGroup
	for range w.cfg.Workers {
		wg.Go(func() { w.claimLoop(ctx) })
	}
	wg.Go(func() { w.reapLoop(ctx) })
	wg.Wait()
	return nil
}

func (w *Worker) claimLoop(ctx context.Context) {
	for ctx.Err() == nil {
		// Each claim gets its own lease token, the fence: once the lease ran out and another
		// loop (of any process, this one too) claimed the deployment, this run's renewals, step
		// updates and finish are refused, and it stops without touching the hosts again.
		lease := store.NewLeaseToken(w.cfg.Owner)
		d, err := w.db.ClaimDeployment(ctx, lease, w.cfg.LeaseTTL)
		if err != nil && ctx.Err() == nil {
			w.log.Error("claim a deployment", "err", err)
		}
		if d != nil {
			w.Wake() // another idle worker may find more
			w.runDeployment(ctx, d, lease)
			continue
		}
		select {
		case <-ctx.Done():
		case <-w.wake:
		case <-time.After(w.cfg.Poll):
		}
	}
}

// reapLoop ends or requeues the deployments whose lease ran out, as often as a lease is
// renewed, so a dead worker's deployment waits at most about one LeaseTTL more.
func (w *Worker) reapLoop(ctx context.Context) {
	every := max(w.cfg.LeaseTTL/3, w.cfg.Poll)
	for {
		requeued, failed, err := w.db.ReapDeployments(ctx, w.cfg.MaxAttempts)
		switch {
		case err != nil && ctx.Err() == nil:
			w.log.Error("reap deployments of lost workers", "err", err)
		case requeued+failed > 0:
			w.log.Warn("deployments of lost workers reaped", "requeued", requeued, "failed", failed)
			w.Wake()
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
	}
}

// Why a deployment's context ended, besides the worker's own context ending.
var (
	errCancelRequested = errors.New("canceled on request")
	errLeaseLost       = errors.New("the lease on the deployment was lost")
)

// renewEvery is how often a running deployment's lease is renewed, which is also how soon a
// cancel request is noticed: a third of the TTL, and at least every second.
func (w *Worker) renewEvery() time.Duration { return min(w.cfg.LeaseTTL/3, time.Second) }

// keepLease renews the lease (token) on deployment id until stop is called or parent (the worker's
// context) ends. A cancel request or a lost lease cancels the deployment's context through
// cancel, with errCancelRequested or errLeaseLost as the cause.
func (w *Worker) keepLease(parent context.Context, id int64, lease string, cancel context.CancelCauseFunc) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(w.renewEvery())
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-parent.Done():
				return
			case <-tick.C:
			}
			canceled, err := w.db.RenewDeployment(parent, id, lease, w.cfg.LeaseTTL)
			switch {
			case store.ErrorCode(err) == store.ECONFLICT:
				w.log.Warn("lost the lease on a deployment", "deployment", id, "err", err)
				cancel(errLeaseLost)
				return
			case err != nil && parent.Err() == nil:
				w.log.Warn("renew the lease on a deployment", "deployment", id, "err", err)
			case canceled:
				// Keep renewing: the hosts in progress still go back to their previous release.
				cancel(errCancelRequested)
			}
		}
	})
	return func() { close(done); wg.Wait() }
}
