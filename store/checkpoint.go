package store

import (
	"context"
	"time"
)

// checkpointEvery is how often an SQLite store copies its write-ahead log into the database.
const checkpointEvery = time.Second

// checkpointer copies, on SQLite, the write-ahead log into the database file in the
// background, every checkpointEvery, until Close. SQLite would otherwise do it inside whichever
// commit finds the log over 1,000 pages (wal_autocheckpoint, turned off in dataSource): that
// commit, a webhook's say, then waits for the copy and its fsync, about one commit in a hundred
// at 200 pushes a second. A PASSIVE checkpoint takes no lock writers wait for.
type checkpointer struct {
	stop chan struct{}
	done chan struct{}
}

func (db *DB) startCheckpoints() {
	db.checkpoints = &checkpointer{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(db.checkpoints.done)
		tick := time.NewTicker(checkpointEvery)
		defer tick.Stop()
		for {
			select {
			case <-db.checkpoints.stop:
				return
			case <-tick.C:
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				// A failed checkpoint is tried again at the next tick; the log only grows meanwhile.
				db.db.ExecContext(ctx, `PRAGMA wal_checkpoint(PASSIVE)`)
				cancel()
			}
		}
	}()
}

func (db *DB) stopCheckpoints() {
	if db.checkpoints != nil {
		close(db.checkpoints.stop)
		<-db.checkpoints.done
		db.checkpoints = nil
	}
}
