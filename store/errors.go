package store

import (
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/lib/pq"
)

// Error codes. Each maps to one HTTP status in handlers (see handlers.ErrorStatus).
const (
	ECONFLICT     = "conflict"     // a name or key is already taken, or the state forbids the change
	EINTERNAL     = "internal"     // a fault of ours; the message is not shown to users
	EINVALID      = "invalid"      // the input is wrong; the message says which field and why
	ENOTFOUND     = "not_found"    // no such thing
	EUNAUTHORIZED = "unauthorized" // who you are is unknown or wrong
	EFORBIDDEN    = "forbidden"    // you are known but may not do this
	ETOOLARGE     = "too_large"    // the input is bigger than allowed
)

// Error is an error whose message is meant for the user who caused it.
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Message }

// Errorf returns an *Error with the given code and a formatted, user-facing message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the first *Error in err's chain, EINTERNAL for any other
// error, and "" for nil.
func ErrorCode(err error) string {
	var e *Error
	switch {
	case err == nil:
		return ""
	case errors.As(err, &e):
		return e.Code
	default:
		return EINTERNAL
	}
}

// ErrorMessage returns the user-facing message of err, or a generic text for internal errors.
func ErrorMessage(err error) string {
	var e *Error
	switch {
	case err == nil:
		return ""
	case errors.As(err, &e):
		return e.Message
	default:
		return "internal error"
	}
}

// IsNotFound reports whether err is an ENOTFOUND error.
func IsNotFound(err error) bool { return ErrorCode(err) == ENOTFOUND }

// formatError turns driver errors into *Error values where they have a meaning for users:
// a missing row becomes ENOTFOUND naming what, a unique violation ECONFLICT.
func formatError(err error, what string) error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	if errors.Is(err, sql.ErrNoRows) {
		return Errorf(ENOTFOUND, "%s not found", what)
	}
	if isUniqueViolation(err) {
		return Errorf(ECONFLICT, "%s already exists", what)
	}
	if isForeignKeyViolation(err) {
		return Errorf(ECONFLICT, "%s is still in use or refers to something missing", what)
	}
	return err
}

func isUniqueViolation(err error) bool {
	if err == nil {
		return false
	}
	var pqErr *pq.Error
	if errors.As(err, &pqErr) {
		return pqErr.Code == "23505"
	}
	return strings.Contains(err.Error(), "UNIQUE constraint failed")
}

// uniqueColumn names the column of a unique violation, as far as the driver tells: PostgreSQL
// names the constraint (projects_name_key), SQLite the column (projects.name). It returns "" when
// it cannot tell.
func uniqueColumn(err error) string {
	var pqErr *pq.Error
	if errors.As(err, &pqErr) {
		c := strings.TrimSuffix(strings.TrimPrefix(pqErr.Constraint, pqErr.Table+"_"), "_key")
		return c
	}
	msg := err.Error()
	if i := strings.Index(msg, "UNIQUE constraint failed: "); i >= 0 {
		cols := msg[i+len("UNIQUE constraint failed: "):]
		if j := strings.IndexAny(cols, " ,)"); j >= 0 {
			cols = cols[:j]
		}
		if k := strings.LastIndex(cols, "."); k >= 0 {
			cols = cols[k+1:]
		}
		return cols
	}
	return ""
}

func isForeignKeyViolation(err error) bool {
	if err == nil {
		return false
	}
	var pqErr *pq.Error
	if errors.As(err, &pqErr) {
		return pqErr.Code == "23503"
	}
	return strings.Contains(err.Error(), "FOREIGN KEY constraint failed")
}
