package notify

import (
	"math/rand/v2"
	"time"
)

// Retry policy for retryable errors.
const (
	MaxAttempts = 6                // tries in all, the first included
	BackoffBase = 5 * time.Second  // the wait after the first failed try, before jitter
	BackoffCap  = 10 * time.Minute // no wait is longer
)

// Backoff returns how long to wait after failed try number attempt (1 for the first try):
// BackoffBase doubled per attempt, capped at BackoffCap, with "equal jitter" (a random value
// between half and all of it) so that many notices failing together do not retry together.
func Backoff(attempt int) time.Duration {
	if attempt < 1 {
		attempt = 1
	}
	d := BackoffCap
	if attempt < 30 {
		d = min(BackoffBase<<(attempt-1), BackoffCap)
	}
	half := d / 2
	return half + rand.N(half+1)
}

// NextTry tells the worker what to do after try number attempt failed with err: whether to
// try again, and after how long (the platform's own SuggestedWait when longer than Backoff).
func NextTry(err error, attempt int) (again bool, wait time.Duration) {
	if !Retryable(err) || attempt >= MaxAttempts {
		return false, 0
	}
	return true, max(Backoff(attempt), SuggestedWait(err))
}
