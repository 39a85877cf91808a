package runner_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"ferry/store"
	"ferry/store/runner"
	"ferry/store/storetest"
)

// fakeQueue is a hand-written queue of jobs, the store as a runner sees it: a job is waiting,
// running under a lease, or done. Tests steer it through its fields.
type fakeQueue struct {
	mu       sync.Mutex
	waiting  []int64
	lease    map[int64]string // running jobs by id: the lease token that holds them
	cancel   map[int64]bool   // cancel asked for
	renewals map[int64]int
	released map[int64]string // the lease that released each job
	done     map[int64]string // the status each job ended with
	claims   []string         // every lease token handed out, in order
	reaps    int
	// renewErr, when set, answers every renewal of that job.
	renewErr map[int64]error
}

func newFakeQueue(ids ...int64) *fakeQueue {
	return &fakeQueue{waiting: ids, lease: map[int64]string{}, cancel: map[int64]bool{}, renewals: map[int64]int{},
		released: map[int64]string{}, done: map[int64]string{}, renewErr: map[int64]error{}}
}

func (q *fakeQueue) claim(_ context.Context, lease string, ttl time.Duration) (string, int64, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if ttl <= 0 {
		return "", 0, errors.New("no lease time")
	}
	if len(q.waiting) == 0 {
		return "", 0, nil
	}
	id := q.waiting[0]
	q.waiting = q.waiting[1:]
	q.lease[id] = lease
	q.claims = append(q.claims, lease)
	return fmt.Sprintf("job %d", id), id, nil
}

func (q *fakeQueue) renew(_ context.Context, id int64, lease string, _ time.Duration) (bool, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if err := q.renewErr[id]; err != nil {
		return false, err
	}
	if q.lease[id] != lease {
		return false, store.Errorf(store.ECONFLICT, "job %d is held by %q, not %q", id, q.lease[id], lease)
	}
	q.renewals[id]++
	return q.cancel[id], nil
}

func (q *fakeQueue) release(_ context.Context, id int64, lease string) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.lease[id] == lease {
		delete(q.lease, id)
		q.released[id] = lease
		q.waiting = append(q.waiting, id)
	}
	return nil
}

func (q *fakeQueue) reap(context.Context) (int, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.reaps++
	return 0, nil
}

// finish ends a job as a kind's Work does through Job.Finish: refused unless lease holds it.
func (q *fakeQueue) finish(id int64, lease, status string) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.lease[id] != lease {
		return store.Errorf(store.ECONFLICT, "job %d is not held by %q", id, lease)
	}
	delete(q.lease, id)
	q.done[id] = status
	return nil
}

func (q *fakeQueue) get(f func() bool) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return f()
}

func (q *fakeQueue) kind(work func(ctx context.Context, j *runner.Job[string])) runner.Kind[string] {
	return runner.Kind[string]{Name: "test", Claim: q.claim, Renew: q.renew, Reap: q.reap, Release: q.release, Work: work}
}

