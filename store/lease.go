package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
)

// NewLeaseToken returns a fresh lease token for one claim by worker (a name such as
// "host:pid:loop"): the name, so that people see who holds a job, and 64 random bits, so that
// no two claims share one. A worker passes the token to the claim and then to every renewal,
// step update and finish of the job it got; after the lease ran out and the job was claimed
// again, even by another loop of the same process, each of those is refused with ECONFLICT.
// That is the fence: a run that lost its lease can no longer write anything of the job.
func NewLeaseToken(worker string) string {
	b := make([]byte, 8)
	rand.Read(b) // never fails (crypto/rand)
	return worker + "/" + hex.EncodeToString(b)
}

// leaseHeld returns nil when owner holds the running job id of q, and otherwise the error
// that says why not (ENOTFOUND, or ECONFLICT: not running, or held by another claim).
func (db *DB) leaseHeld(ctx context.Context, qr queryer, q jobQueue, id int64, owner string) error {
	var row struct {
		Status string `db:"status"`
		Owner  string `db:"lease_owner"`
	}
	err := qr.GetContext(ctx, &row, db.q(`SELECT status, lease_owner FROM `+q.table+` WHERE id = ?`), id)
	switch {
	case err != nil:
		return formatError(err, fmt.Sprintf("%s %d", q.kind, id))
	case row.Status != "running":
		return Errorf(ECONFLICT, "%s %d is not running (%s): worker %s no longer holds it", q.kind, id, row.Status, owner)
	case row.Owner != owner || owner == "":
		return Errorf(ECONFLICT, "%s %d is held by worker %s, not %s: its lease ran out and it was taken over", q.kind, id, row.Owner, owner)
	}
	return nil
}
