// Package runner runs one kind of job claimed from a table that is a queue: builds,
// deployments, notice deliveries. The kind says how to claim, renew, reap, release and do one
// job; the runner does the rest the same way for every kind: N workers under one group that
// stop when the context ends, a lease with its own token per claim renewed on one rule, the
// expired leases of dead processes reaped on one rule, a cancel request and a lost lease
// noticed the same way, and the final write made on a fresh context.
//
// Timing, all counted on the database's clock (the store compares leases with its now()):
// a claim holds for Lease; it is renewed every Lease/3; every process reaps expired leases
// every Lease/6. A job of a process killed with kill -9 is therefore free again at most
// Lease + Lease/6 after the kill (7 s with the default 6 s lease), and a process that stops
// cleanly releases its jobs at once so that another claims them within its poll interval.
package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"time"

	"ferry/store"
)

// Defaults used where Config says nothing.
const (
	// DefaultLease is how long a claim holds without renewal. Short, so that a dead process's
	// job is taken over within seconds; a live process renews it three times per lease.
	DefaultLease = 6 * time.Second
	// DefaultPoll is how often an idle worker looks for work when nothing wakes it.
	DefaultPoll = 500 * time.Millisecond
	// FinishTimeout bounds the final write of a job (its status), retries included.
	FinishTimeout = 30 * time.Second
	// MinLease is the shortest lease accepted: renewals must have time to reach the database.
	MinLease = 300 * time.Millisecond
)

// Why a job's context ended before its work did; context.Cause(ctx) returns one of them.
var (
	// ErrCancelRequested: someone asked for the job to be canceled. The lease is still
	// renewed until the work returns, so a deployment can put its hosts back first.
	ErrCancelRequested = errors.New("cancel requested")
	// ErrLeaseLost: the lease ran out and the job is another claim's now. The work must stop
	// without writing anything more of the job (the store refuses it anyway).
	ErrLeaseLost = errors.New("lease lost: another worker holds the job now")
	// ErrShutdown: this process is stopping. The job is released when the work returns, so
	// another process takes it over at once.
	ErrShutdown = errors.New("worker shutting down")
)

// Kind is what one kind of job does; the runner calls its functions. Claim, Renew and Work
// are required.
type Kind[J any] struct {
	// Name names the kind in logs ("build", "deployment").
	Name string
	// Claim takes one job under lease until the database's now+ttl and returns it with its id;
	// id 0 when there is nothing to claim.
	Claim func(ctx context.Context, lease string, ttl time.Duration) (job J, id int64, err error)
	// Renew extends the lease to now+ttl and reports whether a cancel was asked for. An error
	// with code store.ECONFLICT means the lease is lost.
	Renew func(ctx context.Context, id int64, lease string, ttl time.Duration) (cancel bool, err error)
	// Reap ends or requeues the jobs whose lease ran out and returns how many; nil when an
	// expired lease needs nothing more to be claimable again.
	Reap func(ctx context.Context) (int, error)
	// Release hands a job this lease still holds back to the queue, for another process to
	// claim at once; a job already finished is left alone. nil: the lease just runs out.
	Release func(ctx context.Context, id int64, lease string) error
	// Work does the job. ctx ends, with one of the Err causes above, when the job is canceled,
	// its lease is lost or the process stops; Work should then stop soon. It writes the job's
	// end itself, with Job.Finish.
	Work func(ctx context.Context, job *Job[J])
}

