package notify

import (
	"context"
	"testing"
	"time"

	"ferry/store"
)

// fakeDeliveries is a hand-written channel queue: each method a test needs is a field.
type fakeDeliveries struct {
	deliveryStore       // methods a test does not set panic
	outbox        []int // what each QueueDeliveries call answers, in turn
	queued        int
	claim         func(lease string) (*store.Channel, []*store.Delivery, error)
	renewErr      error
	released      []time.Time
}

func (f *fakeDeliveries) QueueDeliveries(context.Context, int) (int, error) {
	n := f.outbox[f.queued]
	f.queued++
	return n, nil
}

func (f *fakeDeliveries) ClaimChannel(_ context.Context, lease string, _ time.Duration, _ int) (*store.Channel, []*store.Delivery, error) {
	return f.claim(lease)
}

func (f *fakeDeliveries) RenewChannel(context.Context, int64, string, time.Duration) error {
	return f.renewErr
}

func (f *fakeDeliveries) ReleaseChannel(_ context.Context, _ int64, _ string, paused time.Time) error {
	f.released = append(f.released, paused)
	return nil
}

func TestNoticeKindSpeaksTheRunnersLanguage(t *testing.T) {
	ctx := context.Background()
	// Two full batches of outbox entries and a last short one are taken in before a claim.
	f := &fakeDeliveries{outbox: []int{outboxBatch, outboxBatch, 3, 0}, claim: func(string) (*store.Channel, []*store.Delivery, error) {
		return nil, nil, nil
	}}
	k := (&Worker{}).kind(f)
	if _, id, err := k.Claim(ctx, "l", time.Second); id != 0 || err != nil || f.queued != 3 {
		t.Errorf("claim with nothing due: id %d, %v after %d outbox passes; want 0, nil after 3", id, err, f.queued)
	}
	f.claim = func(string) (*store.Channel, []*store.Delivery, error) {
		return &store.Channel{ID: 9}, []*store.Delivery{{ID: 1}, {ID: 2}}, nil
	}
	got, id, err := k.Claim(ctx, "l", time.Second)
	if id != 9 || err != nil || got.ch.ID != 9 || len(got.due) != 2 {
		t.Errorf("claim: %+v, id %d, %v; want channel 9 with its 2 deliveries", got, id, err)
	}
	// A channel has no cancel; a refused renewal is a lost lease.
	f.renewErr = store.Errorf(store.ECONFLICT, "taken over")
	if cancel, err := k.Renew(ctx, 9, "l", time.Second); cancel || store.ErrorCode(err) != store.ECONFLICT {
		t.Errorf("renew of a lost channel: %v, %v; want no cancel and ECONFLICT", cancel, err)
	}
	if err := k.Release(ctx, 9, "l"); err != nil || len(f.released) != 1 || !f.released[0].IsZero() {
		t.Errorf("release: %v, pauses %v; want one release without a pause", err, f.released)
	}
	if k.Reap != nil {
		t.Error("a channel whose lease ran out is claimable again: nothing to reap")
	}
}
