package notify

import (
	"cmp"
	"context"
	"errors"
	"sync"

	"ferry/store"
)

// RunOnce does one pass for a test, without the runner: it queues deliveries for every outbox
// entry there is and serves every channel with deliveries due now, each under a lease it does
// not renew. It returns how many sends it made (a digest counts once).
func (w *Worker) RunOnce(ctx context.Context) (int, error) {
	if err := queueAll(ctx, w.DB); err != nil {
		return 0, err
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		sends int
		errs  []error
	)
	w.owner() // named once here: the senders below would race to fill it in
	for range cmp.Or(w.Senders, DefaultSenders) {
		wg.Go(func() {
			for ctx.Err() == nil {
				lease := store.NewLeaseToken(w.owner())
				ch, due, err := w.DB.ClaimChannel(ctx, lease, w.leaseTTL(), deliveryBatch)
				if err != nil || ch == nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					return
				}
				n := w.serveChannel(ctx, ch, lease, due)
				mu.Lock()
				sends += n
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return sends, errors.Join(errs...)
}
