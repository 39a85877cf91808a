package store

import (
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
)

// loginLockID is the PostgreSQL advisory lock that makes counting and reserving a login attempt
// one step for every process; on SQLite the write transaction itself does that.
const loginLockID = 7_301_942_119

// LoginLimits bound how often a password may be tried. Every attempt is counted as failed from
// the moment it is reserved (before the password is checked) until it turns out right, so
// parallel tries cannot slip past a limit.
type LoginLimits struct {
	// PerUserAddress is how many failed logins one address may make for one user name in Window.
	PerUserAddress int
	// PerAddress is how many failed logins one address may make for any user names in Window,
	// so that trying many names from one place is stopped too.
	PerAddress int
	// Window is the sliding window of PerUserAddress and PerAddress.
	Window time.Duration
	// PerUser is how many failed logins a user name may get from all addresses together in
	// UserWindow. It does not apply to addresses the user logged in from within KnownFor, so
	// that attackers on many addresses cannot lock the user out of the places they work from.
	PerUser    int
	UserWindow time.Duration
	KnownFor   time.Duration
}

// DefaultLoginLimits are ferry's login limits.
var DefaultLoginLimits = LoginLimits{
	PerUserAddress: 5,
	PerAddress:     20,
	Window:         15 * time.Minute,
	PerUser:        20,
	UserWindow:     5 * time.Minute,
	KnownFor:       30 * 24 * time.Hour,
}

// LoginReservation is one login attempt, counted as failed until LoginSucceeded says otherwise.
type LoginReservation struct {
	ID   int64
	Name string
	Addr string
}

// LoginKey returns the name and address a login attempt is counted under: the name in lower
// case and cut to 64 bytes, and the address as is for IPv4 but as its /64 network for IPv6,
// since one IPv6 client usually holds a whole /64.
func LoginKey(name, addr string) (string, string) {
	name = strings.ToLower(truncate(name, 64))
	ip := net.ParseIP(addr)
	switch {
	case ip == nil:
		addr = truncate(addr, 64)
	case ip.To4() != nil:
		addr = ip.To4().String()
	default:
		addr = (&net.IPNet{IP: ip.Mask(net.CIDRMask(64, 128)), Mask: net.CIDRMask(64, 128)}).String()
	}
	return name, addr
}

// ReserveLogin counts a login attempt for name from addr before its password is checked. When
// a limit of lim is reached it reserves nothing and returns how long to wait; otherwise it returns
// the reservation, which counts as a failed attempt until LoginSucceeded. Counting and reserving
// are one step across all processes.
func (db *DB) ReserveLogin(ctx context.Context, name, addr string, lim LoginLimits) (*LoginReservation, time.Duration, error) {
	name, addr = LoginKey(name, addr)
	var res *LoginReservation
	var wait time.Duration
	err := db.Transact(ctx, func(tx *sqlx.Tx) error {
		if db.dialect == Postgres {
			if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, loginLockID); err != nil {
				return err
			}
		}
		var err error
		if wait, err = db.loginWait(ctx, tx, name, addr, lim); err != nil || wait > 0 {
			return err
		}
		res = &LoginReservation{Name: name, Addr: addr}
		return tx.GetContext(ctx, &res.ID, db.q(`INSERT INTO login_attempts (name, addr, at, ok) VALUES (?, ?, ?, FALSE) RETURNING id`),
			name, addr, db.now())
	})
	if err != nil {
		return nil, 0, fmt.Errorf("count the login attempt: %w", err)
	}
	return res, wait, nil
}

