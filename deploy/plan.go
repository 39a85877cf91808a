package deploy

import (
	"context"
	"errors"
	"sync"

	"ferry/store"
)

// Plan splits hosts into the batches a strategy deploys them in, in order:
//   - serial (or empty): one host per batch;
//   - parallel: one batch of all hosts (Concurrency bounds how many run at once, 0 = all);
//   - rolling: batches of Batch hosts ("2" or "25%", default 1);
//   - canary: a first batch of Batch hosts (default 1) alone, then all the others in one batch.
func Plan(strategy store.Strategy, hosts []string) [][]string {
	if len(hosts) == 0 {
		return nil
	}
	switch strategy.Kind {
	case store.StrategyParallel:
		return [][]string{hosts}
	case store.StrategyRolling:
		return chunk(hosts, strategy.BatchSize(len(hosts)))
	case store.StrategyCanary:
		n := strategy.BatchSize(len(hosts))
		if n >= len(hosts) {
			return [][]string{hosts}
		}
		return [][]string{hosts[:n], hosts[n:]}
	default:
		return chunk(hosts, 1)
	}
}

func chunk(hosts []string, size int) [][]string {
	var batches [][]string
	for len(hosts) > 0 {
		n := min(size, len(hosts))
		batches = append(batches, hosts[:n:n])
		hosts = hosts[n:]
	}
	return batches
}

// concurrency returns how many hosts of a batch run at once.
func concurrency(strategy store.Strategy, batch int, size int) int {
	switch {
	case strategy.Kind == store.StrategySerial || strategy.Kind == "":
		return 1
	case strategy.Kind == store.StrategyParallel || (strategy.Kind == store.StrategyCanary && batch > 0):
		if strategy.Concurrency > 0 {
			return min(strategy.Concurrency, size)
		}
	}
	return size
}

// Outcome is how one host ended in a rollout.
type Outcome struct {
	Host   string
	Status string // HostSucceeded, HostFailed, HostCanceled or HostSkipped
	Err    error
}

// RunPlan deploys hosts batch by batch as strategy says, calling deployHost for each with at
// most the strategy's concurrency at once. After a failure no new host starts (they end as
// skipped) unless ContinueOnFailure; a failing canary batch always stops the rollout. When ctx
// ends, hosts not yet started end as canceled. Outcomes are in the order of hosts.
func RunPlan(ctx context.Context, strategy store.Strategy, hosts []string, deployHost func(ctx context.Context, host string) error) []Outcome {
	r := &planRun{outcomes: make(map[string]Outcome, len(hosts))}
	for i, batch := range Plan(strategy, hosts) {
		r.runBatch(ctx, batch, concurrency(strategy, i, len(batch)), strategy.ContinueOnFailure, deployHost)
		if r.failed && strategy.Kind == store.StrategyCanary && i == 0 {
			r.stopped = true
		}
	}
	out := make([]Outcome, len(hosts))
	for i, h := range hosts {
		out[i] = r.outcomes[h]
	}
	return out
}

type planRun struct {
	mu       sync.Mutex
	outcomes map[string]Outcome
	failed   bool
	stopped  bool
}

func (r *planRun) runBatch(ctx context.Context, batch []string, limit int, goOn bool, deployHost func(context.Context, string) error) {
	slots := make(chan struct{}, max(limit, 1))
	var wg sync.WaitGroup
	for _, host := range batch {
		acquired := false
		select {
		case slots <- struct{}{}:
			acquired = true
		case <-ctx.Done():
		}
		if status := r.notStarting(ctx); status != "" {
			if acquired {
				<-slots
			}
			r.record(Outcome{Host: host, Status: status})
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			err := deployHost(ctx, host)
			r.record(outcomeOf(ctx, host, err))
			if err != nil && !goOn {
				r.stop()
			}
		}()
	}
	wg.Wait()
}

// notStarting returns why a host is not started, "" when it may start.
func (r *planRun) notStarting(ctx context.Context) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case ctx.Err() != nil:
		return HostCanceled
	case r.stopped:
		return HostSkipped
	}
	return ""
}

func (r *planRun) record(o Outcome) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.outcomes[o.Host] = o
	r.failed = r.failed || o.Status == HostFailed || o.Status == HostCanceled
}

func (r *planRun) stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopped = true
}

func outcomeOf(ctx context.Context, host string, err error) Outcome {
	switch {
	case err == nil:
		return Outcome{Host: host, Status: HostSucceeded}
	case ctx.Err() != nil || errors.Is(err, context.Canceled):
		return Outcome{Host: host, Status: HostCanceled, Err: err}
	}
	return Outcome{Host: host, Status: HostFailed, Err: err}
}
