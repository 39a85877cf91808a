package deploy_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"ferry/deploy"
	"ferry/store"
)

func hostNames(n int) []string {
	hosts := make([]string, n)
	for i := range hosts {
		hosts[i] = fmt.Sprintf("h%d", i+1)
	}
	return hosts
}

func TestPlan(t *testing.T) {
	tests := []struct {
		name     string
		strategy store.Strategy
		hosts    int
		want     [][]string
	}{
		{"no hosts", store.Strategy{Kind: store.StrategyRolling}, 0, nil},
		{"empty kind is serial", store.Strategy{}, 3, [][]string{{"h1"}, {"h2"}, {"h3"}}},
		{"serial", store.Strategy{Kind: store.StrategySerial, Batch: "2"}, 2, [][]string{{"h1"}, {"h2"}}},
		{"parallel", store.Strategy{Kind: store.StrategyParallel, Concurrency: 2}, 3, [][]string{{"h1", "h2", "h3"}}},
		{"rolling by count", store.Strategy{Kind: store.StrategyRolling, Batch: "2"}, 5, [][]string{{"h1", "h2"}, {"h3", "h4"}, {"h5"}}},
		{"rolling by percent rounds up", store.Strategy{Kind: store.StrategyRolling, Batch: "25%"}, 5, [][]string{{"h1", "h2"}, {"h3", "h4"}, {"h5"}}},
		{"rolling without batch is one at a time", store.Strategy{Kind: store.StrategyRolling}, 2, [][]string{{"h1"}, {"h2"}}},
		{"rolling batch larger than hosts", store.Strategy{Kind: store.StrategyRolling, Batch: "10"}, 3, [][]string{{"h1", "h2", "h3"}}},
		{"canary then the rest", store.Strategy{Kind: store.StrategyCanary}, 4, [][]string{{"h1"}, {"h2", "h3", "h4"}}},
		{"canary of two", store.Strategy{Kind: store.StrategyCanary, Batch: "2"}, 4, [][]string{{"h1", "h2"}, {"h3", "h4"}}},
		{"canary covering all", store.Strategy{Kind: store.StrategyCanary, Batch: "100%"}, 2, [][]string{{"h1", "h2"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := deploy.Plan(tt.strategy, hostNames(tt.hosts)); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Plan = %v, want %v", got, tt.want)
			}
		})
	}
}

// fakeHosts is a per-host func whose hosts fail when named in failing; it records the most
// hosts running at once and the order they started in.
type fakeHosts struct {
	failing map[string]bool
	delay   time.Duration

	mu      sync.Mutex
	started []string
	running atomic.Int32
	most    atomic.Int32
}

func (f *fakeHosts) deploy(ctx context.Context, host string) error {
	f.mu.Lock()
	f.started = append(f.started, host)
	f.mu.Unlock()
	now := f.running.Add(1)
	defer f.running.Add(-1)
	for {
		most := f.most.Load()
		if now <= most || f.most.CompareAndSwap(most, now) {
			break
		}
	}
	select {
	case <-time.After(f.delay):
	case <-ctx.Done():
		return ctx.Err()
	}
	if f.failing[host] {
		return errors.New("health check failed")
	}
	return nil
}

func statuses(outcomes []deploy.Outcome) []string {
	var out []string
	for _, o := range outcomes {
		out = append(out, o.Host+":"+o.Status)
	}
	return out
}

func TestRunPlan(t *testing.T) {
	const ok, failed, skipped = deploy.HostSucceeded, deploy.HostFailed, deploy.HostSkipped
	tests := []struct {
		name       string
		strategy   store.Strategy
		hosts      int
		failing    string
		want       []string
		mostAtOnce int32
	}{
		{"serial all good", store.Strategy{}, 3, "", []string{"h1:" + ok, "h2:" + ok, "h3:" + ok}, 1},
		{"serial stops at the first failure", store.Strategy{}, 3, "h2", []string{"h1:" + ok, "h2:" + failed, "h3:" + skipped}, 1},
		{"serial goes on when told", store.Strategy{ContinueOnFailure: true}, 3, "h1", []string{"h1:" + failed, "h2:" + ok, "h3:" + ok}, 1},
		{"parallel runs all at once", store.Strategy{Kind: store.StrategyParallel}, 4, "", []string{"h1:" + ok, "h2:" + ok, "h3:" + ok, "h4:" + ok}, 4},
		{"parallel honours the limit", store.Strategy{Kind: store.StrategyParallel, Concurrency: 2}, 5, "", []string{"h1:" + ok, "h2:" + ok, "h3:" + ok, "h4:" + ok, "h5:" + ok}, 2},
		{"parallel with limit stops starting after a failure", store.Strategy{Kind: store.StrategyParallel, Concurrency: 1}, 3, "h1", []string{"h1:" + failed, "h2:" + skipped, "h3:" + skipped}, 1},
		{"rolling finishes the batch, then stops", store.Strategy{Kind: store.StrategyRolling, Batch: "2"}, 5, "h1", []string{"h1:" + failed, "h2:" + ok, "h3:" + skipped, "h4:" + skipped, "h5:" + skipped}, 2},
		{"canary failing stops the rest even when continuing", store.Strategy{Kind: store.StrategyCanary, ContinueOnFailure: true}, 3, "h1", []string{"h1:" + failed, "h2:" + skipped, "h3:" + skipped}, 1},
		{"canary passing lets the rest go at once", store.Strategy{Kind: store.StrategyCanary}, 4, "", []string{"h1:" + ok, "h2:" + ok, "h3:" + ok, "h4:" + ok}, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeHosts{failing: map[string]bool{tt.failing: true}, delay: 20 * time.Millisecond}
			got := statuses(deploy.RunPlan(context.Background(), tt.strategy, hostNames(tt.hosts), f.deploy))
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("outcomes %v, want %v", got, tt.want)
			}
			if most := f.most.Load(); most != tt.mostAtOnce {
				t.Errorf("%d hosts ran at once, want %d", most, tt.mostAtOnce)
			}
		})
	}
}

func TestRunPlanCancelEndsHostsNotStartedAsCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	deployHost := func(ctx context.Context, host string) error {
		if host == "h2" {
			cancel()
			<-ctx.Done()
			return fmt.Errorf("upload to %s: %w", host, ctx.Err())
		}
		return nil
	}
	got := statuses(deploy.RunPlan(ctx, store.Strategy{Kind: store.StrategyRolling, Batch: "2"}, hostNames(4), deployHost))
	want := []string{"h1:succeeded", "h2:canceled", "h3:canceled", "h4:canceled"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("outcomes %v, want %v", got, want)
	}
}
