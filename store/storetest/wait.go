package storetest

import (
	"testing"
	"time"
)

// pollEvery is how often WaitFor and Eventually look again.
const pollEvery = 20 * time.Millisecond

// Eventually reports whether ok said yes within the given time, asking it every 20 ms. Use it
// where the test then says itself what went wrong; WaitFor where "it never happened" is enough.
func Eventually(within time.Duration, ok func() bool) bool {
	for deadline := time.Now().Add(within); ; time.Sleep(pollEvery) {
		if ok() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

// WaitFor waits until ok says yes and fails the test, naming what it waited for, when that
// takes longer than within.
func WaitFor(tb testing.TB, within time.Duration, what string, ok func() bool) {
	tb.Helper()
	if !Eventually(within, ok) {
		tb.Fatalf("waited %s for %s", within, what)
	}
}
