package store

import (
	"context"
	"time"
)

// CreateSession starts a browser session for the user, valid for ttl, and returns it with the
// secret for the cookie; only its hash is stored.
func (db *DB) CreateSession(ctx context.Context, userID int64, ttl time.Duration) (*Session, string, error) {
	secret := RandomSecret(32)
	now := db.now()
	s := &Session{Hash: hashSecret(secret), UserID: userID, CSRFToken: RandomSecret(24), CreatedAt: now, ExpiresAt: now.Add(ttl)}
	err := db.db.GetContext(ctx, &s.ID, db.q(`INSERT INTO sessions (hash, user_id, csrf_token, created_at, expires_at)
		VALUES (?, ?, ?, ?, ?) RETURNING id`), s.Hash, s.UserID, s.CSRFToken, s.CreatedAt, s.ExpiresAt)
	if err != nil {
		return nil, "", formatError(err, "session")
	}
	// Expired sessions of anyone are cleared now and then, here, where sessions are made.
	db.db.ExecContext(ctx, db.q(`DELETE FROM sessions WHERE expires_at < ?`), now)
	return s, secret, nil
}

// SessionUser returns the session with the cookie secret and its user, or EUNAUTHORIZED when it
// is unknown or expired.
func (db *DB) SessionUser(ctx context.Context, secret string) (*Session, *User, error) {
	var s Session
	err := db.db.GetContext(ctx, &s, db.q(`SELECT id, hash, user_id, csrf_token, created_at, expires_at FROM sessions WHERE hash = ?`), hashSecret(secret))
	if IsNotFound(formatError(err, "session")) || (err == nil && !s.ExpiresAt.After(db.now())) {
		return nil, nil, Errorf(EUNAUTHORIZED, "your session has ended; log in again")
	}
	if err != nil {
		return nil, nil, err
	}
	u, err := db.GetUser(ctx, s.UserID)
	if err != nil {
		return nil, nil, err
	}
	return &s, u, nil
}

// DeleteSession ends the session with the cookie secret; an unknown one is not an error.
func (db *DB) DeleteSession(ctx context.Context, secret string) error {
	_, err := db.db.ExecContext(ctx, db.q(`DELETE FROM sessions WHERE hash = ?`), hashSecret(secret))
	return err
}
