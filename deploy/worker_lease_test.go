package deploy

import (
	"context"
	"testing"
	"time"

	"ferry/store"
)

// fakeJobs is a hand-written deployments queue: each method a test needs is a field.
type fakeJobs struct {
	jobStore // methods a test does not set panic
	claim    func(lease string) (*store.Deployment, error)
	reaped   int
	released []string
}

func (f *fakeJobs) ClaimDeployment(_ context.Context, lease string, _ time.Duration) (*store.Deployment, error) {
	return f.claim(lease)
}

func (f *fakeJobs) ReapDeployments(_ context.Context, maxAttempts int) (int, int, error) {
	f.reaped = maxAttempts
	return 1, 1, nil
}

func (f *fakeJobs) ReleaseDeployment(_ context.Context, _ int64, lease string) error {
	f.released = append(f.released, lease)
	return nil
}

func TestDeploymentKindSpeaksTheRunnersLanguage(t *testing.T) {
	ctx := context.Background()
	f := &fakeJobs{claim: func(string) (*store.Deployment, error) { return nil, nil }}
	w := NewWorker(WorkerConfig{MaxAttempts: 2})
	w.jobs = f
	k := w.kind()
	if _, id, err := k.Claim(ctx, "l", time.Second); id != 0 || err != nil {
		t.Errorf("claim of an empty queue: id %d, %v; want 0, nil", id, err)
	}
	f.claim = func(string) (*store.Deployment, error) { return &store.Deployment{ID: 5}, nil }
	if d, id, err := k.Claim(ctx, "l", time.Second); id != 5 || d.ID != 5 || err != nil {
		t.Errorf("claim: %+v, id %d, %v; want deployment 5", d, id, err)
	}
	if n, err := k.Reap(ctx); n != 2 || err != nil || f.reaped != 2 {
		t.Errorf("reap: %d, %v with max attempts %d; want 2 reaped with 2", n, err, f.reaped)
	}
	if err := k.Release(ctx, 5, "l"); err != nil || len(f.released) != 1 {
		t.Errorf("release: %v, %v; want one release", err, f.released)
	}
	if err := NewWorker(WorkerConfig{}).Run(ctx); err == nil {
		t.Error("Run without a database: want an error")
	}
}
