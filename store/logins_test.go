package store_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"ferry/store"
	"ferry/store/storetest"
)

// reserve tries one login attempt and reports whether it was let through to the password check.
func reserve(t *testing.T, db *store.DB, name, addr string) (*store.LoginReservation, time.Duration) {
	t.Helper()
	r, wait, err := db.ReserveLogin(context.Background(), name, addr, store.DefaultLoginLimits)
	if err != nil {
		t.Fatalf("reserve login %s from %s: %v", name, addr, err)
	}
	if (r == nil) == (wait == 0) {
		t.Fatalf("reserve login %s from %s: reservation %v with wait %s", name, addr, r, wait)
	}
	return r, wait
}

// countReserved tries n attempts for name(i) from addr(i) and returns how many got through.
func countReserved(t *testing.T, db *store.DB, n int, name, addr func(i int) string) int {
	t.Helper()
	got := 0
	for i := range n {
		if r, _ := reserve(t, db, name(i), addr(i)); r != nil {
			got++
		}
	}
	return got
}

func same(s string) func(int) string { return func(int) string { return s } }

func TestReserveLoginIsAtomicUnderParallelTries(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		// The attack: 40 wrong passwords at once for one user. The old throttle checked, then
		// counted after bcrypt, so 39 got a password check.
		var granted atomic.Int32
		var wg sync.WaitGroup
		errs := make(chan error, 40)
		for range 40 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r, _, err := db.ReserveLogin(context.Background(), "ann", "198.51.100.7", store.DefaultLoginLimits)
				if err != nil {
					errs <- err
				} else if r != nil {
					granted.Add(1)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		if n := granted.Load(); n != int32(store.DefaultLoginLimits.PerUserAddress) {
			t.Errorf("40 parallel tries: %d reached the password check, want exactly %d", n, store.DefaultLoginLimits.PerUserAddress)
		}
		if n, err := db.FailedLogins(context.Background(), "ANN", time.Hour); err != nil || n != 5 {
			t.Errorf("failed logins counted for ann: %d %v, want 5", n, err)
		}
	})
}

func TestLoginLimitsPerAddressAndPerUser(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		lim := store.DefaultLoginLimits
		// Spraying 50 user names from one address: the per-address limit stops it.
		n := countReserved(t, db, 50, func(i int) string { return fmt.Sprintf("user%d", i) }, same("203.0.113.9"))
		if n != lim.PerAddress {
			t.Errorf("50 names from one address: %d tries got through, want %d", n, lim.PerAddress)
		}
		if _, wait := reserve(t, db, "someone-else", "203.0.113.9"); wait <= 0 || wait > lim.Window {
			t.Errorf("the spraying address may try again in %s, want within the window %s", wait, lim.Window)
		}
		// Other addresses are not hurt by it.
		if r, _ := reserve(t, db, "user1", "203.0.113.10"); r == nil {
			t.Error("another address is refused because of the spraying one")
		}

		// bob logs in from his office; then attackers on 30 addresses guess his password.
		r, _ := reserve(t, db, "bob", "192.0.2.50")
		logsNoErr(t, db.LoginSucceeded(context.Background(), r))
		n = countReserved(t, db, 30, same("bob"), func(i int) string { return fmt.Sprintf("198.51.100.%d", i) })
		if n != lim.PerUser {
			t.Errorf("bob from 30 addresses: %d tries got through, want the per-user limit %d", n, lim.PerUser)
		}
		if r, _ := reserve(t, db, "bob", "198.51.100.200"); r != nil {
			t.Error("a new address could still guess bob's password past the per-user limit")
		}
		// ...but bob's own office, where he logged in before, is not locked out by them.
		if r, _ := reserve(t, db, "bob", "192.0.2.50"); r == nil {
			t.Error("attackers elsewhere locked bob out of the address he logs in from")
		}
	})
}

func TestLoginAttemptLimitsPerUserAddressAndIPv6Networks(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		// One IPv6 client holds a /64: changing the low bits does not give fresh tries.
		n := countReserved(t, db, 10, same("carol"), func(i int) string { return fmt.Sprintf("2001:db8:1:2::%x", i+1) })
		if n != 5 {
			t.Errorf("10 tries from one IPv6 /64: %d got through, want 5", n)
		}
		if r, _ := reserve(t, db, "carol", "2001:db8:1:3::1"); r == nil {
			t.Error("another /64 is refused")
		}
		// A good login forgets the failures of that name from that address.
		r, _ := reserve(t, db, "dave", "192.0.2.1")
		for range 3 {
			reserve(t, db, "dave", "192.0.2.1")
		}
		logsNoErr(t, db.LoginSucceeded(context.Background(), r))
		if n := countReserved(t, db, 10, same("dave"), same("192.0.2.1")); n != 5 {
			t.Errorf("after a good login: %d tries got through, want 5 again", n)
		}
	})
}

func TestLoginCountsAreSharedAndSurviveRestart(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(string(d), func(t *testing.T) {
			u := storetest.URL(t, d)
			one, two := storetest.OpenURL(t, u), storetest.OpenURL(t, u)
			// Two processes share the counts: 3 tries on one and 2 on the other reach the limit.
			if n := countReserved(t, one, 3, same("erin"), same("192.0.2.7")); n != 3 {
				t.Fatalf("first process: %d", n)
			}
			if n := countReserved(t, two, 3, same("erin"), same("192.0.2.7")); n != 2 {
				t.Errorf("second process: %d tries got through, want 2 (5 in all)", n)
			}
			one.Close()
			two.Close()
			// A restart forgets nothing.
			again := storetest.OpenURL(t, u)
			if r, _ := reserve(t, again, "erin", "192.0.2.7"); r != nil {
				t.Error("after a restart the limit was forgotten")
			}
			// After the window the user may try again, and retention removes what no limit counts.
			realNow := again.Now
			again.Now = func() time.Time { return realNow().Add(store.DefaultLoginLimits.Window + time.Minute) }
			n, err := again.PurgeLoginAttempts(context.Background(), store.DefaultLoginLimits)
			if err != nil || n != 5 {
				t.Errorf("purge: %d %v, want the 5 old attempts", n, err)
			}
			if r, _ := reserve(t, again, "erin", "192.0.2.7"); r == nil {
				t.Error("after the window the user is still refused")
			}
		})
	}
}
