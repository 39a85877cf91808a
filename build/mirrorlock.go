package build

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
)

// lockMirror takes the exclusive lock of the mirror at dir: a file beside it, held with
// flock(2), so that two builds of one project on this machine (in this process or another,
// e.g. a run whose lease ran out while its git was still cloning, and the run that took over)
// never clone, fetch or clean up the same mirror at once. It waits until the lock is free or
// ctx ends; unlock releases it. The kernel drops the lock when the process dies.
func lockMirror(ctx context.Context, dir string) (unlock func(), err error) {
	f, err := os.OpenFile(dir+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open the mirror's lock: %w", err)
	}
	for wait := 10 * time.Millisecond; ; wait = min(2*wait, 250*time.Millisecond) {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil // closing the file releases the lock
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("lock the mirror: %w", err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("wait for another build's use of the mirror: %w", context.Cause(ctx))
		case <-time.After(wait):
		}
	}
}