// loginWait returns how long until an attempt for name from addr is within every limit; 0 if
// it is now.
func (db *DB) loginWait(ctx context.Context, tx *sqlx.Tx, name, addr string, lim LoginLimits) (time.Duration, error) {
	pair, err := db.limitWait(ctx, tx, lim.PerUserAddress, lim.Window, `name = ? AND addr = ?`, name, addr)
	if err != nil {
		return 0, err
	}
	spray, err := db.limitWait(ctx, tx, lim.PerAddress, lim.Window, `addr = ?`, addr)
	if err != nil {
		return 0, err
	}
	user, err := db.limitWait(ctx, tx, lim.PerUser, lim.UserWindow, `name = ?`, name)
	if err != nil {
		return 0, err
	}
	if user > 0 {
		// Attackers elsewhere must not lock the user out of where they log in from.
		known, err := db.knownLoginAddress(ctx, tx, name, addr, lim.KnownFor)
		if err != nil {
			return 0, err
		}
		if known {
			user = 0
		}
	}
	return max(pair, spray, user), nil
}

// limitWait returns how long until fewer than limit failed attempts matching where fall in
// the window: until the limit-th newest of them leaves it.
func (db *DB) limitWait(ctx context.Context, tx *sqlx.Tx, limit int, window time.Duration, where string, args ...any) (time.Duration, error) {
	if limit <= 0 {
		return 0, nil
	}
	now := db.now()
	var at []time.Time
	err := tx.SelectContext(ctx, &at, db.q(`SELECT at FROM login_attempts WHERE `+where+` AND NOT ok AND at > ?
		ORDER BY at DESC LIMIT 1 OFFSET ?`), append(args, now.Add(-window), limit-1)...)
	if err != nil || len(at) == 0 {
		return 0, err
	}
	return max(at[0].Add(window).Sub(now), time.Second), nil
}

func (db *DB) knownLoginAddress(ctx context.Context, tx *sqlx.Tx, name, addr string, knownFor time.Duration) (bool, error) {
	var n int
	err := tx.GetContext(ctx, &n, db.q(`SELECT COUNT(*) FROM login_attempts WHERE name = ? AND addr = ? AND ok AND at > ?`),
		name, addr, db.now().Add(-knownFor))
	return n > 0, err
}

// LoginSucceeded records that the reserved attempt had the right password: it no longer counts
// as failed, the failures of its name from its address are forgotten, and the address is known
// for the user (see LoginLimits.PerUser).
func (db *DB) LoginSucceeded(ctx context.Context, r *LoginReservation) error {
	return db.Transact(ctx, func(tx *sqlx.Tx) error {
		if _, err := tx.ExecContext(ctx, db.q(`UPDATE login_attempts SET ok = TRUE, at = ? WHERE id = ?`), db.now(), r.ID); err != nil {
			return fmt.Errorf("record the login: %w", err)
		}
		_, err := tx.ExecContext(ctx, db.q(`DELETE FROM login_attempts WHERE name = ? AND addr = ? AND id <> ?`), r.Name, r.Addr, r.ID)
		if err != nil {
			return fmt.Errorf("forget earlier failed logins: %w", err)
		}
		return nil
	})
}

// FailedLogins returns how many attempts for name (any address) count as failed now within
// window, reserved ones included.
func (db *DB) FailedLogins(ctx context.Context, name string, window time.Duration) (int, error) {
	name, _ = LoginKey(name, "")
	var n int
	err := db.db.GetContext(ctx, &n, db.q(`SELECT COUNT(*) FROM login_attempts WHERE name = ? AND NOT ok AND at > ?`),
		name, db.now().Add(-window))
	return n, err
}

// PurgeLoginAttempts deletes failed attempts that no limit of lim counts any more and successful
// ones older than lim.KnownFor, and returns how many it deleted.
func (db *DB) PurgeLoginAttempts(ctx context.Context, lim LoginLimits) (int64, error) {
	now := db.now()
	res, err := db.db.ExecContext(ctx, db.q(`DELETE FROM login_attempts WHERE (NOT ok AND at < ?) OR (ok AND at < ?)`),
		now.Add(-max(lim.Window, lim.UserWindow)), now.Add(-lim.KnownFor))
	if err != nil {
		return 0, fmt.Errorf("purge login attempts: %w", err)
	}
	return res.RowsAffected()
}
