package store

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"sync"

	"github.com/jmoiron/sqlx"
	"golang.org/x/crypto/bcrypt"
)

// MinPasswordLength is the shortest password a user may set.
const MinPasswordLength = 8

// UserUpdate holds the fields of a user to change; nil fields stay as they are.
type UserUpdate struct {
	Email    *string
	Admin    *bool
	Password *string
}

const userColumns = `id, name, email, password_hash, admin, created_at, updated_at`

// CreateUser stores u with a slow salted hash of password, and fills its ID and times.
func (db *DB) CreateUser(ctx context.Context, u *User, password string) error {
	if err := u.Validate(); err != nil {
		return err
	}
	hash, err := db.hashPassword(password)
	if err != nil {
		return err
	}
	return db.Transact(ctx, func(tx *sqlx.Tx) error {
		u.PasswordHash = hash
		u.CreatedAt, u.UpdatedAt = db.now(), db.now()
		err := tx.GetContext(ctx, &u.ID, db.q(`INSERT INTO users (name, email, password_hash, admin, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?) RETURNING id`), u.Name, u.Email, u.PasswordHash, u.Admin, u.CreatedAt, u.UpdatedAt)
		if err != nil {
			return formatError(err, "user "+u.Name)
		}
		return db.audit(ctx, tx, "user.create", "user/"+u.Name, adminDetail(u.Admin))
	})
}

func adminDetail(admin bool) string {
	if admin {
		return "admin"
	}
	return ""
}

func (db *DB) hashPassword(password string) (string, error) {
	if len(password) < MinPasswordLength {
		return "", Errorf(EINVALID, "password: must be at least %d characters", MinPasswordLength)
	}
	if len(password) > 72 {
		return "", Errorf(EINVALID, "password: must be at most 72 bytes")
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), db.PasswordCost)
	if err != nil {
		return "", err
	}
	return string(hash), nil
}

// GetUser returns the user with id, or ENOTFOUND.
func (db *DB) GetUser(ctx context.Context, id int64) (*User, error) {
	return getUser(ctx, db.db, db, `id = ?`, id)
}

// GetUserByName returns the user called name, or ENOTFOUND.
func (db *DB) GetUserByName(ctx context.Context, name string) (*User, error) {
	return getUser(ctx, db.db, db, `name = ?`, name)
}

func getUser(ctx context.Context, q queryer, db *DB, where string, arg any) (*User, error) {
	var u User
	if err := q.GetContext(ctx, &u, db.q(`SELECT `+userColumns+` FROM users WHERE `+where), arg); err != nil {
		return nil, formatError(err, "user")
	}
	u.CreatedAt, u.UpdatedAt = u.CreatedAt.UTC(), u.UpdatedAt.UTC()
	return &u, nil
}

// ListUsers returns all users by name.
func (db *DB) ListUsers(ctx context.Context) ([]*User, error) {
	users := []*User{}
	if err := db.db.SelectContext(ctx, &users, `SELECT `+userColumns+` FROM users ORDER BY name`); err != nil {
		return nil, err
	}
	return users, nil
}

// UpdateUser changes the given fields of the user called name and returns it as it is now.
func (db *DB) UpdateUser(ctx context.Context, name string, upd UserUpdate) (*User, error) {
	var out *User
	err := db.Transact(ctx, func(tx *sqlx.Tx) error {
		u, err := getUser(ctx, tx, db, `name = ?`, name)
		if err != nil {
			return err
		}
		if upd.Email != nil {
			u.Email = *upd.Email
		}
		if upd.Admin != nil {
			u.Admin = *upd.Admin
		}
		if err := u.Validate(); err != nil {
			return err
		}
		if upd.Password != nil {
			if u.PasswordHash, err = db.hashPassword(*upd.Password); err != nil {
				return err
			}
		}
		u.UpdatedAt = db.now()
		if _, err := tx.ExecContext(ctx, db.q(`UPDATE users SET email = ?, admin = ?, password_hash = ?, updated_at = ? WHERE id = ?`),
			u.Email, u.Admin, u.PasswordHash, u.UpdatedAt, u.ID); err != nil {
			return err
		}
		if upd.Password != nil {
			// A new password ends every browser session of the user.
			if _, err := tx.ExecContext(ctx, db.q(`DELETE FROM sessions WHERE user_id = ?`), u.ID); err != nil {
				return err
			}
		}
		out = u
		return db.audit(ctx, tx, "user.update", "user/"+u.Name, changedFields(upd.Email != nil, "email", upd.Admin != nil, "admin", upd.Password != nil, "password"))
	})
	return out, err
}

