package build

import (
	"context"
	"errors"
	"testing"
	"time"

	"ferry/store"
	"ferry/store/runner"
)

// fakeJobs is a hand-written builds queue: each method is a field a test sets.
type fakeJobs struct {
	claim   func(lease string) (*store.Build, error)
	renew   func(id int64, lease string) (bool, error)
	reap    func(maxAttempts int) (int, int, error)
	release func(id int64, lease string) error
	finish  func(id int64, lease string, r store.BuildResult) (*store.Build, error)
}

func (f *fakeJobs) ClaimBuild(_ context.Context, lease string, _ time.Duration) (*store.Build, error) {
	return f.claim(lease)
}

func (f *fakeJobs) RenewBuild(_ context.Context, id int64, lease string, _ time.Duration) (bool, error) {
	return f.renew(id, lease)
}

func (f *fakeJobs) ReapBuilds(_ context.Context, maxAttempts int) (int, int, error) {
	return f.reap(maxAttempts)
}

func (f *fakeJobs) ReleaseBuild(_ context.Context, id int64, lease string) error {
	return f.release(id, lease)
}

func (f *fakeJobs) FinishBuild(_ context.Context, id int64, lease string, r store.BuildResult) (*store.Build, error) {
	return f.finish(id, lease, r)
}

func fakeWorker(jobs *fakeJobs) *Worker {
	w := NewWorker(WorkerConfig{DataDir: "/nonexistent", Owner: "test", MaxAttempts: 3})
	w.jobs = jobs
	return w
}

func TestFinishOfABuild(t *testing.T) {
	canceled, cancel := context.WithCancel(context.Background())
	cancel() // the run's context is over when it finishes after a cancel or a shutdown
	job := &runner.Job[*store.Build]{ID: 7, Lease: "test:0/00", Value: &store.Build{ID: 7}}
	version := &store.NewVersion{Name: "v1"}
	tests := []struct {
		name       string
		finish     []error // what each FinishBuild answers, in turn
		renew      error
		wantStored bool
		wantLast   string // the status of the last result offered
	}{
		{"stored at once", []error{nil}, nil, true, store.BuildSuccess},
		{"the database away twice, then back", []error{errors.New("connection refused"), errors.New("connection refused"), nil}, nil, true, store.BuildSuccess},
		{"the version name taken: failed instead", []error{store.Errorf(store.ECONFLICT, "version v1 exists"), nil}, nil, true, store.BuildFailed},
		{"the lease lost: nothing stored", []error{store.Errorf(store.ECONFLICT, "taken over")}, store.Errorf(store.ECONFLICT, "taken over"), false, store.BuildSuccess},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var offered []store.BuildResult
			jobs := &fakeJobs{
				finish: func(id int64, lease string, r store.BuildResult) (*store.Build, error) {
					if id != job.ID || lease != job.Lease {
						t.Errorf("finish of build %d with lease %q, want %d with %q", id, lease, job.ID, job.Lease)
					}
					offered = append(offered, r)
					err := tt.finish[len(offered)-1]
					if err != nil {
						return nil, err
					}
					return &store.Build{ID: id, Status: r.Status}, nil
				},
				renew: func(int64, string) (bool, error) { return false, tt.renew },
			}
			done, stored := fakeWorker(jobs).finish(canceled, job, store.BuildResult{Status: store.BuildSuccess, Version: version})
			if stored != tt.wantStored || len(offered) != len(tt.finish) || offered[len(offered)-1].Status != tt.wantLast {
				t.Fatalf("stored %v after %d tries, last %+v; want %v after %d, last %s", stored, len(offered), offered[len(offered)-1], tt.wantStored, len(tt.finish), tt.wantLast)
			}
			if stored && done.Status != tt.wantLast {
				t.Errorf("finished build %+v, want %s", done, tt.wantLast)
			}
		})
	}
}

func TestBuildKindSpeaksTheRunnersLanguage(t *testing.T) {
	var reapedWith int
	jobs := &fakeJobs{
		claim: func(string) (*store.Build, error) { return nil, nil },
		reap: func(maxAttempts int) (int, int, error) {
			reapedWith = maxAttempts
			return 2, 1, nil
		},
	}
	k := fakeWorker(jobs).kind()
	if _, id, err := k.Claim(context.Background(), "l", time.Second); id != 0 || err != nil {
		t.Errorf("claim of an empty queue: id %d, %v; want 0, nil", id, err)
	}
	jobs.claim = func(string) (*store.Build, error) { return &store.Build{ID: 4}, nil }
	if b, id, err := k.Claim(context.Background(), "l", time.Second); id != 4 || b.ID != 4 || err != nil {
		t.Errorf("claim: %+v, id %d, %v; want build 4", b, id, err)
	}
	if n, err := k.Reap(context.Background()); n != 3 || err != nil || reapedWith != 3 {
		t.Errorf("reap: %d, %v with max attempts %d; want 3 jobs reaped with 3", n, err, reapedWith)
	}
	if k.Release == nil || k.Renew == nil {
		t.Error("a build is released on shutdown and renewed while it runs")
	}
}