// start runs r until the test ends; stop ends it and waits for Run to return.
func start(t *testing.T, r *runner.Runner[string]) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ended := make(chan error, 1)
	go func() { ended <- r.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-ended:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Error("Run did not return 10 s after its context ended")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

const lease = 300 * time.Millisecond // runner.MinLease: renewals every 100 ms

func TestRunnerRunsEveryJobOnceWithWorkersAtOnce(t *testing.T) {
	q := newFakeQueue(1, 2, 3, 4, 5, 6)
	var mu sync.Mutex
	running, most := 0, 0
	k := q.kind(func(ctx context.Context, j *runner.Job[string]) {
		mu.Lock()
		running++
		most = max(most, running)
		mu.Unlock()
		time.Sleep(50 * time.Millisecond)
		mu.Lock()
		running--
		mu.Unlock()
		if err := j.Finish(ctx, func(context.Context) error { return q.finish(j.ID, j.Lease, "success") }); err != nil {
			t.Errorf("finish %s: %v", j.Value, err)
		}
	})
	stop := start(t, runner.New(runner.Config{Owner: "proc", Workers: 3, Lease: lease, Poll: 20 * time.Millisecond}, k))
	storetest.WaitFor(t, 10*time.Second, "six jobs done", func() bool { return q.get(func() bool { return len(q.done) == 6 }) })
	stop()
	if most < 2 || most > 3 {
		t.Errorf("at most %d jobs ran at once, want 2 or 3 with 3 workers", most)
	}
	seen := map[string]bool{}
	for _, l := range q.claims {
		if seen[l] || !strings.HasPrefix(l, "proc:") {
			t.Errorf("lease token %q: want a fresh token per claim named after its worker", l)
		}
		seen[l] = true
	}
	if len(q.claims) != 6 || len(q.released) != 0 {
		t.Errorf("%d claims and %d releases, want 6 and none: finished jobs are not handed back", len(q.claims), len(q.released))
	}
}

func TestRunnerRenewsAndNoticesACancelButKeepsTheLease(t *testing.T) {
	q := newFakeQueue(1)
	causes := make(chan error, 1)
	k := q.kind(func(ctx context.Context, j *runner.Job[string]) {
		<-ctx.Done()
		// Putting things back takes a while; the lease must hold meanwhile.
		time.Sleep(4 * lease)
		causes <- context.Cause(ctx)
		j.Finish(ctx, func(context.Context) error { return q.finish(j.ID, j.Lease, "canceled") })
	})
	start(t, runner.New(runner.Config{Lease: lease, Poll: 20 * time.Millisecond}, k))
	storetest.WaitFor(t, 10*time.Second, "two renewals", func() bool { return q.get(func() bool { return q.renewals[1] >= 2 }) })
	q.get(func() bool { q.cancel[1] = true; return true })
	var cause error
	select {
	case cause = <-causes:
	case <-time.After(10 * time.Second):
		t.Fatal("the job did not stop 10 s after its cancel was asked for")
	}
	if cause != runner.ErrCancelRequested {
		t.Errorf("job context ended with %v, want ErrCancelRequested", cause)
	}
	storetest.WaitFor(t, 10*time.Second, "the job ended canceled", func() bool { return q.get(func() bool { return q.done[1] == "canceled" }) })
}

func TestRunnerStopsAJobWhoseLeaseIsLostAndDoesNotReleaseIt(t *testing.T) {
	q := newFakeQueue(1)
	type end struct {
		cause, finish error
	}
	ends := make(chan end, 1)
	k := q.kind(func(ctx context.Context, j *runner.Job[string]) {
		<-ctx.Done()
		err := j.Finish(ctx, func(context.Context) error { return q.finish(j.ID, j.Lease, "success") })
		ends <- end{context.Cause(ctx), err}
	})
	start(t, runner.New(runner.Config{Lease: lease, Poll: 20 * time.Millisecond}, k))
	storetest.WaitFor(t, 10*time.Second, "the job running", func() bool { return q.get(func() bool { return q.lease[1] != "" }) })
	// The lease ran out and another process claimed the job.
	q.get(func() bool { q.lease[1] = "other:0/0123456789abcdef"; return true })
	var e end
	select {
	case e = <-ends:
	case <-time.After(10 * time.Second):
		t.Fatal("the job did not stop 10 s after its lease was lost")
	}
	if e.cause != runner.ErrLeaseLost || store.ErrorCode(e.finish) != store.ECONFLICT {
		t.Errorf("job ended with cause %v and finish %v, want ErrLeaseLost and a refused finish", e.cause, e.finish)
	}
	q.get(func() bool {
		if q.lease[1] != "other:0/0123456789abcdef" || len(q.released) != 0 || q.done[1] != "" {
			t.Errorf("after a lost lease: holder %q, released %v, done %v; want the other claim's job untouched", q.lease[1], q.released, q.done)
		}
		return true
	})
}

func TestRunnerReleasesItsJobsWhenStopping(t *testing.T) {
	q := newFakeQueue(1, 2)
	var mu sync.Mutex
	causes := map[int64]error{}
	k := q.kind(func(ctx context.Context, j *runner.Job[string]) {
		<-ctx.Done()
		mu.Lock()
		causes[j.ID] = context.Cause(ctx)
		mu.Unlock()
	})
	stop := start(t, runner.New(runner.Config{Workers: 2, Lease: time.Hour, Poll: 20 * time.Millisecond}, k))
	storetest.WaitFor(t, 10*time.Second, "both jobs running", func() bool { return q.get(func() bool { return len(q.lease) == 2 }) })
	stop()
	for _, id := range []int64{1, 2} {
		if causes[id] != runner.ErrShutdown {
			t.Errorf("job %d ended with %v, want ErrShutdown", id, causes[id])
		}
		if q.released[id] == "" {
			t.Errorf("job %d was not released on shutdown (an hour-long lease would hold it)", id)
		}
	}
	if len(q.waiting) != 2 {
		t.Errorf("waiting after the shutdown: %v, want both jobs back", q.waiting)
	}
}

func TestRunnerReapsOnOneRule(t *testing.T) {
	q := newFakeQueue()
	k := q.kind(func(context.Context, *runner.Job[string]) {})
	stop := start(t, runner.New(runner.Config{Lease: 600 * time.Millisecond, Poll: time.Hour}, k))
	storetest.WaitFor(t, 10*time.Second, "three reaps", func() bool { return q.get(func() bool { return q.reaps >= 3 }) })
	stop()
	if got := runner.ReapEvery(6 * time.Second); got != time.Second {
		t.Errorf("ReapEvery(6s) = %s, want 1s", got)
	}
	if got := runner.RenewEvery(6 * time.Second); got != 2*time.Second {
		t.Errorf("RenewEvery(6s) = %s, want 2s", got)
	}
}

func TestRunnerWakeSkipsThePoll(t *testing.T) {
	q := newFakeQueue()
	ran := make(chan int64, 1)
	k := q.kind(func(ctx context.Context, j *runner.Job[string]) {
		j.Finish(ctx, func(context.Context) error { return q.finish(j.ID, j.Lease, "success") })
		ran <- j.ID
	})
	r := runner.New(runner.Config{Lease: lease, Poll: time.Hour}, k)
	start(t, r)
	storetest.WaitFor(t, 10*time.Second, "the first look at the queue", func() bool { return q.get(func() bool { return q.reaps > 0 }) })
	time.Sleep(50 * time.Millisecond) // the worker is idle for an hour now
	q.get(func() bool { q.waiting = append(q.waiting, 7); return true })
	r.Wake()
	select {
	case id := <-ran:
		if id != 7 {
			t.Errorf("ran job %d, want 7", id)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Wake did not make the idle worker claim the new job")
	}
}

func TestFinishRetriesOnAFreshContextAndStopsOnAConflict(t *testing.T) {
	q := newFakeQueue(1)
	results := make(chan []error, 1)
	k := q.kind(func(ctx context.Context, j *runner.Job[string]) {
		<-ctx.Done() // the process stops: the job's context is over
		var errs []error
		tries := 0
		errs = append(errs, j.Finish(ctx, func(fctx context.Context) error {
			tries++
			if fctx.Err() != nil {
				return fctx.Err()
			}
			if tries < 3 {
				return errors.New("connection refused") // the database is away for a moment
			}
			return nil
		}))
		conflicts := 0
		errs = append(errs, j.Finish(ctx, func(context.Context) error {
			conflicts++
			return store.Errorf(store.ECONFLICT, "taken over")
		}))
		errs = append(errs, fmt.Errorf("tries %d, conflicts %d", tries, conflicts))
		results <- errs
	})
	stop := start(t, runner.New(runner.Config{Lease: lease, Poll: 20 * time.Millisecond}, k))
	storetest.WaitFor(t, 10*time.Second, "the job running", func() bool { return q.get(func() bool { return q.lease[1] != "" }) })
	stop()
	errs := <-results
	if errs[0] != nil || store.ErrorCode(errs[1]) != store.ECONFLICT || errs[2].Error() != "tries 3, conflicts 1" {
		t.Errorf("Finish: %v; want success on the third try after the context ended, and one refused try", errs)
	}
}

func TestRunWithoutWorkIsAnError(t *testing.T) {
	err := runner.New(runner.Config{}, runner.Kind[string]{Name: "empty"}).Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("Run of a kind without functions: %v, want an error naming it", err)
	}
}