// changedFields lists the names whose flag is set: changedFields(true, "a", false, "b") == "changed a".
func changedFields(pairs ...any) string {
	s := ""
	for i := 0; i+1 < len(pairs); i += 2 {
		if pairs[i].(bool) {
			if s != "" {
				s += ", "
			}
			s += pairs[i+1].(string)
		}
	}
	if s == "" {
		return ""
	}
	return "changed " + s
}

// DeleteUser removes the user called name with its tokens, sessions and memberships.
func (db *DB) DeleteUser(ctx context.Context, name string) error {
	return db.Transact(ctx, func(tx *sqlx.Tx) error {
		res, err := tx.ExecContext(ctx, db.q(`DELETE FROM users WHERE name = ?`), name)
		if err := mustAffect(res, err, "user "+name); err != nil {
			return err
		}
		return db.audit(ctx, tx, "user.delete", "user/"+name, "")
	})
}

// mustAffect turns a statement that changed no row into ENOTFOUND.
func mustAffect(res interface{ RowsAffected() (int64, error) }, err error, what string) error {
	if err != nil {
		return formatError(err, what)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return Errorf(ENOTFOUND, "%s not found", what)
	}
	return nil
}

// Authenticate returns the user whose name and password match, or EUNAUTHORIZED. It takes the
// same time whether or not the user exists.
func (db *DB) Authenticate(ctx context.Context, name, password string) (*User, error) {
	wrong := Errorf(EUNAUTHORIZED, "wrong user name or password")
	u, err := db.GetUserByName(ctx, name)
	if IsNotFound(err) {
		bcrypt.CompareHashAndPassword(dummyHash(), []byte(password))
		return nil, wrong
	}
	if err != nil {
		return nil, err
	}
	if err := bcrypt.CompareHashAndPassword([]byte(u.PasswordHash), []byte(password)); err != nil {
		if errors.Is(err, bcrypt.ErrMismatchedHashAndPassword) {
			return nil, wrong
		}
		return nil, err
	}
	return u, nil
}

// dummyHash is compared against when the user does not exist, so that takes as long as a real check.
var dummyHash = sync.OnceValue(func() []byte {
	h, _ := bcrypt.GenerateFromPassword([]byte("no such user, same work"), bcrypt.DefaultCost)
	return h
})

// CountUsers returns how many users there are.
func (db *DB) CountUsers(ctx context.Context) (int, error) {
	var n int
	err := db.db.GetContext(ctx, &n, `SELECT COUNT(*) FROM users`)
	return n, err
}

// EnsureAdmin creates the user "admin" with a random password when there are no users at all,
// as on the very first start, and returns that password once.
func (db *DB) EnsureAdmin(ctx context.Context) (password string, created bool, err error) {
	n, err := db.CountUsers(ctx)
	if err != nil || n > 0 {
		return "", false, err
	}
	password = RandomSecret(18)
	err = db.CreateUser(ctx, &User{Name: "admin", Admin: true}, password)
	if ErrorCode(err) == ECONFLICT {
		return "", false, nil // another process made it first
	}
	if err != nil {
		return "", false, err
	}
	return password, true, nil
}

// RandomSecret returns n random bytes as URL-safe base64 text.
func RandomSecret(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	return base64.RawURLEncoding.EncodeToString(b)
}
