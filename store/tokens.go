package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
)

// TokenPrefix starts every API token, so a leaked one is easy to recognise and search for.
const TokenPrefix = "ferry_"

func hashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// CreateToken makes a new API token for the user and returns it with its secret, which is
// shown this once: only its hash is stored.
func (db *DB) CreateToken(ctx context.Context, userID int64, name string) (*Token, string, error) {
	if len(name) > 100 || strings.ContainsAny(name, "\r\n") {
		return nil, "", Errorf(EINVALID, "name: one line of at most 100 characters")
	}
	secret := TokenPrefix + RandomSecret(30)
	t := &Token{UserID: userID, Name: name, Hash: hashSecret(secret), Prefix: secret[:len(TokenPrefix)+6], CreatedAt: db.now()}
	err := db.Transact(ctx, func(tx *sqlx.Tx) error {
		u, err := getUser(ctx, tx, db, `id = ?`, userID)
		if err != nil {
			return err
		}
		if err := tx.GetContext(ctx, &t.ID, db.q(`INSERT INTO tokens (user_id, name, hash, prefix, created_at)
			VALUES (?, ?, ?, ?, ?) RETURNING id`), t.UserID, t.Name, t.Hash, t.Prefix, t.CreatedAt); err != nil {
			return formatError(err, "token")
		}
		return db.audit(ctx, tx, "token.create", "user/"+u.Name, "token "+t.Prefix+"…")
	})
	if err != nil {
		return nil, "", err
	}
	return t, secret, nil
}

// ListTokens returns the user's tokens, newest first, without their secrets.
func (db *DB) ListTokens(ctx context.Context, userID int64) ([]*Token, error) {
	tokens := []*Token{}
	err := db.db.SelectContext(ctx, &tokens, db.q(`SELECT id, user_id, name, hash, prefix, created_at, last_used_at
		FROM tokens WHERE user_id = ? ORDER BY id DESC`), userID)
	return tokens, err
}

// DeleteToken revokes one of the user's tokens.
func (db *DB) DeleteToken(ctx context.Context, userID, tokenID int64) error {
	return db.Transact(ctx, func(tx *sqlx.Tx) error {
		var prefix string
		if err := tx.GetContext(ctx, &prefix, db.q(`SELECT prefix FROM tokens WHERE id = ? AND user_id = ?`), tokenID, userID); err != nil {
			return formatError(err, "token")
		}
		if _, err := tx.ExecContext(ctx, db.q(`DELETE FROM tokens WHERE id = ?`), tokenID); err != nil {
			return err
		}
		return db.audit(ctx, tx, "token.delete", "token/"+prefix, "")
	})
}

// UserByToken returns the owner of the API token secret, or EUNAUTHORIZED.
func (db *DB) UserByToken(ctx context.Context, secret string) (*User, error) {
	if !strings.HasPrefix(secret, TokenPrefix) {
		return nil, Errorf(EUNAUTHORIZED, "invalid API token")
	}
	var t Token
	err := db.db.GetContext(ctx, &t, db.q(`SELECT id, user_id, name, hash, prefix, created_at, last_used_at FROM tokens WHERE hash = ?`), hashSecret(secret))
	if IsNotFound(formatError(err, "token")) {
		return nil, Errorf(EUNAUTHORIZED, "invalid API token")
	}
	if err != nil {
		return nil, err
	}
	now := db.now()
	if t.LastUsedAt == nil || now.Sub(*t.LastUsedAt) > time.Minute {
		// Only once a minute, so a busy script does not write on every call.
		db.db.ExecContext(ctx, db.q(`UPDATE tokens SET last_used_at = ? WHERE id = ?`), now, t.ID)
	}
	return db.GetUser(ctx, t.UserID)
}
