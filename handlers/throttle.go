package handlers

import (
	"fmt"
	"math"
	"time"
)

// Login throttling lives in the database (store.ReserveLogin), so that every ferry process
// sees the same counts and a restart forgets none. Each attempt is reserved before its password
// is checked, so parallel tries cannot get more checks than the limits allow. The address of
// an attempt is gin's ClientIP: the peer's address, or with Config.TrustedProxies set, the
// client's address as those proxies report it in X-Forwarded-For.

// tooManyLogins is what a refused login is told.
func tooManyLogins(wait time.Duration) string {
	if wait < time.Minute {
		return "Too many failed logins; try again in a minute."
	}
	return fmt.Sprintf("Too many failed logins; try again in %d minutes.", int(math.Ceil(wait.Minutes())))
}
