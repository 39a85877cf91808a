package handlers

import (
	"strings"
	"sync"
	"time"
)

// Login throttle limits: after maxLoginFailures wrong passwords for one user name from one
// address within loginFailureWindow, further tries from there are refused until the window
// since the first failure has passed.
const (
	maxLoginFailures   = 5
	loginFailureWindow = 15 * time.Minute
	maxThrottleEntries = 10000
)

// loginThrottle counts failed logins per (remote address, user name), in memory.
type loginThrottle struct {
	mu       sync.Mutex
	now      func() time.Time
	failures map[string]*loginFailures
}

type loginFailures struct {
	count int
	first time.Time
}

func newLoginThrottle(now func() time.Time) *loginThrottle {
	return &loginThrottle{now: now, failures: map[string]*loginFailures{}}
}

func throttleKey(addr, name string) string {
	return addr + "\x00" + strings.ToLower(name)
}

// wait returns how long the address must wait before trying name again; 0 means it may try now.
func (t *loginThrottle) wait(addr, name string) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.failures[throttleKey(addr, name)]
	if f == nil || f.count < maxLoginFailures {
		return 0
	}
	left := f.first.Add(loginFailureWindow).Sub(t.now())
	return max(left, 0)
}

// fail counts one failed login.
func (t *loginThrottle) fail(addr, name string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	key := throttleKey(addr, name)
	f := t.failures[key]
	if f == nil || now.Sub(f.first) > loginFailureWindow {
		if len(t.failures) >= maxThrottleEntries {
			t.forgetOld(now)
		}
		f = &loginFailures{first: now}
		t.failures[key] = f
	}
	f.count++
}

// succeed forgets the failures of a login that worked.
func (t *loginThrottle) succeed(addr, name string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.failures, throttleKey(addr, name))
}

// forgetOld drops entries whose window has passed, and all of them if that frees nothing,
// so the table cannot grow without bound.
func (t *loginThrottle) forgetOld(now time.Time) {
	for k, f := range t.failures {
		if now.Sub(f.first) > loginFailureWindow {
			delete(t.failures, k)
		}
	}
	if len(t.failures) >= maxThrottleEntries {
		clear(t.failures)
	}
}