// Config configures a Runner; every field has a default.
type Config struct {
	// Owner names this process in leases; default "<hostname>:<pid>". Each worker adds its
	// number and each claim a random token (store.NewLeaseToken).
	Owner string
	// Workers is how many jobs run at once; default 1.
	Workers int
	// Lease is how long a claim holds without renewal; default DefaultLease.
	Lease time.Duration
	// Poll is how often an idle worker looks for work; default DefaultPoll. Wake skips the wait.
	Poll time.Duration
	// Logger receives lost leases and failed queries; nil discards.
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.Owner == "" {
		host, _ := os.Hostname()
		c.Owner = host + ":" + strconv.Itoa(os.Getpid())
	}
	c.Workers = max(c.Workers, 1)
	if c.Lease <= 0 {
		c.Lease = DefaultLease
	}
	c.Lease = max(c.Lease, MinLease)
	if c.Poll <= 0 {
		c.Poll = DefaultPoll
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// RenewEvery is how often a lease of length lease is renewed, which is also how soon a
// cancel request is noticed.
func RenewEvery(lease time.Duration) time.Duration { return lease / 3 }

// ReapEvery is how often a process reaps the expired leases of dead processes.
func ReapEvery(lease time.Duration) time.Duration { return lease / 6 }

// Runner runs jobs of one kind; see the package comment.
type Runner[J any] struct {
	cfg  Config
	kind Kind[J]
	log  *slog.Logger
	wake chan struct{}
}

// New returns a runner of kind with cfg's defaults filled in. Nothing runs until Run.
func New[J any](cfg Config, kind Kind[J]) *Runner[J] {
	cfg = cfg.withDefaults()
	return &Runner[J]{cfg: cfg, kind: kind, log: cfg.Logger.With("kind", kind.Name), wake: make(chan struct{}, 1)}
}

// Config returns the runner's configuration with its defaults.
func (r *Runner[J]) Config() Config { return r.cfg }

// Wake makes an idle worker look for work now, rather than at its next poll. It never blocks.
func (r *Runner[J]) Wake() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Run claims and runs jobs with cfg.Workers workers, and reaps the jobs of dead processes,
// until ctx ends. Jobs in flight then get ErrShutdown; Run returns once every worker is back
// (after its job is released). It returns an error only when the kind lacks a function.
func (r *Runner[J]) Run(ctx context.Context) error {
	if r.kind.Claim == nil || r.kind.Renew == nil || r.kind.Work == nil {
		return fmt.Errorf("run %s jobs: the kind needs Claim, Renew and Work", r.kind.Name)
	}
	var wg sync.WaitGroup
	for i := range r.cfg.Workers {
		owner := fmt.Sprintf("%s:%d", r.cfg.Owner, i)
		wg.Go(func() { r.loop(ctx, owner) })
	}
	if r.kind.Reap != nil {
		wg.Go(func() { r.reapLoop(ctx) })
	}
	wg.Wait()
	return nil
}

// loop claims and runs jobs one after another until ctx ends.
func (r *Runner[J]) loop(ctx context.Context, owner string) {
	for ctx.Err() == nil {
		// A token per claim is the fence: once this claim's lease ran out and the job was
		// claimed again, even by another worker of this process, nothing of this claim is
		// accepted any more.
		lease := store.NewLeaseToken(owner)
		job, id, err := r.kind.Claim(ctx, lease, r.cfg.Lease)
		if err != nil && ctx.Err() == nil {
			r.log.Error("claim a job", "err", err)
		}
		if err != nil || id == 0 {
			r.idle(ctx)
			continue
		}
		r.Wake() // there may be more work for another idle worker
		r.run(ctx, &Job[J]{ID: id, Lease: lease, Value: job, runner: r})
	}
}

func (r *Runner[J]) idle(ctx context.Context) {
	t := time.NewTimer(r.cfg.Poll)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-r.wake:
	case <-t.C:
	}
}

// reapLoop reaps every ReapEvery(Lease) until ctx ends.
func (r *Runner[J]) reapLoop(ctx context.Context) {
	t := time.NewTicker(ReapEvery(r.cfg.Lease))
	defer t.Stop()
	for {
		n, err := r.kind.Reap(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			r.log.Error("reap the jobs of lost workers", "err", err)
		case n > 0:
			r.log.Warn("took over the jobs of lost workers", "jobs", n)
			r.Wake()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// run works one claimed job under its lease, then releases it unless the lease was lost.
func (r *Runner[J]) run(ctx context.Context, job *Job[J]) {
	jobCtx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	defer cancel(nil)
	stopWatch := context.AfterFunc(ctx, func() { cancel(ErrShutdown) })
	defer stopWatch()
	// The lease is kept until the work returns, whatever ended jobCtx: a canceled or stopping
	// job may still be putting things back.
	leaseCtx, stopLease := context.WithCancel(context.WithoutCancel(ctx))
	var renewing sync.WaitGroup
	renewing.Go(func() { r.keepLease(leaseCtx, job, cancel) })
	r.kind.Work(jobCtx, job)
	stopLease()
	renewing.Wait()
	if context.Cause(jobCtx) == ErrLeaseLost || r.kind.Release == nil {
		return
	}
	// A job the work did not finish (the process stops, or its end could not be written) goes
	// back to the queue now instead of when its lease runs out. A finished one is left alone.
	fctx, done := context.WithTimeout(context.WithoutCancel(ctx), FinishTimeout)
	defer done()
	if err := r.kind.Release(fctx, job.ID, job.Lease); err != nil {
		r.log.Warn("release a job", "job", job.ID, "err", err)
	}
}

// keepLease renews the job's lease every RenewEvery(Lease) until ctx ends. A cancel request
// ends the job's context with ErrCancelRequested (renewals go on); a refused renewal ends it
// with ErrLeaseLost and stops renewing.
func (r *Runner[J]) keepLease(ctx context.Context, job *Job[J], cancel context.CancelCauseFunc) {
	t := time.NewTicker(RenewEvery(r.cfg.Lease))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		canceled, err := r.kind.Renew(ctx, job.ID, job.Lease, r.cfg.Lease)
		switch {
		case store.ErrorCode(err) == store.ECONFLICT:
			r.log.Warn("lost the lease on a job; another worker carries on", "job", job.ID, "err", err)
			cancel(ErrLeaseLost)
			return
		case err != nil && ctx.Err() == nil:
			r.log.Warn("renew the lease on a job", "job", job.ID, "err", err)
		case canceled:
			cancel(ErrCancelRequested)
		}
	}
}

// Job is one claimed job as its Work sees it.
type Job[J any] struct {
	// ID is the job's id; Lease the token of this claim, to pass to every write of the job.
	ID    int64
	Lease string
	// Value is what Claim returned.
	Value  J
	runner *Runner[J]
}

// Finish writes the job's end with write, on a fresh context (the job's own may have ended)
// bounded by FinishTimeout, retrying while the database is unreachable. It returns nil once
// write succeeded, write's error at once when it is a store error other than EINTERNAL (the
// lease is lost, ECONFLICT, or the result is invalid), and the last error after the timeout.
func (j *Job[J]) Finish(ctx context.Context, write func(ctx context.Context) error) error {
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), FinishTimeout)
	defer cancel()
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
		err := write(fctx)
		if err == nil || permanent(err) {
			return err
		}
		j.runner.log.Warn("write the end of a job, retrying", "job", j.ID, "err", err)
		select {
		case <-fctx.Done():
			return err
		case <-time.After(wait):
		}
	}
}

// permanent reports whether trying err's write again cannot help.
func permanent(err error) bool { return store.ErrorCode(err) != store.EINTERNAL }
