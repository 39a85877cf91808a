package store

import (
	"context"
	"sync"

	"github.com/jmoiron/sqlx"
)

// preparedStatements are the statements of the webhook path, each prepared once per
// connection and then only run: otherwise SQLite parses the statement again every time, and
// lib/pq spends a round trip on parsing it before the one that runs it. Only a few fixed
// statements are kept here, never text built from input.
//
// A statement is prepared on the pool only outside transactions (see warm): a transaction that
// waited for a second connection of the pool while holding one could wait for ever once every
// connection is held that way. A transaction that finds its statement not yet prepared
// prepares it on its own connection for that one use.
type preparedStatements struct {
	byKey sync.Map // preparedKey → *sqlx.Stmt
}

type preparedKey struct {
	pool  *sqlx.DB
	query string
}

// stmt returns query (written with ? placeholders) prepared on pool, or bound to tx when tx is
// not nil (a statement bound to tx ends with it).
func (db *DB) stmt(ctx context.Context, pool *sqlx.DB, tx *sqlx.Tx, query string) (*sqlx.Stmt, error) {
	query = db.q(query)
	key := preparedKey{pool, query}
	if st, ok := db.prepared.byKey.Load(key); ok {
		if tx == nil {
			return st.(*sqlx.Stmt), nil
		}
		return tx.StmtxContext(ctx, st), nil
	}
	if tx != nil {
		return tx.PreparexContext(ctx, query)
	}
	st, err := pool.PreparexContext(ctx, query)
	if err != nil {
		return nil, err
	}
	if first, loaded := db.prepared.byKey.LoadOrStore(key, st); loaded {
		st.Close()
		return first.(*sqlx.Stmt), nil
	}
	return st, nil
}

// warm prepares queries on pool, outside any transaction, so that transactions find them
// prepared. A query that fails to prepare is left for the transaction to prepare (and report).
func (db *DB) warm(ctx context.Context, pool *sqlx.DB, queries ...string) {
	for _, q := range queries {
		if _, ok := db.prepared.byKey.Load(preparedKey{pool, db.q(q)}); !ok {
			db.stmt(ctx, pool, nil, q)
		}
	}
}

func (p *preparedStatements) close() {
	p.byKey.Range(func(key, st any) bool {
		st.(*sqlx.Stmt).Close()
		p.byKey.Delete(key)
		return true
	})
}
